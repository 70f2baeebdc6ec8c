"""TOML reading on every supported Python: `tomllib` (3.11+), else its backport `tomli` (3.10).

Import TOML from here (`from migrate.toml import loads, TOMLDecodeError`), never `tomllib`.
"""

from __future__ import annotations

try:
    import tomllib  # novermin (3.11+; the except branch covers 3.10)
except ModuleNotFoundError:  # Python 3.10: the `tomli` dependency (pyproject.toml)
    import tomli as tomllib  # type: ignore[no-redef]

loads = tomllib.loads
TOMLDecodeError = tomllib.TOMLDecodeError

__all__ = ["TOMLDecodeError", "loads"]
