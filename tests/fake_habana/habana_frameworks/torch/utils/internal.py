"""TEST DOUBLE of `habana_frameworks.torch.utils.internal`: only `is_lazy`."""

from __future__ import annotations

import os


def is_lazy() -> bool:
    """Lazy mode, as the real bridge decides it at start: PT_HPU_LAZY_MODE, lazy unless "0"."""
    return os.environ.get("PT_HPU_LAZY_MODE", "1") != "0"
