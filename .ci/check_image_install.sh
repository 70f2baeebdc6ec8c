#!/usr/bin/env bash
# CI: the README's Gaudi install line on a stand-in for Habana's image: a Python 3.10 venv whose
# torch, torchvision, habana plugin and numpy are the image's versions (metadata only: pip sees
# them installed). pip's plan (--dry-run --report) must keep them: no torch, no nvidia-*.
# Usage: .ci/check_image_install.sh PYTHON3.10
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$1"
V=/tmp/migrate-ci-image
rm -rf "$V"
"$PY" -m venv "$V"
SP=$("$V/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
fake() {  # name version: an installed distribution as pip sees it (SynapseAI 1.12's versions)
    local d="$SP/$1-$2.dist-info"
    mkdir -p "$d"
    printf 'Metadata-Version: 2.1\nName: %s\nVersion: %s\n' "$1" "$2" >"$d/METADATA"
    echo pip >"$d/INSTALLER"
    : >"$d/RECORD"
}
fake torch 2.0.1a0+gitd4ab0d6
fake torchvision 0.15.1a0+42759b1
fake habana_torch_plugin 1.12.0.480
fake numpy 1.23.5
"$V/bin/python" -m pip install -q --upgrade pip
# The README's line, as written there, with the venv's python3 and --dry-run --report added:
"$V/bin/python" -m migrate.env.constraints -o /tmp/migrate-ci-image-constraints.txt
"$V/bin/python" -m pip install -q --dry-run --report /tmp/migrate-ci-image-report.json \
    -c /tmp/migrate-ci-image-constraints.txt -e '.[sd]'
"$V/bin/python" .ci/check_sd_install.py /tmp/migrate-ci-image-report.json
"$V/bin/python" - <<'PY'
import json
plan = {i["metadata"]["name"].lower(): i["metadata"]["version"]
        for i in json.load(open("/tmp/migrate-ci-image-report.json"))["install"]}
assert "numpy" not in plan, f"numpy would change: {plan['numpy']}"
assert plan["transformers"].startswith("4."), plan["transformers"]
print(f"ok: image numpy kept; transformers {plan['transformers']}, "
      f"pytorch-lightning {plan.get('pytorch-lightning')}")
PY
