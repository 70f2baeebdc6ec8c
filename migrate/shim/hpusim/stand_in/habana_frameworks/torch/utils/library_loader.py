"""hpu-sim stand-in for `habana_frameworks.torch.utils.library_loader`.

pytorch-lightning 1.x and 2.0 import this module at start whenever a `habana_frameworks`
package is importable, so a stand-in without it fails where a Gaudi would not.
"""

from __future__ import annotations


def is_habana_available() -> bool:
    """As one idle Gaudi would answer (like `hpu.is_available()`)."""
    from habana_frameworks.torch.hpu import is_available

    return is_available()


def load_habana_module() -> None:
    """The real one loads the bridge's shared libraries; nothing to load here."""
