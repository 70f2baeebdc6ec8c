"""TEST DOUBLE of `habana_frameworks.torch`: like the real package, importing it imports torch
and makes the HPU module reachable as `torch.hpu` (here the fake one; a plain attribute, so
that tests can take it away again)."""

from __future__ import annotations

import torch

from habana_frameworks.torch import hpu as _hpu

if getattr(torch, "hpu", None) is None:
    torch.hpu = _hpu
