"""The offline `bert-base-uncased` tokenizer: cache layout, vocabulary, and the loud guard.

The layout and check logic need no transformers (CI); loading through transformers is skipped
where it is not installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from migrate.errors import BadInput
from migrate.models import tokenizer


def test_vocabulary_has_wordpiece_basics_prompt_words_and_no_duplicates() -> None:
    vocab = tokenizer.build_vocab(["Zebra-crossing", "42nd"])
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    for token in [",", "!", "0", "9", "a", "z", "##q", "##7", "virus", "monster", "guitar"]:
        assert token in vocab
    assert {"zebra", "crossing", "42nd"} <= set(vocab)
    assert len(vocab) == len(set(vocab))
    assert tokenizer.build_vocab(["Zebra-crossing", "42nd"]) == vocab  # stable


def test_install_writes_the_hub_cache_layout(tmp_path: Path) -> None:
    tok = tokenizer.install(tmp_path / "hf", ["zebra"])
    repo = tmp_path / "hf" / "hub" / "models--bert-base-uncased"
    revision = (repo / "refs" / "main").read_text()
    assert re.fullmatch(r"[0-9a-f]{40}", revision) and revision == tok.revision
    assert tok.vocab_path == repo / "snapshots" / revision / "vocab.txt"
    lines = tok.vocab_path.read_text().splitlines()
    assert lines == tokenizer.build_vocab(["zebra"]) and tok.vocab_size == len(lines)
    assert tok.sha256 == tokenizer.vocab_sha256(lines)
    env = tok.env()
    assert env["HF_HOME"] == str(tmp_path / "hf")
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    assert env[tokenizer.ENV_SHA256] == tok.sha256
    mtime = tok.vocab_path.stat().st_mtime_ns
    assert tokenizer.install(tmp_path / "hf", ["zebra"]) == tok  # idempotent
    assert tok.vocab_path.stat().st_mtime_ns == mtime


def test_find_cached_reads_a_layout_and_ignores_a_broken_one(tmp_path: Path) -> None:
    tok = tokenizer.install(tmp_path / "hf")
    found = tokenizer.find_cached(tmp_path / "hf")
    assert found is not None and found.sha256 == tok.sha256
    assert tokenizer.find_cached(tmp_path / "empty") is None
    (tmp_path / "hf" / "hub" / "models--bert-base-uncased" / "refs" / "main").write_text("main\n")
    assert tokenizer.find_cached(tmp_path / "hf") is None


def test_check_accepts_the_prepared_vocabulary_and_names_the_fallback() -> None:
    vocab = tokenizer.build_vocab()
    expected = tokenizer.vocab_sha256(vocab)
    tokenizer.check_loaded(vocab, expected)
    fallback = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # transformers 5.x offline
    with pytest.raises(tokenizer.TokenizerMismatch, match="vocabulary of 5 tokens"):
        tokenizer.check_loaded(fallback, expected)
    with pytest.raises(tokenizer.TokenizerMismatch):
        tokenizer.check_loaded(vocab[:-1], expected)
    with pytest.raises(BadInput, match="MIGRATE_TOKENIZER_SHA256"):
        tokenizer.check_loaded(vocab, "not-a-digest")


FAKE_TRANSFORMERS = {
    "transformers/__init__.py": "",
    "transformers/tokenization_utils_base.py": textwrap.dedent(
        """
        class PreTrainedTokenizerBase:
            VOCABS = {"ours": None, "fallback": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]}

            def __init__(self, tokens):
                self.tokens = tokens

            @classmethod
            def from_pretrained(cls, name, which="ours"):
                return cls(cls.VOCABS[which])

            def get_vocab(self):
                return {token: i for i, token in enumerate(self.tokens)}
        """
    ),
}
GUARDED_CHILD = textwrap.dedent(
    """
    import sys
    # what the boot does first, before anything imports transformers:
    import migrate.models.tokenizer_guard
    assert "transformers" not in sys.modules
    from migrate.models.tokenizer import build_vocab
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase as Base
    Base.VOCABS["ours"] = build_vocab()
    Base.from_pretrained("bert-base-uncased", "ours")
    Base.from_pretrained("some-other-model", "fallback")  # not ours to check
    print("ours loaded")
    Base.from_pretrained("bert-base-uncased", "fallback")
    """
)


def test_guard_hooks_transformers_when_it_loads_and_fails_loudly(tmp_path: Path) -> None:
    """A stand-in `transformers` (a test double with the one class the guard wraps)."""
    for rel, text in FAKE_TRANSFORMERS.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        tokenizer.ENV_SHA256: tokenizer.vocab_sha256(tokenizer.build_vocab()),
    }
    result = subprocess.run(
        [sys.executable, "-c", GUARDED_CHILD], env=env, capture_output=True, text=True
    )
    assert result.stdout.strip() == "ours loaded"
    assert result.returncode != 0
    assert "TokenizerMismatch: tokenizer 'bert-base-uncased' loaded a vocabulary of 5" in (
        result.stderr
    )


REAL_CHILD = textwrap.dedent(
    """
    import migrate.models.tokenizer_guard
    from transformers import BertTokenizerFast
    tok = BertTokenizerFast.from_pretrained("bert-base-uncased")
    print(" ".join(tok.tokenize("A painting of a virus monster, playing zebra!")))
    """
)


@pytest.mark.parametrize("cache", ["ours", "missing"])
def test_transformers_loads_our_vocabulary_offline_or_the_guard_stops_it(
    tmp_path: Path, cache: str
) -> None:
    pytest.importorskip("transformers")
    tok = tokenizer.install(tmp_path / "hf", ["zebra"])
    env = {**os.environ, **tok.env()}
    if cache == "missing":  # what a run without our cache gets: transformers' silent fallback
        env["HF_HOME"] = str(tmp_path / "elsewhere")
    result = subprocess.run(
        [sys.executable, "-c", REAL_CHILD], env=env, capture_output=True, text=True, timeout=300
    )
    if cache == "ours":
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.split() == "a painting of a virus monster , playing zebra !".split()
    else:
        # Offline with nothing cached, transformers 5 silently loads the 5 special tokens (the
        # guard stops the run); transformers 4.x (what torch 2.0.1 needs) raises by itself.
        # Either way the run fails loudly instead of rendering [UNK] prompts.
        assert result.returncode != 0
        if _transformers_major() >= 5:
            assert "TokenizerMismatch" in result.stderr, result.stderr[-2000:]
        else:
            assert "Can't load tokenizer for 'bert-base-uncased'" in result.stderr
            assert "TokenizerMismatch" not in result.stderr


def _transformers_major() -> int:
    from importlib.metadata import version

    return int(version("transformers").split(".")[0])
