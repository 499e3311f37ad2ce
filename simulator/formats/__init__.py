"""The providers' wire formats, one module each."""
