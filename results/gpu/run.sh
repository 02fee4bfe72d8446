#!/usr/bin/env bash
# The GPU experiment: drunet_fb (forward-backward with a DRUNet, all its weights learned) on
# 256 x 256 crops (the "grey256" image set: the bundled grey pictures of at least 256 px, five
# training pictures, so a batch of 5), peak CUDA memory and time of one gradient against the depth K for
# unrolling, JFB-K, restarted JFB (after 4 calls at the same parameters) and DEQ (no depth:
# one row), float32, on one GPU. Resumable (the sweep appends rows as they are measured and
# skips the ones present); then the figures. Then the memory against depth of the estimators
# beyond the paper (unrolled, checkpointed at sqrt(K) and 4, revdeq, forward_mode, jfb, deq) on
# weighted_tv 128 x 128 with CUDA's allocator peak: results/memory/memory.py on the device
# (memory_cuda.csv, and memory_cuda/ with its slopes and figure, beside results/memory/ on the CPU).
#   results/gpu/run.sh                                   # on a machine with CUDA
#   DEVICE=cpu PATCH=32 DEPTHS="1 2" MEMPATCH=16 OUT=/tmp/gpu results/gpu/run.sh   # a dry run without one
set -euo pipefail
cd "$(dirname "$0")/../.."
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-float32}
PATCH=${PATCH:-256}
IMAGES=${IMAGES:-grey256}
DEPTHS=${DEPTHS:-"1 2 4 8 16 32 64"}
OUT=${OUT:-results/gpu}
mkdir -p "$OUT"
python -c "import torch, sys; sys.exit(0 if '$DEVICE' != 'cuda' or torch.cuda.is_available() else 'CUDA is not available: run this on a GPU machine (or DEVICE=cpu for a dry run)')"
# shellcheck disable=SC2086
jfbbench sweep --problem drunet_fb --estimator unrolled jfb restarted_jfb deq --depth $DEPTHS --seed 0 \
  --restarts 4 --set "patch=$PATCH" --set "images=$IMAGES" --device "$DEVICE" --dtype "$DTYPE" --min-run-time 1 \
  --out "$OUT/drunet_fb_memory.csv"
jfbbench plot "$OUT/drunet_fb_memory.csv" --out "$OUT"
python - "$OUT/drunet_fb_memory.csv" <<'PY'
import sys

import pandas as pd

t = pd.read_csv(sys.argv[1])
cols = ["estimator", "depth", "peak_memory_bytes", "memory_bytes", "time_s", "operator_evals", "vjp_evals", "converged"]
print(t[[c for c in cols if c in t]].sort_values(["estimator", "depth"]).to_markdown(index=False))
PY

MEMPATCH=${MEMPATCH:-128}
PYTHONPATH=. python results/memory/memory.py "$OUT/memory_$DEVICE.csv" --device "$DEVICE" --patch "$MEMPATCH"
mkdir -p "$OUT/memory_$DEVICE"
PYTHONPATH=. python results/memory/plot.py "$OUT/memory_$DEVICE.csv" "$OUT/memory_$DEVICE" "${DEVICE^^}"
