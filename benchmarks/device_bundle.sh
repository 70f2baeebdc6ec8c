#!/usr/bin/env bash
# Made here, with network: what benchmarks/device_check.sh needs on a machine that has none.
#
# Writes an ignored folder (default .device/) that travels with the working tree:
#   wheels/        the packages the accelerator machine's image lacks, as wheels for its Python
#                  (cp312, manylinux x86_64): exact versions, no torch, no nvidia-*; each wheel's
#                  requirements are checked against the image's packages and the other wheels
#   upstream.git/  a bare copy of the upstream mirror holding the recipe's pinned commit
#   MANIFEST.txt   what is in it, with sha256 sums
# and prints its size, which must stay well under the 64 MiB a working tree may weigh.
#
# Why a bare copy and not a `git bundle`: the mirror is a partial clone (it lacks the blobs of
# assets/ and data/, which the recipe's sparse checkout leaves out), and a bundle must hold every
# object of the history it carries, so git refuses to write one. `migrate fetch` clones the copy
# as it clones any local mirror.
#
# Usage: benchmarks/device_bundle.sh [--out DIR] [--source MIRROR] [--recipe NAME|PATH]
#          [--no-wheels]
#   --source     the upstream mirror [default: $MIGRATE_SOURCE]
#   --no-wheels  the upstream copy only (no network needed; for tests)
# Environment: PYTHON (runs pip here) [default: python3].
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
DEST="$REPO/.device"
SOURCE="${MIGRATE_SOURCE:-}"
RECIPE=stable-diffusion
LIMIT_MIB=40
GET_WHEELS=1  # with the repository (~2 MiB) well under the 64 MiB that travels

# The image's Python and what it lacks (issue 24; /work/.library/device/KINDS.md): migrate's own
# unidiff, the sd extra's omegaconf and taming-transformers-rom1504. omegaconf 2.4 carries its
# own antlr4 runtime, so antlr4-python3-runtime (sdist only) is not needed.
PYVER=3.12
WHEELS=(omegaconf==2.4.0 taming-transformers-rom1504==0.0.6 unidiff==1.0.1)
# The image's packages that these wheels may require (name==version where the version is known).
IMAGE=(torch==2.11.0 torchvision==0.26.0 numpy==2.5.2 pytorch-lightning==2.6.6 tqdm pyyaml
       transformers==5.17.0 einops safetensors==0.8.0 pillow click rich tokenizers==0.23.2)

die() { echo "device_bundle: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) DEST="${2:?--out needs a value}"; shift 2 ;;
    --source) SOURCE="${2:?--source needs a value}"; shift 2 ;;
    --recipe) RECIPE="${2:?--recipe needs a value}"; shift 2 ;;
    --no-wheels) GET_WHEELS=0; shift ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[ -n "$SOURCE" ] || die "no upstream mirror: pass --source or set MIGRATE_SOURCE"
[ -d "$SOURCE" ] || die "--source $SOURCE: not a directory (a local mirror of the upstream)"
COMMIT="$(PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c '
import sys
from migrate.recipe import load_recipe
print(load_recipe(sys.argv[1]).commit)' "$RECIPE")" || die "cannot read the recipe $RECIPE"

NEW="$DEST.new.$$"
trap 'rm -rf "$NEW"' EXIT
rm -rf "$NEW" && mkdir -p "$NEW/wheels"

if [ "$GET_WHEELS" = 1 ]; then
echo "== wheels for cp${PYVER/./} manylinux x86_64: ${WHEELS[*]}"
# pip matches each manylinux tag exactly: name the common ones. No constraints file (a machine's
# own pins must not decide what another machine gets).
PIP_CONSTRAINT="" "$PY" -m pip download -q --no-deps --only-binary=:all: \
  --python-version "$PYVER" --implementation cp --abi "cp${PYVER/./}" \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$NEW/wheels" "${WHEELS[@]}" 2>&1 \
  | grep -v "^WARNING: Location" || true
for w in "${WHEELS[@]}"; do
  n="$(echo "${w%%==*}" | tr '-' '_')"
  ls "$NEW/wheels/" | grep -qi "^${n}-${w##*==}-" || die "pip did not fetch $w"
done
case "$(ls "$NEW/wheels")" in *torch-[0-9]*|*nvidia*) die "a torch or nvidia wheel came in" ;; esac

echo "== each wheel's requirements: met by the image's packages or another wheel"
"$PY" - "$NEW/wheels" "$PYVER" "${IMAGE[@]}" <<'EOF'
import sys, zipfile
from pathlib import Path
try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pip always carries a copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

folder, pyver, image = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
have = {}
for spec in image:
    name, _, version = spec.partition("==")
    have[canonicalize_name(name)] = version or None
for wheel in sorted(folder.glob("*.whl")):
    name, version = wheel.name.split("-")[:2]
    have[canonicalize_name(name)] = version
env = {"python_version": pyver, "python_full_version": pyver + ".0", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "extra": ""}
bad = []
for wheel in sorted(folder.glob("*.whl")):
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        key = canonicalize_name(req.name)
        if key not in have:
            bad.append(f"{wheel.name} needs {req}: neither the image nor the bundle has it")
        elif have[key] and not req.specifier.contains(have[key], prereleases=True):
            bad.append(f"{wheel.name} needs {req}: the image/bundle has {have[key]}")
        else:
            print(f"  {wheel.name}: {req} -> {have[key] or 'on the image'}")
if bad:
    sys.exit("device_bundle: " + "; ".join(bad))
EOF
fi

echo "== upstream: bare copy of $SOURCE at $COMMIT"
git -C "$SOURCE" cat-file -e "$COMMIT^{commit}" 2>/dev/null || die "$SOURCE lacks the pinned commit $COMMIT"
git clone -q --bare --no-hardlinks -- "$SOURCE" "$NEW/upstream.git"
# Only the pinned commit's history is wanted: one ref, no remote, no stale config.
git -C "$NEW/upstream.git" for-each-ref --format='delete %(refname)' | git -C "$NEW/upstream.git" update-ref --stdin
git -C "$NEW/upstream.git" update-ref refs/heads/pinned "$COMMIT"
git -C "$NEW/upstream.git" symbolic-ref HEAD refs/heads/pinned
git -C "$NEW/upstream.git" remote remove origin 2>/dev/null || true

{
  echo "# benchmarks/device_bundle.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "upstream.git: $COMMIT (recipe $RECIPE, from $SOURCE)"
  echo "wheels (python $PYVER, manylinux x86_64):"
  if compgen -G "$NEW/wheels/*.whl" >/dev/null; then
    (cd "$NEW/wheels" && sha256sum -- *.whl | sed 's/^/  /')
  else
    echo "  none (--no-wheels)"
  fi
} > "$NEW/MANIFEST.txt"

rm -rf "$DEST" && mv "$NEW" "$DEST"
trap - EXIT
cat "$DEST/MANIFEST.txt"
size_kib="$(du -sk "$DEST" | cut -f1)"
echo "== $DEST: $((size_kib / 1024)) MiB ($size_kib KiB): wheels $(du -sk "$DEST/wheels" | cut -f1) KiB, upstream.git $(du -sk "$DEST/upstream.git" | cut -f1) KiB"
[ "$size_kib" -le $((LIMIT_MIB * 1024)) ] || die "$DEST is over $LIMIT_MIB MiB: it would not travel with the tree"
