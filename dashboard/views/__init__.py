"""The dashboard's pages, one module per concern; dashboard/urls.py maps each to its path."""
