"""Intel Gaudi software releases: what each one ships and how GPU Migration is switched on.

One table, read by `doctor` (the installed release's row), `constraints` (the Python of the
images) and `run` (the default execution mode on a Gaudi). Standard library only, like the rest
of `migrate.env`.

Sources (Habana's documentation, docs.habana.ai, read in 2026 when it documents 1.23):
- PyTorch and Python per OS image: the support matrices,
  https://docs.habana.ai/en/latest/Support_Matrix/Support_Matrix_v<release>.html (1.10 to 1.19,
  1.21, 1.22) and .../Support_Matrix/Support_Matrix.html (1.23). 1.20's was not reachable from
  this project: it has no row, and doctor says so.
- Default execution mode: .../PyTorch/Reference/Runtime_Flags.html (PT_HPU_LAZY_MODE, default 1,
  lazy, in the older pages; 0 in the current one) and .../PyTorch/PyTorch_Gaudi_Theory_of_
  Operations.html ("Eager mode with torch.compile ... is the default execution path, while Lazy
  mode is a legacy fallback that is no longer developed and will be deprecated"), in the docs of
  1.22 and 1.23. Eager mode is a preview from 1.13 (same page, older version); torch.compile with
  hpu_backend is experimental from 1.13.
- GPU Migration: .../PyTorch/PyTorch_Model_Porting/GPU_Migration_Toolkit/GPU_Migration_Toolkit.html
  (`import habana_frameworks.torch.gpu_migration`; PT_HPU_GPU_MIGRATION=1 from 1.17) and the 1.18
  release notes (`import torch` loads habana_frameworks.torch itself: "autoloading"). With 1.17's
  package sources, the variable is read when habana_frameworks.torch is imported, so before 1.18 a
  script that never imports it is not migrated by the variable alone.
- The GPU Migration package imports `pkg_resources` (setuptools < 81) and asserts the torch
  version it was built for (1.17's sources); see `migrate.env.compat`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LAZY, EAGER = "lazy", "eager"


@dataclass(frozen=True)
class Release:
    """One Intel Gaudi software release, as its support matrix and docs describe it."""

    version: str  # "1.12"
    torch: str  # the PyTorch it ships
    python: tuple[tuple[str, str], ...]  # (OS image, Python) of its PyTorch images
    default_mode: str  # PT_HPU_LAZY_MODE's default: LAZY or EAGER
    compile: str  # torch.compile with hpu_backend: "no", "experimental", "default" (the docs' path)
    lazy_deprecated: bool  # the docs call lazy mode a legacy fallback to be deprecated

    @property
    def key(self) -> tuple[int, int]:
        major, minor = self.version.split(".")
        return int(major), int(minor)

    @property
    def migration_variable(self) -> bool:
        """PT_HPU_GPU_MIGRATION=1 exists (1.17+)."""
        return self.key >= (1, 17)

    @property
    def autoload(self) -> bool:
        """`import torch` loads habana_frameworks.torch (1.18+)."""
        return self.key >= (1, 18)

    def migration(self) -> str:
        """How GPU Migration is switched on in this release, in one sentence."""
        if not self.migration_variable:
            return (
                "import habana_frameworks.torch.gpu_migration first thing in the script "
                "(the variable PT_HPU_GPU_MIGRATION does not exist yet)"
            )
        if not self.autoload:
            return (
                "PT_HPU_GPU_MIGRATION=1, read when habana_frameworks.torch is imported: an "
                "unmodified script that never imports it still needs the import"
            )
        return (
            "PT_HPU_GPU_MIGRATION=1 alone: import torch autoloads habana_frameworks.torch, so an "
            "unmodified script is migrated (the import still works)"
        )

    def pythons(self) -> str:
        return ", ".join(f"{image} {py}" for image, py in self.python)


_U20, _U22, _U24 = "Ubuntu 20.04", "Ubuntu 22.04", "Ubuntu 24.04"
_PY_1_10 = ((_U20, "3.8"), ("Debian 10.10", "3.8"), ("RHEL 8.6", "3.8"), (_U22, "3.10"))
_PY_1_19 = ((_U22, "3.10 (3.11 on one image)"), (_U24, "3.12"), ("RHEL 9.4", "3.11"))

# The Ubuntu 22.04 image of 1.10-1.12 is the first-gen Gaudi's; Gaudi2's images are 3.8 only.
RELEASES: tuple[Release, ...] = (
    Release("1.10", "2.0.1", _PY_1_10, LAZY, "no", False),
    Release("1.11", "2.0.1", _PY_1_10, LAZY, "no", False),
    Release("1.12", "2.0.1", _PY_1_10, LAZY, "no", False),
    Release("1.13", "2.1.0", _PY_1_10, LAZY, "experimental", False),
    Release(
        "1.14",
        "2.1.1",
        ((_U22, "3.10"), ("Debian 10.10", "3.8"), ("RHEL 8.6", "3.8"), ("TencentOS 3.1", "3.8")),
        LAZY,
        "experimental",
        False,
    ),
    Release(
        "1.15",
        "2.2.0",
        ((_U22, "3.10"), ("Debian 10.10", "3.8"), ("RHEL 9.2", "3.8"), ("TencentOS 3.1", "3.8")),
        LAZY,
        "experimental",
        False,
    ),
    Release(
        "1.16",
        "2.2.2",
        ((_U22, "3.10"), ("Debian 10.10", "3.8"), ("RHEL 8.6", "3.8"), ("RHEL 9.2", "3.10")),
        LAZY,
        "experimental",
        False,
    ),
    Release("1.17", "2.3.1", ((_U22, "3.10"), ("RHEL 9.4", "3.11")), LAZY, "experimental", False),
    Release(
        "1.18",
        "2.4.0",
        ((_U22, "3.10"), (_U24, "3.12"), ("RHEL 9.4", "3.11"), ("SUSE 15.5", "3.11")),
        LAZY,
        "experimental",
        False,
    ),
    Release("1.19", "2.5.1", _PY_1_19, LAZY, "experimental", False),
    Release("1.21", "2.6.0", _PY_1_19, LAZY, "experimental", False),
    Release("1.22", "2.7", _PY_1_19, EAGER, "default", True),
    Release("1.23", "2.9", _PY_1_19, EAGER, "default", True),
)


def release(version: str | None) -> Release | None:
    """The row of a release, from its own version or habana-torch-plugin's ("1.17.0.495")."""
    if not version:
        return None
    found = re.match(r"^\s*(\d+)\.(\d+)", version)
    if found is None:
        return None
    key = (int(found.group(1)), int(found.group(2)))
    return next((r for r in RELEASES if r.key == key), None)


def newest() -> Release:
    return max(RELEASES, key=lambda r: r.key)
