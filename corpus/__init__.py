"""The real-photo test corpus: fetched from package registries, never committed."""
