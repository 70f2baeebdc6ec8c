#!/usr/bin/env bash
# The first run on a machine with an accelerator, made cheap and decisive:
#   1. `migrate doctor` (skipped with a note where this migrate has no such command yet);
#   2. `migrate run --device cuda --model full` through every stage: per-stage samples/s;
#   3. the same small model and seed on the CPU and on the device through every stage: the PSNR
#      between the CPU's and the device's samples, per batch, before and after randn_to_cpu
#      (expected: unrelated before, close after, for every batch);
#   4. benchmarks/device_report.py prints both; the exit status says whether the PSNR pattern
#      is the expected one.
#
# Usage: benchmarks/device_check.sh [--device cuda|hpu|cpu] [--model full] [--psnr-model tiny]
#          [--recipe NAME|PATH] [--source MIRROR] [--out DIR] [--dry-run] [-- SCRIPT ARGS]
#   --dry-run        print what would run (and whether doctor exists), run nothing
#   --source         the upstream to clone (a local mirror: device machines are offline)
#                    [default: $MIGRATE_SOURCE, else the recipe's URL]
#   -- ARGS          extra txt2img arguments for the speed run (e.g. -- --n_iter 2)
# Environment: PYTHON (the interpreter with torch and the sd packages) [default: python3].
# A CPU rehearsal: --device cpu --model tiny (both PSNR runs on the CPU: identical expected).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
DEVICE=cuda
MODEL=full
PSNR_MODEL=tiny
RECIPE=stable-diffusion
SOURCE="${MIGRATE_SOURCE:-}"
OUT=""
DRY=0
EXTRA=()

die() { echo "device_check: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="${2:?--device needs a value}"; shift 2 ;;
    --model) MODEL="${2:?--model needs a value}"; shift 2 ;;
    --psnr-model) PSNR_MODEL="${2:?--psnr-model needs a value}"; shift 2 ;;
    --recipe) RECIPE="${2:?--recipe needs a value}"; shift 2 ;;
    --source) SOURCE="${2:?--source needs a value}"; shift 2 ;;
    --out) OUT="${2:?--out needs a value}"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
case "$DEVICE" in cuda|hpu|cpu) ;; *) die "--device must be cuda, hpu or cpu, got $DEVICE" ;; esac
OUT="${OUT:-$REPO/device-check/$(date -u +%Y%m%dT%H%M%SZ)}"
RUNS="$OUT/runs"
WS="$OUT/workspace"

migrate() { PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m migrate "$@"; }
show() { printf '+'; printf ' %q' "$@"; printf '\n'; }
step() { printf '\n=== %s (%s) ===\n' "$1" "$(date -u +%H:%M:%S)"; }

common=(--recipe "$RECIPE" --workspace "$WS" --runs-dir "$RUNS")
[ -n "$SOURCE" ] && common+=(--source "$SOURCE")

step "environment"
echo "repo: $REPO ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout'))"
echo "python: $PY; out: $OUT; device: $DEVICE; speed model: $MODEL; PSNR model: $PSNR_MODEL"
if [ "$DRY" = 0 ]; then
  "$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__,
"cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")' \
    || die "$PY cannot import torch: set PYTHON to the interpreter that has it"
  command -v nvidia-smi >/dev/null && nvidia-smi -L || true
fi

migrate --version >/dev/null 2>&1 || die "$PY cannot run migrate from $REPO (missing packages?)"

step "1. migrate doctor"
if migrate doctor --help >/dev/null 2>&1; then
  show migrate doctor
  if [ "$DRY" = 0 ]; then
    set +e; migrate doctor; rc=$?; set -e
    [ "$rc" = 0 ] || { echo "device_check: migrate doctor says the job cannot run here (exit $rc)" >&2; exit 1; }
  fi
else
  echo "migrate doctor: not in this version of migrate; skipped"
fi

run_stages() {  # run_stages RUN_ID DEVICE MODEL [-- ARGS]: one `migrate run`; failures reported
  local id="$1" device="$2" model="$3"; shift 3
  local cmd=(migrate run "${common[@]}" --run-id "$id" --device "$device" --model "$model" "$@")
  show "${cmd[@]}"
  [ "$DRY" = 1 ] && return 0
  set +e; "${cmd[@]}"; local rc=$?; set -e
  [ "$rc" = 0 ] || echo "device_check: run $id exited $rc (a stage failed; see its report)" >&2
  [ -f "$RUNS/$id/run.json" ] || die "run $id left no run.json in $RUNS/$id"
}

step "2. speed: every stage on $DEVICE, model $MODEL"
if [ ${#EXTRA[@]} -gt 0 ]; then run_stages speed "$DEVICE" "$MODEL" -- "${EXTRA[@]}"
else run_stages speed "$DEVICE" "$MODEL"; fi

step "3. PSNR: every stage on the CPU and on $DEVICE, model $PSNR_MODEL, same seed"
run_stages psnr-cpu cpu "$PSNR_MODEL"
run_stages "psnr-$DEVICE-device" "$DEVICE" "$PSNR_MODEL"

step "4. report"
report=("$PY" "$REPO/benchmarks/device_report.py" --speed "$RUNS/speed"
        --cpu "$RUNS/psnr-cpu" --device "$RUNS/psnr-$DEVICE-device")
show "${report[@]}"
[ "$DRY" = 1 ] && exit 0
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "${report[@]}"
