#!/usr/bin/env bash
# The imaging experiments at a realistic size: preset "large" (the grey image set of
# jfbbench/data.py: 7 training and 3 test pictures, split by picture; 128 x 128 crops for
# weighted_tv, 64 x 64 for pnp_fb and drunet_fb), every estimator setting below, seeds in
# order, one torch thread, runs in sequence. Resumable: rerunning skips finished runs and
# continues interrupted ones (each run keeps <table>.ckpt.pt beside its table).
#   PROBLEMS="weighted_tv" SEEDS="0" results/imaging/run.sh     # a subset
set -euo pipefail
cd "$(dirname "$0")/../.."
PROBLEMS=${PROBLEMS:-"weighted_tv pnp_fb drunet_fb"}
SEEDS=${SEEDS:-"0 1 2"}
CONFIGS=${CONFIGS:-"deq:1:cold deq:1:warm jfb:2:cold jfb:2:warm unrolled:2:cold unrolled:10:cold restarted_jfb:2:cold restarted_jfb:10:cold"}
for seed in $SEEDS; do
  for problem in $PROBLEMS; do
    for cfg in $CONFIGS; do
      IFS=: read -r est depth start <<<"$cfg"
      flag=""
      [ "$start" = warm ] && flag="--warm-start"
      jfbbench train --problem "$problem" --preset large --estimator "$est" --depth "$depth" $flag --seed "$seed" \
        --out "results/imaging/train/$problem/$est-K$depth-$start-s$seed.csv"
    done
  done
done
