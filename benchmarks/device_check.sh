#!/usr/bin/env bash
# The check on a lent accelerator machine: offline, in one command, inside a budget it prints
# first and enforces (each phase is stopped at its limit and reported as cut).
#   setup:       the wheels of the bundle (benchmarks/device_bundle.sh) installed with
#                `pip --no-index` into a folder of the work dir; `migrate doctor`;
#   correctness: the same small model and seed on the CPU and on the device through every
#                stage, in fp32 (--precision full on both sides, and no TF32 on the GPU: the
#                check measures randn_to_cpu, not rounding); PSNR per batch, before and after
#                randn_to_cpu (expected: unrelated before, close after, for every batch);
#   speed:       `migrate run --model full` on the device: samples/s per stage (the
#                random-weight model is built once, then every stage loads it from the cache);
#   report:      benchmarks/device_report.py writes report.md, report.json and psnr-grid.png.
# Everything a person needs lands in the --out folder, at most 8 files, none in a subfolder:
# device_check.log (all output), report.md, report.json, psnr-grid.png. The network is never
# used: the upstream is cloned from the bundle's copy and pip never reaches an index.
#
# Usage: benchmarks/device_check.sh [--phase all|correctness|speed] [--device cuda|hpu|cpu]
#          [--model full] [--psnr-model tiny] [--psnr-args ARGS] [--recipe NAME|PATH]
#          [--bundle DIR] [--source MIRROR] [--work DIR] [--out DIR]
#          [--limits SETUP,CORRECTNESS,SPEED] [--dry-run] [-- SPEED SCRIPT ARGS]
#   --bundle     wheels/ and upstream.git/ from device_bundle.sh, or none
#                [default: .device when present]
#   --source     the upstream to clone [default: the bundle's upstream.git, else $MIGRATE_SOURCE]
#   --psnr-args  txt2img arguments for both PSNR runs [default: --precision full]
#   --work       run folders, workspace, model cache [default: device-check/<UTC time>]
#   --out        the files to take home [default: $OUT when set, else <work>/out]
#   --limits     seconds per phase [default: 40,100,220: 6 minutes in all]
#   --dry-run    print the budget and what would run; run nothing
# Environment: PYTHON (the interpreter with torch) [default: python3].
# Exit status: 0 the PSNR pattern is the expected one and no phase failed or was cut; 1 not;
# 2 bad usage. A CPU rehearsal: --device cpu --model tiny (both PSNR sides identical).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
PHASE=all
DEVICE=cuda
MODEL=full
PSNR_MODEL=tiny
PSNR_ARGS="--precision full"
RECIPE=stable-diffusion
BUNDLE=""
SOURCE=""
WORK=""
DEST="${OUT:-}"  # the lent machine returns the files under $OUT
LIMITS="40,100,220"
DRY=0
EXTRA=()

die() { echo "device_check: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --phase) PHASE="${2:?--phase needs a value}"; shift 2 ;;
    --device) DEVICE="${2:?--device needs a value}"; shift 2 ;;
    --model) MODEL="${2:?--model needs a value}"; shift 2 ;;
    --psnr-model) PSNR_MODEL="${2:?--psnr-model needs a value}"; shift 2 ;;
    --psnr-args) PSNR_ARGS="${2?--psnr-args needs a value}"; shift 2 ;;
    --recipe) RECIPE="${2:?--recipe needs a value}"; shift 2 ;;
    --bundle) BUNDLE="${2:?--bundle needs a value}"; shift 2 ;;
    --source) SOURCE="${2:?--source needs a value}"; shift 2 ;;
    --work) WORK="${2:?--work needs a value}"; shift 2 ;;
    --out) DEST="${2:?--out needs a value}"; shift 2 ;;
    --limits) LIMITS="${2:?--limits needs a value}"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
case "$PHASE" in all|correctness|speed) ;; *) die "--phase must be all, correctness or speed, got $PHASE" ;; esac
case "$DEVICE" in cuda|hpu|cpu) ;; *) die "--device must be cuda, hpu or cpu, got $DEVICE" ;; esac
[[ "$LIMITS" =~ ^([0-9]+),([0-9]+),([0-9]+)$ ]] || die "--limits must be three whole seconds, SETUP,CORRECTNESS,SPEED (got $LIMITS)"
SETUP_S="${BASH_REMATCH[1]}" CORRECT_S="${BASH_REMATCH[2]}" SPEED_S="${BASH_REMATCH[3]}"
if [ -z "$BUNDLE" ] && [ -d "$REPO/.device" ]; then BUNDLE="$REPO/.device"; fi
[ "$BUNDLE" != none ] || BUNDLE=""
if [ -n "$BUNDLE" ]; then
  [ -d "$BUNDLE" ] || die "--bundle $BUNDLE: no such folder (make it with benchmarks/device_bundle.sh)"
  BUNDLE="$(cd "$BUNDLE" && pwd)"
  if [ -z "$SOURCE" ] && [ -d "$BUNDLE/upstream.git" ]; then SOURCE="$BUNDLE/upstream.git"; fi
fi
SOURCE="${SOURCE:-${MIGRATE_SOURCE:-}}"
WORK="${WORK:-$REPO/device-check/$(date -u +%Y%m%dT%H%M%SZ)}"
DEST="${DEST:-$WORK/out}"
RUNS="$WORK/runs"
WS="$WORK/workspace"
SITE="$WORK/site"
PSNR_DEV_ID="psnr-$DEVICE-device"
read -r -a PSNR_EXTRA <<< "$PSNR_ARGS"

# Nothing may wait on a network: Hugging Face offline, pip with no index, git local only.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 PIP_NO_INDEX=1
export GIT_TERMINAL_PROMPT=0
MIGRATE=(env "PYTHONPATH=$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m migrate)
migrate() { "${MIGRATE[@]}" "$@"; }
show() { printf '+'; printf ' %q' "$@"; printf '\n'; }
step() { printf '\n=== %s (%s) ===\n' "$1" "$(date -u +%H:%M:%S)"; }
want() { [ "$PHASE" = all ] || [ "$PHASE" = "$1" ]; }

CUT=()     # phases stopped at their limit
FAILED=()  # runs that exited non-zero
NOTES=()   # lines for the report's header
CURRENT="start"

if [ "$DRY" = 0 ]; then
  mkdir -p "$DEST" "$WORK"
  DEST="$(cd "$DEST" && pwd)"
  LOG="$DEST/device_check.log"
  exec 3>&1 4>&2
  exec > >(tee "$LOG") 2>&1
  TEE_PID=$!
  finish() {  # on every exit: a report.md saying where it stopped, if none was written
    local rc=$?
    if [ ! -f "$DEST/report.md" ]; then
      printf '# device check: stopped during %s (exit %s)\n\nSee device_check.log.\n' \
        "$CURRENT" "$rc" > "$DEST/report.md"
    fi
    exec 1>&3 2>&4
    wait "$TEE_PID" 2>/dev/null || true
    exit "$rc"
  }
  trap finish EXIT
fi

step "budget"
total=0
printf '%-12s %6s  %s\n' phase limit what
printf '%-12s %5ss  %s\n' setup "$SETUP_S" "wheels from the bundle, migrate doctor"
total=$((total + SETUP_S)) parts="setup ${SETUP_S} s"
if want correctness; then
  printf '%-12s %5ss  %s\n' correctness "$CORRECT_S" "model $PSNR_MODEL on cpu, then on $DEVICE, every stage ($PSNR_ARGS)"
  total=$((total + CORRECT_S)) parts+=", correctness ${CORRECT_S} s"
fi
if want speed; then
  printf '%-12s %5ss  %s\n' speed "$SPEED_S" "model $MODEL on $DEVICE, every stage"
  total=$((total + SPEED_S)) parts+=", speed ${SPEED_S} s"
fi
printf '%-12s %5ss  %s\n' "in all" "$total" "plus the report (seconds); a phase past its limit is stopped and reported as cut"
NOTES+=("budget: ${total} s ($parts)")

step "environment"
echo "repo: $REPO ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout'))"
echo "python: $PY; phase: $PHASE; device: $DEVICE; speed model: $MODEL; PSNR model: $PSNR_MODEL"
echo "bundle: ${BUNDLE:-none}; source: ${SOURCE:-the recipe URL}; work: $WORK; out: $DEST"
command -v git >/dev/null || die "git is not installed: migrate clones and patches the upstream with it"
if [ "$DRY" = 0 ]; then
  CURRENT="setup"
  SETUP_END=$((SECONDS + SETUP_S))
  versions="$("$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__,
"cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")')" \
    || die "$PY cannot import torch: set PYTHON to the interpreter that has it"
  echo "$versions"
  NOTES+=("$versions")
  if command -v nvidia-smi >/dev/null; then nvidia-smi -L || true; fi
fi

step "setup: wheels"
if [ -n "$BUNDLE" ] && compgen -G "$BUNDLE/wheels/*.whl" >/dev/null; then
  install=("$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade
           --disable-pip-version-check --target "$SITE" "$BUNDLE"/wheels/*.whl)
  show "${install[@]}"
  if [ "$DRY" = 0 ]; then
    "${install[@]}" || { echo "device_check: installing the bundle's wheels failed" >&2; exit 1; }
    NOTES+=("installed from the bundle: $(cd "$BUNDLE/wheels" && ls -- *.whl | tr '\n' ' ')")
  fi
else
  echo "no wheels to install (no bundle, or none in it): the interpreter must have everything"
fi

migrate --version >/dev/null 2>&1 || [ "$DRY" = 1 ] || die "$PY cannot run migrate from $REPO (missing packages?)"

step "setup: migrate doctor"
show migrate doctor --recipe "$RECIPE"
if [ "$DRY" = 0 ]; then
  set +e; timeout -k 10 $((SETUP_END - SECONDS > 1 ? SETUP_END - SECONDS : 1)) \
    "${MIGRATE[@]}" doctor --recipe "$RECIPE"; rc=$?; set -e
  case "$rc" in
    0) ;;
    124|137) CUT+=(setup); echo "device_check: setup ran past its ${SETUP_S} s" >&2; exit 1 ;;
    *) echo "device_check: migrate doctor says the job cannot run here (exit $rc)" >&2; exit 1 ;;
  esac
fi

common=(--recipe "$RECIPE" --workspace "$WS" --runs-dir "$RUNS" --repeat 1)
[ -n "$SOURCE" ] && common+=(--source "$SOURCE")

cut() { case " ${CUT[*]} " in *" $CURRENT "*) ;; *) CUT+=("$CURRENT") ;; esac; }

run_stages() {  # run_stages DEADLINE RUN_ID DEVICE MODEL [-- ARGS]: one `migrate run`, bounded
  local deadline="$1" id="$2" device="$3" model="$4"; shift 4
  local cmd=(migrate run "${common[@]}" --run-id "$id" --device "$device" --model "$model" "$@")
  show "${cmd[@]}"
  [ "$DRY" = 1 ] && return 0
  local left=$((deadline - SECONDS)) rc
  if [ "$left" -lt 1 ]; then cut; echo "device_check: no time left for run $id" >&2; return 0; fi
  # SIGINT first: migrate stops the stage's script and keeps what the finished stages wrote.
  set +e
  timeout -s INT -k 20 "$left" "${MIGRATE[@]}" "${cmd[@]:1}"
  rc=$?
  set -e
  case "$rc" in
    0) ;;
    124|130|137) cut; echo "device_check: run $id stopped at the $CURRENT phase's limit" >&2 ;;
    *) FAILED+=("$id"); echo "device_check: run $id exited $rc (a stage failed; see its tail below)" >&2
       for err in "$RUNS/$id"/*/stderr.log; do
         if [ -f "$err" ]; then echo "--- $err (last 15 lines)"; tail -n 15 "$err"; fi
       done ;;
  esac
}

if want correctness; then
  step "correctness: model $PSNR_MODEL on the CPU and on $DEVICE, same seed, every stage"
  CURRENT=correctness
  end=$((SECONDS + CORRECT_S))
  # fp32 on both sides means fp32 on the GPU too: cuDNN convolutions use TF32 unless told not to.
  echo "NVIDIA_TF32_OVERRIDE=0 for both runs (no TF32 in cuBLAS/cuDNN)"
  export NVIDIA_TF32_OVERRIDE=0
  if [ ${#PSNR_EXTRA[@]} -gt 0 ]; then
    run_stages "$end" psnr-cpu cpu "$PSNR_MODEL" -- "${PSNR_EXTRA[@]}"
    run_stages "$end" "$PSNR_DEV_ID" "$DEVICE" "$PSNR_MODEL" -- "${PSNR_EXTRA[@]}"
  else
    run_stages "$end" psnr-cpu cpu "$PSNR_MODEL"
    run_stages "$end" "$PSNR_DEV_ID" "$DEVICE" "$PSNR_MODEL"
  fi
  unset NVIDIA_TF32_OVERRIDE  # the speed phase runs as a user would
  [ "$DRY" = 1 ] || NOTES+=("correctness: $((SECONDS - end + CORRECT_S)) s of ${CORRECT_S} s")
fi

if want speed; then
  step "speed: model $MODEL on $DEVICE, every stage"
  CURRENT=speed
  end=$((SECONDS + SPEED_S))
  if [ ${#EXTRA[@]} -gt 0 ]; then run_stages "$end" speed "$DEVICE" "$MODEL" -- "${EXTRA[@]}"
  else run_stages "$end" speed "$DEVICE" "$MODEL"; fi
  [ "$DRY" = 1 ] || NOTES+=("speed: $((SECONDS - end + SPEED_S)) s of ${SPEED_S} s")
fi

step "report"
CURRENT=report
report=("$PY" "$REPO/benchmarks/device_report.py" --out "$DEST")
have_run() { [ "$DRY" = 1 ] || [ -f "$RUNS/$1/run.json" ]; }
if want speed && have_run speed; then report+=(--speed "$RUNS/speed"); fi
if want correctness && have_run psnr-cpu && have_run "$PSNR_DEV_ID"; then
  report+=(--cpu "$RUNS/psnr-cpu" --device "$RUNS/$PSNR_DEV_ID")
fi
for phase in "${CUT[@]}"; do
  NOTES+=("CUT at the limit: $phase (rerun it alone with more time: benchmarks/device_check.sh --phase $phase --limits $SETUP_S,$((CORRECT_S * 2)),$((SPEED_S * 2)))")
done
[ ${#FAILED[@]} -eq 0 ] || NOTES+=("runs with a failed stage: ${FAILED[*]}")
for note in "${NOTES[@]}"; do report+=(--note "$note"); done
show "${report[@]}"
[ "$DRY" = 1 ] && exit 0
case " ${report[*]} " in
  *" --speed "*|*" --cpu "*) ;;
  *) { echo "# device check: no run finished"; echo; printf -- '- %s\n' "${NOTES[@]}"
       echo; echo "See device_check.log."; } > "$DEST/report.md"
     echo "device_check: no run finished: nothing to report" >&2; exit 1 ;;
esac
set +e; env "PYTHONPATH=$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}" "${report[@]}"; rc=$?; set -e
files="$(find "$DEST" -type f | wc -l)"
echo "out: $DEST ($files files: $(cd "$DEST" && ls | tr '\n' ' '))"
[ "$files" -le 8 ] || echo "device_check: more than 8 files in $DEST: only 8 come back" >&2
if [ "$rc" = 0 ] && { [ ${#CUT[@]} -gt 0 ] || [ ${#FAILED[@]} -gt 0 ]; }; then rc=1; fi
exit "$rc"
