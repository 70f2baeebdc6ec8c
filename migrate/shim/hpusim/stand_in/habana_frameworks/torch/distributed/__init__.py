"""hpu-sim stand-in: `habana_frameworks.torch.distributed` (a package, as in the real bridge)."""
