"""Which package versions work with which torch: the one table, and how to read it.

pip cannot know these facts: torch does not declare its NumPy ABI, and transformers checks the
torch version at import time (it disables PyTorch, then the upstream fails with "PyTorch is not
installed") instead of declaring it. `RULES` says them once; `migrate.env.constraints` turns the
rules that apply to what is installed into a pip constraints file, and a doctor can call
`conflicts()` to name an incompatible combination already installed, with the command that fixes it.

Every rule is `when` (a requirement on an installed package) => `need`. Sources are in `why`.
Standard library only (this runs before anything else is installed, on Python >= 3.10).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata

# torch minor -> torchvision minor of the same release (torchvision pins its torch exactly).
TORCHVISION_FOR_TORCH: dict[tuple[int, int], str] = {
    (2, minor): f"0.{minor + 15}" for minor in range(0, 15)
}


@dataclass(frozen=True)
class Rule:
    """When the installed `when` holds, `need` must hold too; `why` says what breaks otherwise."""

    when: str
    need: str
    why: str


RULES: tuple[Rule, ...] = (
    Rule(
        "torch<2.3",
        "numpy<2",
        "torch before 2.3 is built against NumPy 1.x; with NumPy 2 it raises "
        "'RuntimeError: Numpy is not available' (issue 16)",
    ),
    Rule(
        "torch<2.1",
        "transformers<4.50",
        "transformers 4.52 to 4.57 disable PyTorch below 2.1 ('PyTorch >= 2.1 is required'; "
        "read in transformers/utils/import_utils.py of 4.52.4 and 4.57.6), and 4.50-4.51 "
        "fail to import the upstream's T5EncoderModel/CLIPTextModel with torch 2.0.1 "
        "(\"module 'torch' has no attribute 'compiler'\"; 4.49.0 imports them: issue 16)",
    ),
    Rule(
        "torch<2.6",
        "transformers<5",
        "transformers 5.x disables PyTorch below 2.2 (5.0.0) and below 2.6 (5.24.0), so the "
        "tokenizer fails with 'PyTorch is not installed'; 4.x up to 4.57 takes torch >= 2.1",
    ),
    Rule(
        "pytorch-lightning<2",
        "setuptools<81",
        "pytorch-lightning 1.x imports pkg_resources, which setuptools 81 removed",
    ),
    Rule(
        "habana-torch-plugin>=0",
        "setuptools<81",
        "Habana's GPU Migration (habana_frameworks.torch.gpu_migration) imports pkg_resources, "
        "which setuptools 81 removed (read in the 1.17 package sources)",
    ),
    *(
        Rule(
            f"torch=={major}.{minor}.*",
            f"torchvision=={partner}.*",
            f"torchvision {partner} is the release built with torch {major}.{minor}; "
            "another one pins another torch (pip would replace torch) or fails to load its ops",
        )
        for (major, minor), partner in TORCHVISION_FOR_TORCH.items()
    ),
)

# Packages built with (or for) one torch: kept exactly as installed, never replaced by pip.
FAMILY_NAMES = frozenset(
    {
        "torch",
        "torchvision",
        "torchaudio",
        "torchtext",
        "torchdata",
        "torchmetrics",
        "triton",
        "pytorch-lightning",
        "lightning",
        "lightning-utilities",
        "lightning-habana",
        "intel-extension-for-pytorch",
    }
)
FAMILY_PREFIXES = ("habana-", "nvidia-")

_REQ_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$")
_VERSION_RE = re.compile(
    r"^\s*v?(?:\d+!)?(?P<release>\d+(?:\.\d+)*)"
    r"(?:[-_.]?(?P<pre>a|alpha|b|beta|c|rc|pre|preview)[-_.]?(?P<pre_n>\d*))?"
    r"(?:[-_.]?(?:post|rev|r)[-_.]?\d*|-\d+)?"
    r"(?:[-_.]?(?P<dev>dev)[-_.]?\d*)?"
    r"(?:\+[A-Za-z0-9.]+)?\s*$",
    re.IGNORECASE,
)
_PRE_ORDER = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}


def normalize(name: str) -> str:
    """A distribution name as pip compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def version_key(version: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A sortable key: the release numbers, then pre-release before final; local labels ignored.

    Enough of PEP 440 for the versions torch builds carry (`2.0.1a0+git7d4e0cd`, `2.13.0+cpu`).
    """
    match = _VERSION_RE.match(version)
    if match is None:
        raise ValueError(f"not a version: {version!r}")
    release = tuple(int(part) for part in match["release"].split("."))
    while len(release) > 1 and release[-1] == 0:
        release = release[:-1]
    if match["pre"]:
        stage: tuple[int, ...] = (0, _PRE_ORDER[match["pre"].lower()], int(match["pre_n"] or 0))
    elif match["dev"]:
        stage = (-1,)
    else:
        stage = (1,)
    return release, stage


def satisfies(version: str, spec: str) -> bool:
    """Whether `version` meets `spec`: comma-separated `<`, `<=`, `>`, `>=`, `==`, `!=`, `==X.*`."""
    have = version_key(version)
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        match = re.match(r"^(<=|>=|==|!=|<|>)\s*(\S+)$", clause)
        if match is None:
            raise ValueError(f"unsupported version clause: {clause!r}")
        op, wanted = match.groups()
        if wanted.endswith(".*"):
            prefix = tuple(int(p) for p in wanted[:-2].split("."))
            release = tuple(int(p) for p in _VERSION_RE.match(version)["release"].split("."))  # type: ignore[index]
            release += (0,) * max(0, len(prefix) - len(release))
            same = release[: len(prefix)] == prefix
            if (op == "==" and not same) or (op == "!=" and same):
                return False
            continue
        want = version_key(wanted)
        ok = {
            "<": have < want,
            "<=": have <= want,
            ">": have > want,
            ">=": have >= want,
            "==": have == want,
            "!=": have != want,
        }[op]
        if not ok:
            return False
    return True


def split(requirement: str) -> tuple[str, str]:
    """`numpy<2` -> (`numpy`, `<2`), the name normalized."""
    match = _REQ_RE.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return normalize(match[1]), match[2].replace(" ", "")


def installed() -> dict[str, str]:
    """{normalized name: version} of the distributions this interpreter imports (first on path)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and normalize(name) not in found:
            found[normalize(name)] = dist.version
    return found


def in_family(name: str) -> bool:
    """Whether `name` belongs to the torch family (kept exactly as installed)."""
    name = normalize(name)
    return name in FAMILY_NAMES or name.startswith(FAMILY_PREFIXES)


def holds(requirement: str, versions: Mapping[str, str]) -> bool:
    """Whether an installed package meets `requirement` (False when it is not installed)."""
    name, spec = split(requirement)
    version = versions.get(name)
    return version is not None and satisfies(version, spec)


def applicable(versions: Mapping[str, str], rules: Iterable[Rule] = RULES) -> list[Rule]:
    """The rules whose `when` holds for what is installed."""
    return [rule for rule in rules if holds(rule.when, versions)]


@dataclass(frozen=True)
class Conflict:
    """An installed combination that a rule forbids."""

    rule: Rule
    package: str
    version: str

    @property
    def message(self) -> str:
        when, _ = split(self.rule.when)
        return (
            f"{self.package} {self.version} does not work with the installed {when}: "
            f"needs {self.rule.need} ({self.rule.why})"
        )

    @property
    def fix(self) -> str:
        return f"python -m pip install '{self.rule.need}'"


def conflicts(versions: Mapping[str, str], rules: Iterable[Rule] = RULES) -> list[Conflict]:
    """Installed packages that break a rule that applies, each with its fix."""
    found = []
    for rule in applicable(versions, rules):
        name, _ = split(rule.need)
        version = versions.get(name)
        if version is not None and not holds(rule.need, versions):
            found.append(Conflict(rule, name, version))
    return found
