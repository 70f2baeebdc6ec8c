"""An offline stand-in for the `bert-base-uncased` tokenizer that the upstream loads by name.

The upstream's BERTEmbedder calls `BertTokenizerFast.from_pretrained("bert-base-uncased")`. With
no hub access, current transformers does not fail: it silently returns a vocabulary of the five
special tokens, so every prompt word becomes `[UNK]`. We therefore write a Hugging Face cache
(`$HF_HOME/hub/models--bert-base-uncased/{refs/main, snapshots/<rev>/vocab.txt}`) holding a
generated WordPiece vocabulary, run the child offline, and have a boot module
(`migrate.models.tokenizer_guard`) check that what was loaded is exactly this vocabulary.

This module never imports transformers or torch: the guard runs at interpreter start.
"""

from __future__ import annotations

import hashlib
import os
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from migrate.errors import BadInput

REPO_ID = "bert-base-uncased"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Environment read by the guard in the child process.
ENV_NAME = "MIGRATE_TOKENIZER_NAME"
ENV_SHA256 = "MIGRATE_TOKENIZER_SHA256"
GUARD_MODULE = "migrate.models.tokenizer_guard"

# Words of the seed README's prompts and of common prompts, so that smoke prompts tokenize to words
# rather than to letter pieces. Anything else still tokenizes (letters and ## pieces are included).
COMMON_WORDS = """
a an the of in on at to and or with without by for from is are was be playing play plays painting
paint oil canvas virus monster guitar photo photograph picture drawing sketch portrait landscape
city street house castle tower mountain mountains river lake sea ocean beach forest tree trees
flower flowers garden field sky cloud clouds sun moon star stars night day sunset sunrise rain snow
fire water cat dog horse bird fish dragon robot astronaut man woman child people person girl boy
king queen knight wizard car train ship boat plane space planet earth red green blue yellow orange
purple pink black white gold silver dark light bright old new small big large tiny giant beautiful
cute scary happy sad style art artist digital abstract realistic detailed high quality render
watercolor pencil ink cartoon anime studio cinematic lighting by van gogh monet picasso
""".split()


@dataclass(frozen=True)
class OfflineTokenizer:
    """A tokenizer cache written for one child process."""

    hf_home: Path
    revision: str
    vocab_path: Path
    vocab_size: int
    sha256: str

    def env(self) -> dict[str, str]:
        """What the child needs: the cache, offline mode, and what the guard must find."""
        return {
            "HF_HOME": str(self.hf_home),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            ENV_NAME: REPO_ID,
            ENV_SHA256: self.sha256,
        }


def build_vocab(words: Iterable[str] = ()) -> list[str]:
    """A WordPiece vocabulary: special tokens, punctuation, digits, letters, ## pieces, words.

    Lower-case (bert-base-uncased lower-cases its input); no duplicates; order is stable, so the
    same words always give the same vocabulary and hash.
    """
    tokens: list[str] = list(SPECIAL_TOKENS)
    tokens += list(string.punctuation)
    tokens += list(string.digits)
    tokens += list(string.ascii_lowercase)
    tokens += [f"##{c}" for c in string.ascii_lowercase + string.digits]
    seen = set(tokens)
    for word in [*COMMON_WORDS, *words]:
        for piece in re.findall(r"[a-z0-9]+", word.lower()):
            if piece not in seen:
                seen.add(piece)
                tokens.append(piece)
    return tokens


def vocab_sha256(tokens: Sequence[str]) -> str:
    """Fingerprint of a vocabulary in id order; the guard computes it from what was loaded."""
    return hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest()


def install(hf_home: Path, words: Iterable[str] = ()) -> OfflineTokenizer:
    """Write the cache layout under `hf_home` (idempotent) and return how to use it.

    `words` are extra whole words to include (e.g. from the prompt that will be rendered).
    """
    tokens = build_vocab(words)
    digest = vocab_sha256(tokens)
    revision = digest[:40]  # the hub's layout wants a 40-hex revision; ours names the vocabulary
    repo = Path(hf_home) / "hub" / f"models--{REPO_ID}"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    vocab_path = snapshot / "vocab.txt"
    _write_if_changed(vocab_path, "\n".join(tokens) + "\n")
    _write_if_changed(repo / "refs" / "main", revision)
    return OfflineTokenizer(Path(hf_home), revision, vocab_path, len(tokens), digest)


def find_cached(hf_home: Path | None = None) -> OfflineTokenizer | None:
    """The real `bert-base-uncased` vocabulary in a user's Hugging Face cache, if there is one.

    Used with a real checkpoint: its embedding was trained on the real token ids, so a generated
    vocabulary would run but render nonsense.
    """
    home = Path(hf_home) if hf_home else _default_hf_home()
    repo = home / "hub" / f"models--{REPO_ID}"
    try:
        revision = (repo / "refs" / "main").read_text().strip()
    except OSError:
        return None
    vocab_path = repo / "snapshots" / revision / "vocab.txt"
    if not re.fullmatch(r"[0-9a-f]{40}", revision) or not vocab_path.is_file():
        return None
    tokens = vocab_path.read_text(encoding="utf-8").splitlines()
    return OfflineTokenizer(home, revision, vocab_path, len(tokens), vocab_sha256(tokens))


def check_loaded(tokens: Sequence[str], expected_sha256: str, name: str = REPO_ID) -> None:
    """Raise if the vocabulary a tokenizer loaded is not the expected one.

    `tokens` is the loaded vocabulary in id order. The message says what was found, because the
    usual failure (transformers' 5-token fallback) otherwise shows only as meaningless images.
    """
    if not re.fullmatch(r"[0-9a-f]{64}", expected_sha256):
        raise BadInput(f"{ENV_SHA256}: not a sha256 hex digest: {expected_sha256!r}")
    found = vocab_sha256(tokens)
    if found != expected_sha256:
        raise TokenizerMismatch(
            f"tokenizer {name!r} loaded a vocabulary of {len(tokens)} tokens with sha256 "
            f"{found[:12]}, not the prepared one ({expected_sha256[:12]}): offline fallback or a "
            f"different cache (check HF_HOME={os.environ.get('HF_HOME', '')!r})"
        )


class TokenizerMismatch(RuntimeError):
    """Raised inside the child process, where migrate's CLI error rendering does not exist."""


def _default_hf_home() -> Path:
    if "HF_HOME" in os.environ:
        return Path(os.environ["HF_HOME"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "huggingface"


def _write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
