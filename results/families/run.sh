#!/usr/bin/env bash
# Training on classification: conv_deq (an MDEQ-style convolutional block on 256 training
# digits, 300 test digits) and ignn (an implicit graph network on the chains benchmark, 10
# chains of 10 nodes per class), each at its "default" preset (rho = 0.9), one torch thread
# per run, seeds 0 1 2. DEQ from a cold and from a warm start (forward and adjoint solves
# started from the sample's last solution); JFB, unrolling and restarted JFB at K = 2. One
# table per run under results/families/train/<problem>/; resumable (rerunning skips finished
# runs and continues interrupted ones). Then `python results/families/report.py`.
# Extra arguments go to both commands, e.g.
#   results/families/run.sh --workers 2                       # both cores (a local Dask cluster)
#   PROBLEMS="ignn" SEEDS="0" results/families/run.sh         # a subset
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
PROBLEMS=${PROBLEMS:-"conv_deq ignn"}
SEEDS=${SEEDS:-"0 1 2"}
OUT="results/families/train/{problem}/{estimator}-K{depth}-{start}-s{seed}.csv"
# shellcheck disable=SC2086
"$PYTHON" -m jfbbench train --problem $PROBLEMS --seed $SEEDS --estimator deq --start cold warm --out "$OUT" "$@"
# shellcheck disable=SC2086
"$PYTHON" -m jfbbench train --problem $PROBLEMS --seed $SEEDS --estimator jfb unrolled restarted_jfb --depth 2 \
  --out "$OUT" "$@"
# Restarted JFB on ignn for ten times the steps (1500: 6000 T + VJP, about DEQ's whole budget).
# shellcheck disable=SC2086
"$PYTHON" -m jfbbench train --problem ignn --seed $SEEDS --estimator restarted_jfb --depth 2 --steps 1500 --gap-every 50 \
  --out "results/families/long/{problem}/{estimator}-K{depth}-s{seed}.csv" "$@"
