"""CI: the README's `sd` install, as a `pip install --dry-run --report`, replaces no torch.

Reads the report pip wrote and fails (exit 1) when it would install torch or any `nvidia-*`
package into a venv that already has a (CPU) torch; prints what it would install.
"""

from __future__ import annotations

import json
import re
import sys


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(report_path: str) -> int:
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
    pairs = sorted(
        (normalize(item["metadata"]["name"]), item["metadata"]["version"])
        for item in report.get("install", [])
    )
    names = [f"{name}=={version}" for name, version in pairs]
    bad = [f"{n}=={v}" for n, v in pairs if n == "torch" or n.startswith("nvidia-")]
    print(f"sd install would add {len(names)} packages: {' '.join(names)}")
    if bad:
        print(f"FAIL: it would install {' '.join(bad)} over the installed torch", file=sys.stderr)
        return 1
    print("ok: no torch, no nvidia-* package")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
