"""Boot module: fail the run loudly if `bert-base-uncased` is not the tokenizer we prepared.

Imported at child start through `MIGRATE_BOOT_MODULES` (see `migrate.shim`'s sitecustomize),
before the script's first line. It must not import torch or transformers then (on older Gaudi
releases GPU Migration must be imported before torch), so it waits: an import hook wraps
`PreTrainedTokenizerBase.from_pretrained` when transformers loads that module, and every load of
the name in `MIGRATE_TOKENIZER_NAME` is checked against `MIGRATE_TOKENIZER_SHA256`.
Without those variables it does nothing.
"""

from __future__ import annotations

import functools
import os
from types import ModuleType
from typing import Any

from migrate.importhook import when_imported
from migrate.models.tokenizer import ENV_NAME, ENV_SHA256, check_loaded

WATCHED = "transformers.tokenization_utils_base"


def loaded_tokens(tokenizer: Any) -> list[str]:
    """The vocabulary a tokenizer object holds, in id order."""
    vocab: dict[str, int] = tokenizer.get_vocab()
    return [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]


def wrap(module: ModuleType, name: str, expected_sha256: str) -> None:
    """Check every `from_pretrained(name)` made through `module.PreTrainedTokenizerBase`."""
    base = module.PreTrainedTokenizerBase
    original = base.__dict__["from_pretrained"].__func__
    if getattr(original, "_migrate_guard", False):
        return

    @functools.wraps(original)
    def from_pretrained(cls: type, pretrained: Any, *args: Any, **kwargs: Any) -> Any:
        tokenizer = original(cls, pretrained, *args, **kwargs)
        if str(pretrained) == name:
            check_loaded(loaded_tokens(tokenizer), expected_sha256, name)
        return tokenizer

    from_pretrained._migrate_guard = True  # type: ignore[attr-defined]
    base.from_pretrained = classmethod(from_pretrained)


def install() -> None:
    """Arm the guard from the environment (no-op when it names no expected vocabulary)."""
    expected = os.environ.get(ENV_SHA256)
    if not expected:
        return
    name = os.environ.get(ENV_NAME, "bert-base-uncased")
    when_imported({WATCHED: functools.partial(wrap, name=name, expected_sha256=expected)})


install()
