"""TEST DOUBLE of Intel Gaudi's `habana_frameworks` package: records calls, runs nothing.

See tests/fake_habana/README.md. Every fake API appends a record here and, when the variable
FAKE_HABANA_LOG names a file, to that file as one JSON line (for tests of child processes).
"""

from __future__ import annotations

import json
import os
from typing import Any

calls: list[dict[str, Any]] = []


def record(call: str, **details: Any) -> None:
    """Note one call to the fake API."""
    entry = {"call": call, "pid": os.getpid(), **details}
    calls.append(entry)
    path = os.environ.get("FAKE_HABANA_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")
