"""hpu-sim stand-in: `habana_frameworks.torch.utils` (a package, as in the real bridge)."""
