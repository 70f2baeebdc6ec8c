"""hpu-sim stand-in for `habana_frameworks.torch.utils.internal`: only `is_lazy`."""

from __future__ import annotations

from migrate.shim import hpusim


def is_lazy() -> bool:
    """Lazy mode, as the real bridge decides it at start: PT_HPU_LAZY_MODE, lazy unless "0"."""
    return hpusim.lazy_mode()
