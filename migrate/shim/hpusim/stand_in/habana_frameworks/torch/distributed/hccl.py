"""hpu-sim stand-in for `habana_frameworks.torch.distributed.hccl`: importing it records it.

pytorch-lightning 1.x/2.0 import it at start when an HPU is available (the real one registers
the `hccl` process-group backend); the smoke runs are single-process and never use it.
"""

from __future__ import annotations

from habana_frameworks import record

record("hccl.import")
