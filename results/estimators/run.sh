#!/bin/sh
# The estimators beside JFB over the six built-in families: one table made by several grids
# (--append), then its front and figures. Run from the repository root; resumable (a rerun
# measures only the rows missing from the table).
set -e
OUT=results/estimators/sweep.csv
J="python -m jfbbench sweep --out $OUT --min-run-time 0.05 --depth 4 --depth 16 --depth 64"
RHO="--lipschitz 0.5 --lipschitz 0.9 --lipschitz 0.99"
for P in "--problem affine --problem tikhonov --problem tanh_layer $RHO" "--problem weighted_tv --set patch=16 $RHO" \
         "--problem pnp_fb --set patch=16" "--problem drunet_fb --set patch=16"; do
  # forward_mode carries one column per parameter: drunet_fb's 143,832 pass its max_params
  # (10,000) and it refuses them, so it is measured on the other families only
  case $P in *drunet_fb*) FM="" ;; *) FM="--estimator forward_mode" ;; esac
  $J $P --append --estimator deq --estimator unrolled --estimator jfb --estimator restarted_jfb \
     --estimator revdeq $FM
  $J $P --append --estimator deq --estimator-set adjoint=cg,cg_normal
  $J $P --append --estimator unrolled --estimator-set checkpoint=4
  $J $P --append --estimator shine --estimator-set refine=0,4,16 --estimator-set memory=10,40
done
python -m jfbbench front $OUT --out results/estimators/front --format png
python -m jfbbench plot $OUT --out results/estimators/figures --format png
