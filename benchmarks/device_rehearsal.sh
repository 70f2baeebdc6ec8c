#!/usr/bin/env bash
# A rehearsal, here, of benchmarks/device_check.sh on the lent accelerator machine's image.
#
# The stand-in for the image is a venv with the image's torch-family releases as far as this
# machine has them and the image's versions of the other packages, and nothing that only our
# bundle brings (omegaconf, taming-transformers-rom1504, unidiff: checked absent). The tree that
# runs is a copy of what the device tool would send (tracked and untracked-not-ignored files)
# plus the bundle as .device/; its size is checked against the 64 MiB limit. The check then runs
# with the network cut off (`unshare -n`, needs root), with a bare environment (PATH, HOME, OUT,
# PYTHON), as `device_check.sh --device cpu --model tiny`; afterwards the files it left in $OUT
# are checked against what comes back from that machine (at most 8 files of 16 MiB, 2 folders
# deep, plain names).
#
# Usage: benchmarks/device_rehearsal.sh [--venv DIR] [--python PATH] [--bundle DIR]
#          [--keep DIR] [-- MORE device_check.sh OPTIONS]
#   --venv    the stand-in venv, made when missing [default: /tmp/migrate-device-standin]
#   --python  the interpreter it is made with [default: python3.11 from pyenv, else python3]
#   --bundle  from benchmarks/device_bundle.sh [default: .device]
#   --keep    where the tree copy and $OUT go [default: a temporary folder, removed]
# Default limits here: --limits 300,1500,1200 (this 2-core CPU is no H200: the rehearsal proves
# the offline path and the $OUT rules, not the 6-minute budget, which the lent machine must meet).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV=/tmp/migrate-device-standin
BASE_PY=""
BUNDLE="$REPO/.device"
KEEP=""
MORE=()
# The image (issue 24, /work/.library/device/KINDS.md): Python 3.12, torch 2.11.0+cu130,
# torchvision 0.26.0, numpy 2.5.2, transformers 5.17.0, pytorch-lightning 2.6.6, ... This machine
# has torch only as 2.13.0+cpu and 2.14.1 (a CUDA build, runs on the CPU) for Python 3.11, and
# PyPI's torchvision needs PyPI's torch (beside the CPU build: `torchvision::nms does not
# exist`), so the stand-in takes 2.14.1 with its torchvision; numpy 2.5 has no 3.11 wheel: 2.4.6.
STANDIN=(torch==2.14.1 torchvision==0.29.1 numpy==2.4.6 transformers==5.17.0
         pytorch-lightning==2.6.6 torchmetrics==1.9.0 safetensors==0.8.0 tokenizers==0.23.2
         huggingface_hub==1.33.0 einops pillow click rich tqdm pyyaml)
ABSENT=(omegaconf taming unidiff)  # what only the bundle may bring

die() { echo "device_rehearsal: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) VENV="${2:?--venv needs a value}"; shift 2 ;;
    --python) BASE_PY="${2:?--python needs a value}"; shift 2 ;;
    --bundle) BUNDLE="${2:?--bundle needs a value}"; shift 2 ;;
    --keep) KEEP="${2:?--keep needs a value}"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; MORE=("$@"); break ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[ -d "$BUNDLE/upstream.git" ] || die "no bundle at $BUNDLE: make it with benchmarks/device_bundle.sh"
BUNDLE="$(cd "$BUNDLE" && pwd)"
unshare -n true 2>/dev/null || die "cannot cut the network with 'unshare -n' (needs root)"

echo "== stand-in venv: $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  if [ -z "$BASE_PY" ]; then
    BASE_PY="$(ls -d "$HOME"/.pyenv/versions/3.11*/bin/python 2>/dev/null | tail -n 1)"
    BASE_PY="${BASE_PY:-python3}"
  fi
  "$BASE_PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "${STANDIN[@]}" || { rm -rf "$VENV"; die "installing the stand-in failed"; }
fi
"$VENV/bin/python" - "${ABSENT[@]}" <<'EOF' || exit 2
import importlib.util, sys
import torch
found = [m for m in sys.argv[1:] if importlib.util.find_spec(m)]
if found:
    sys.exit(f"device_rehearsal: the stand-in has {', '.join(found)}: only the bundle may bring them")
print(f"python {sys.version.split()[0]}, torch {torch.__version__}; without {', '.join(sys.argv[1:])}")
EOF

if [ -n "$KEEP" ]; then TMP="$KEEP"; mkdir -p "$TMP"; else TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT; fi
TREE="$TMP/tree" OUTDIR="$TMP/OUT" HOMEDIR="$TMP/home"
rm -rf "$TREE" "$OUTDIR" "$HOMEDIR" && mkdir -p "$TREE" "$OUTDIR" "$HOMEDIR"

echo "== the tree that travels: tracked and untracked-not-ignored files, and the bundle as .device/"
(cd "$REPO" && git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
   [ -e "$f" ] && printf '%s\0' "$f"; done | xargs -0 cp --parents -t "$TREE")
cp -r "$BUNDLE" "$TREE/.device"
git -C "$TREE" init -q && git -C "$TREE" add -A && \
  git -C "$TREE" -c user.name=rehearsal -c user.email=rehearsal@invalid commit -qm tree
size_kib="$(du -sk --exclude=.git "$TREE" | cut -f1)"
echo "size: $((size_kib / 1024)) MiB ($size_kib KiB; bundle $(du -sk "$TREE/.device" | cut -f1) KiB; limit 64 MiB)"
[ "$size_kib" -le $((64 * 1024)) ] || die "the tree is over 64 MiB: it would not travel"

echo "== device_check.sh with the network cut off"
check=(bash "$TREE/benchmarks/device_check.sh" --device cpu --model tiny
       --limits 300,1500,1200 "${MORE[@]}")
set +e
unshare -n -- env -i PATH="$PATH" HOME="$HOMEDIR" LANG=C.UTF-8 OUT="$OUTDIR" \
  PYTHON="$VENV/bin/python" bash -c '
    "$PYTHON" -c "import socket
try:
    socket.create_connection((\"pypi.org\", 443), timeout=5)
except OSError as exc:
    print(\"network: cut off (\" + type(exc).__name__ + \")\")
else:
    raise SystemExit(\"network: reachable: this is no rehearsal\")" || exit 3
    cd "$0" && exec "$@"' "$TREE" "${check[@]}"
rc=$?
set -e
[ "$rc" != 3 ] || die "the network was not cut off"

echo "== \$OUT as the lent machine would return it"
bad=0 count=0
while IFS= read -r -d '' f; do
  rel="${f#"$OUTDIR"/}" bytes="$(stat -c %s "$f")" count=$((count + 1))
  printf '  %-24s %9s bytes\n' "$rel" "$bytes"
  [[ "$rel" =~ ^([A-Za-z0-9._-]+/){0,2}[A-Za-z0-9._-]+$ ]] || { echo "  ^ name or depth would not come back"; bad=1; }
  [ "$bytes" -le $((16 * 1024 * 1024)) ] || { echo "  ^ over 16 MiB"; bad=1; }
done < <(find "$OUTDIR" -type f -print0 | sort -z)
[ "$count" -le 8 ] || { echo "  $count files: only 8 come back"; bad=1; }
[ -f "$OUTDIR/report.md" ] && { echo "== report.md"; cat "$OUTDIR/report.md"; }
echo "device_check.sh exited $rc; \$OUT rules $([ "$bad" = 0 ] && echo met || echo BROKEN)"
[ "$bad" = 0 ] || exit 1
exit "$rc"
