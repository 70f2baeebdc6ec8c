"""hpu-sim stand-in for `habana_frameworks.torch.hpex.hmp` (mixed precision): imported only.

pytorch-lightning 1.x/2.0 import it at start when an HPU is available; nothing of it is used.
"""
