"""TEST DOUBLE: `habana_frameworks.torch.utils` (a package, as in the real bridge)."""
