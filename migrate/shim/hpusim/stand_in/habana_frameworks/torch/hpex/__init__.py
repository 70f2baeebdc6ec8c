"""hpu-sim stand-in: `habana_frameworks.torch.hpex` (a package, as in the real bridge)."""
