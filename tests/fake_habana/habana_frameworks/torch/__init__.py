"""TEST DOUBLE: the `habana_frameworks.torch` package (nothing of its own is used)."""
