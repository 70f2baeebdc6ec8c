"""TEST DOUBLE of `habana_frameworks.torch.utils.library_loader`: `is_habana_available`.

pytorch-lightning 1.x and 2.0 (the releases that go with torch 2.0.1) import this module at
start whenever a `habana_frameworks` package is importable, so a fake without it fails where a
Gaudi would not.
"""

from __future__ import annotations


def is_habana_available() -> bool:
    """As one idle Gaudi would answer (like `hpu.is_available()`)."""
    return True


def load_habana_module() -> None:
    """The real one loads the bridge's shared libraries; nothing to load here."""
