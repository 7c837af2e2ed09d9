#!/usr/bin/env bash
# GPU check (issue 8): on one modern NVIDIA GPU, in under 8 minutes,
#   1. build the CUDA plugins and check them against the PyTorch paths (benchmarks/gpu_ops_check.py);
#   2. time a G forward and a training step at 256 px, plugin vs PyTorch (benchmarks/fewshot/gpu_timing.py);
#   3. train DA and DA + CHAIN (running) at 256 px on 100-shot-obama for as many kimg as fit in
#      TRAIN_SECONDS each (train.py stops cleanly on SIGTERM and writes a snapshot);
#   4. print a short table last.
#
#   bash benchmarks/gpu_check.sh                    # from the repository root or anywhere
#   TRAIN_SECONDS=60 bash benchmarks/gpu_check.sh   # shorter training part
#
# Exit status: 0 all steps passed; 2 no CUDA device; 1 a step failed (its log is named).
# Work files (converted data, runs, logs) go to a temporary folder outside the repository.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
TRAIN_SECONDS="${TRAIN_SECONDS:-120}"
DATA="${DATA:-../shared/datasets/100-shot-obama}"
START=$SECONDS

step() { echo; echo "=== [$(( SECONDS - START ))s] $*"; }
fail() { echo "gpu_check.sh: $*" >&2; exit 1; }

# --- 0. A CUDA device, or a clear refusal -----------------------------------------------
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check.sh: no CUDA device is visible to PyTorch (torch.cuda.is_available() is False)." >&2
    echo "Run it on a machine with an NVIDIA GPU, its driver and a CUDA build of PyTorch; on CPU use the tests and benchmarks/fewshot/run.py." >&2
    exit 2
fi
"$PY" -c 'import torch; print("GPU:", torch.cuda.get_device_name(), "| torch", torch.__version__, "| CUDA", torch.version.cuda)'
command -v nvcc >/dev/null || echo "Note: nvcc is not on PATH; the plugins cannot build and the PyTorch paths will run (a one-line warning each)."
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
echo "Work folder: $WORK"

# --- 1. Build the plugins and check them against the PyTorch paths ----------------------
step "1/4 CUDA plugins vs PyTorch paths (benchmarks/gpu_ops_check.py)"
[[ -f benchmarks/gpu_ops_check.py ]] || fail "benchmarks/gpu_ops_check.py is missing (the ops engineer's plugin check); cannot check the plugins"
"$PY" benchmarks/gpu_ops_check.py 2>&1 | tee "$WORK/ops_check.log" \
    || fail "the plugin check failed; see $WORK/ops_check.log"

# --- 2. Timings, plugin vs PyTorch ------------------------------------------------------
step "2/4 G forward and training step at 256 px, plugin vs PyTorch"
"$PY" benchmarks/fewshot/gpu_timing.py time --out "$WORK/timing.json" --res 256 --batch 16 2>&1 | tee "$WORK/timing.log" \
    || fail "the timing failed; see $WORK/timing.log"

# --- 3. Short trainings at 256 px -------------------------------------------------------
step "3/4 DA and DA + CHAIN at 256 px, ${TRAIN_SECONDS}s each"
if [[ -d "$DATA" ]]; then
    "$PY" dataset_tool.py --source="$DATA" --dest="$WORK/obama-256.zip" --resolution=256x256 > "$WORK/dataset_tool.log" 2>&1 \
        || fail "dataset_tool.py failed; see $WORK/dataset_tool.log"
    for method in da da_chain_running; do
        flags=(--aug=diffaug)
        [[ $method == da_chain_running ]] && flags+=(--chain=running)
        mkdir -p "$WORK/runs/$method"
        # SIGTERM: the loop finishes its step and writes a snapshot; 124 is timeout's "time is up".
        rc=0
        timeout --signal=TERM --kill-after=30 "$TRAIN_SECONDS" \
            "$PY" train.py --outdir="$WORK/runs/$method" --data="$WORK/obama-256.zip" --cfg=lowshot --gpus=1 \
            --device=cuda --kimg=100 --tick=1 --snap=1000 --metrics=none "${flags[@]}" \
            > "$WORK/runs/$method.log" 2>&1 || rc=$?
        [[ $rc == 0 || $rc == 124 ]] || fail "training $method failed (exit $rc); see $WORK/runs/$method.log"
        tail -n 2 "$WORK/runs/$method.log"
    done
else
    echo "Skipped: $DATA is absent (set DATA=PATH to a folder of images)."
fi

# --- 4. Summary ----------------------------------------------------------------------------
step "4/4 Summary (total $(( SECONDS - START ))s)"
"$PY" benchmarks/fewshot/gpu_timing.py table --timing "$WORK/timing.json" --runs "$WORK/runs"
