#!/usr/bin/env bash
# Reproduce the imaging learning curves: 3 problems x 7 estimator configurations x 3 seeds,
# default presets, one torch thread each (the runs are sequential). Resumable: rerunning
# skips finished runs and continues interrupted ones. Then draws figures and tables.
set -euo pipefail
cd "$(dirname "$0")/../.."
PROBLEMS=${PROBLEMS:-"weighted_tv pnp_fb drunet_fb"}
SEEDS=${SEEDS:-"0 1 2"}
CONFIGS=("deq 1" "unrolled 2" "unrolled 10" "jfb 2" "jfb 10" "restarted_jfb 2" "restarted_jfb 10")
for problem in $PROBLEMS; do
  for seed in $SEEDS; do
    for cfg in "${CONFIGS[@]}"; do
      set -- $cfg
      jfbbench train --problem "$problem" --estimator "$1" --depth "$2" --seed "$seed" \
        --out "results/imaging/train/$problem/$1-K$2-s$seed.csv"
    done
  done
done
# A harder variant: one weight per pixel position and direction (2 x 32 x 32 = 2048 weights)
for seed in $SEEDS; do
  for cfg in "deq 1" "unrolled 2" "jfb 2" "restarted_jfb 2"; do
    set -- $cfg
    jfbbench train --problem weighted_tv --estimator "$1" --depth "$2" --seed "$seed" --set weights=per_pixel \
      --out "results/imaging/train/weighted_tv_per_pixel/$1-K$2-s$seed.csv"
  done
done
# The non-smooth variant: exact prox of a weighted l1 norm of Haar details (3 band weights)
for seed in $SEEDS; do
  for cfg in "deq 1" "unrolled 2" "jfb 2" "restarted_jfb 2"; do
    set -- $cfg
    jfbbench train --problem weighted_tv --estimator "$1" --depth "$2" --seed "$seed" --set smoothing=0 --set weight=0.01 \
      --out "results/imaging/train/weighted_tv_nonsmooth/$1-K$2-s$seed.csv"
  done
done
python results/imaging/report.py
