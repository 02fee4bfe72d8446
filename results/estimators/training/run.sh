#!/usr/bin/env bash
# Training with the estimators beside JFB (preset "large": 128 x 128 crops for weighted_tv,
# 64 x 64 for pnp_fb; 3 seeds): revdeq and shine beside deq, jfb, restarted_jfb and unrolled
# on weighted_tv; forward_mode beside the same on pnp_fb (its step size and denoiser strength
# are 2 parameters, forward mode's home ground). Every baseline is trained here again rather
# than read from results/imaging, so that all runs come from the same code. Resumable: a rerun
# skips finished runs and continues interrupted ones. Extra arguments go to every command,
# e.g. --workers 2. Then: python results/imaging/report.py --dir results/estimators/training --no-reconstructions
set -euo pipefail
cd "$(dirname "$0")/../../.."
SEEDS=${SEEDS:-"0 1 2"}
D=results/estimators/training/train
T="jfbbench train --preset large --seed $SEEDS"
# shellcheck disable=SC2086
for P in weighted_tv pnp_fb; do
  $T --problem $P --estimator deq jfb --depth 2 --start cold warm --out "$D/$P/{estimator}-K{depth}-{start}-s{seed}.csv" "$@"
  $T --problem $P --estimator restarted_jfb unrolled --depth 2 10 --out "$D/$P/{estimator}-K{depth}-s{seed}.csv" "$@"
done
# weighted_tv: reversible DEQ (beta = 1.5: its inverse steps magnify round-off least, see
# results/revdeq) and SHINE without and with 8 refinement steps (Broyden forward solves)
$T --problem weighted_tv --estimator revdeq --depth 2 10 --estimator-set beta=1.5 \
  --out "$D/weighted_tv/revdeq-beta1.5-K{depth}-s{seed}.csv" "$@"
for R in 0 8; do
  $T --problem weighted_tv --estimator shine --estimator-set refine=$R --out "$D/weighted_tv/shine-refine$R-s{seed}.csv" "$@"
done
# pnp_fb: forward-mode unrolling (JVPs, one column per parameter: the gradient of unrolled)
$T --problem pnp_fb --estimator forward_mode --depth 2 10 --out "$D/pnp_fb/{estimator}-K{depth}-s{seed}.csv" "$@"
