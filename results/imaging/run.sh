#!/usr/bin/env bash
# The imaging experiments at a realistic size: preset "large" (the grey image set of
# jfbbench/data.py: 7 training and 3 test pictures, split by picture; 128 x 128 crops for
# weighted_tv, 64 x 64 for pnp_fb and drunet_fb), one torch thread per run. Two training
# grids (one run per combination of the options' values, all of seed 0 first; deq has no
# depth): deq and jfb K=2, each from a cold and a warm start; unrolled and restarted JFB at
# K = 2 and 10. Resumable: rerunning skips finished runs and continues interrupted ones (each
# run keeps <table>.ckpt.pt beside its table). Extra arguments go to both commands, e.g.
#   results/imaging/run.sh --workers 2                           # both cores (a local Dask cluster)
#   PROBLEMS="weighted_tv" SEEDS="0" results/imaging/run.sh      # a subset
set -euo pipefail
cd "$(dirname "$0")/../.."
PROBLEMS=${PROBLEMS:-"weighted_tv pnp_fb drunet_fb"}
SEEDS=${SEEDS:-"0 1 2"}
OUT="results/imaging/train/{problem}/{estimator}-K{depth}-{start}-s{seed}.csv"
# shellcheck disable=SC2086
jfbbench train --problem $PROBLEMS --preset large --seed $SEEDS --estimator deq jfb --depth 2 --start cold warm \
  --out "$OUT" "$@"
# shellcheck disable=SC2086
jfbbench train --problem $PROBLEMS --preset large --seed $SEEDS --estimator unrolled restarted_jfb --depth 2 10 \
  --out "$OUT" "$@"
