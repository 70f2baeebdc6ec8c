"""Build a seeded random-weight latent-diffusion checkpoint through the upstream's own classes.

Run as a script by `migrate.models.ldm`, with the python that runs the upstream and the
workspace on PYTHONPATH; it imports nothing from migrate, so any interpreter with the
upstream's packages works. Usage: build_ldm.py CONFIG SEED OUT. Prints one JSON line.

The file holds only {"state_dict": ..., "global_step": 0}: `torch.load` now defaults to
weights_only=True and the script's unmodified loader must read it with no missing or
unexpected keys.
"""

import json
import os
import sys
import time

# This file's folder holds migrate's own `ldm.py`, which would shadow the upstream's `ldm` package.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(__file__)]

import torch  # noqa: E402
from ldm.util import instantiate_from_config  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402


def allow_the_pinned_commit() -> None:
    """Build at any stage, the pinned commit included, whose ddpm.py imports rank_zero_only from
    a module today's pytorch-lightning no longer has (the compat stage fixes that in the upstream;
    here it only must not stop the build: the classes and weights are the same at every stage)."""
    try:
        import pytorch_lightning.utilities.distributed  # noqa: F401
    except ModuleNotFoundError:
        import types

        from pytorch_lightning.utilities.rank_zero import rank_zero_only

        alias = types.ModuleType("pytorch_lightning.utilities.distributed")
        alias.rank_zero_only = rank_zero_only
        sys.modules[alias.__name__] = alias


def main() -> None:
    config_path, seed, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    start = time.perf_counter()
    allow_the_pinned_commit()
    torch.manual_seed(seed)
    model = instantiate_from_config(OmegaConf.load(config_path).model)
    with torch.no_grad():
        for param in model.parameters():
            # Zero-initialised layers (the UNet's output convolution, each attention block's
            # output projection) would make the untrained denoiser return exactly 0: sampling
            # would then ignore the UNet, the prompt and the guidance scale altogether.
            if param.dim() > 1 and not param.any():
                param.normal_(0.0, param[0].numel() ** -0.5)
    state = {"state_dict": model.state_dict(), "global_step": 0}
    tmp = f"{out}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, out)  # a reader never sees a half-written checkpoint
    parameters = sum(p.numel() for p in model.parameters())
    print(json.dumps({"parameters": parameters, "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
