"""The `creditflow` command line."""
