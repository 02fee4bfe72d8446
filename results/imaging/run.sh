#!/usr/bin/env bash
# Reproduce the imaging learning curves: 3 problems x 7 estimator configurations x 3 seeds,
# default presets, one torch thread per run, then two weighted_tv variants. Each command is
# one grid (one run per combination of the options' values, deq once per problem and seed),
# each run its own resumable table: rerunning skips finished runs and continues interrupted
# ones. Extra arguments go to every command, e.g. `results/imaging/run.sh --workers 2` to run
# the grid on a local Dask cluster of 2 processes (or --scheduler ADDRESS). Then draws the
# figures and tables.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=results/imaging/train
ESTIMATORS="deq unrolled jfb restarted_jfb"
jfbbench train --problem weighted_tv pnp_fb drunet_fb --estimator $ESTIMATORS --depth 2 10 --seed 0 1 2 \
  --out "$OUT/{problem}/{estimator}-K{depth}-s{seed}.csv" "$@"
# A harder variant: one weight per pixel position and direction (2 x 32 x 32 = 2048 weights)
jfbbench train --problem weighted_tv --estimator $ESTIMATORS --depth 2 --seed 0 1 2 --set weights=per_pixel \
  --out "$OUT/weighted_tv_per_pixel/{estimator}-K{depth}-s{seed}.csv" "$@"
# The non-smooth variant: exact prox of a weighted l1 norm of Haar details (3 band weights)
jfbbench train --problem weighted_tv --estimator $ESTIMATORS --depth 2 --seed 0 1 2 --set smoothing=0 --set weight=0.01 \
  --out "$OUT/weighted_tv_nonsmooth/{estimator}-K{depth}-s{seed}.csv" "$@"
python results/imaging/report.py
