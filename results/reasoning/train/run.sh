#!/usr/bin/env bash
# Training on generated 4 x 4 Sudoku (recursive_reasoning, rho = 0.9, the family's default
# preset) with each scheme, without and with deep supervision (N_sup = 1, 4), seeds 0-2, on
# one core. Resumable: a rerun continues every unfinished run and leaves the finished ones.
# See results/reasoning/README.md for the reading.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's jfbbench
RUNS=results/reasoning/train/runs
train() {  # train OUT-TEMPLATE ARGS...: the grid of ARGS x 3 seeds x N_sup in {1, 4}
  local out=$1; shift
  nice -n 5 python -m jfbbench train --problem recursive_reasoning --seed 0 1 2 --deep-supervision 1 4 \
    --workers 1 --out "$out" "$@"
}
# each puzzle's state carried from one visit to the next (restarted JFB's way)
train "$RUNS/{estimator}-N{deep_supervision}-s{seed}.csv" --estimator trm hrm_one_step --estimator-set cycles=3
train "$RUNS/{estimator}-N{deep_supervision}-s{seed}.csv" --estimator restarted_jfb --depth 2 --extra-steps 1
train "$RUNS/{estimator}-N{deep_supervision}-s{seed}.csv" --estimator jfb deq --start warm
train "$RUNS/{estimator}-N{deep_supervision}-s{seed}.csv" --estimator unrolled --depth 3  # no state: N_sup = 1 only
# each outer step's batch started cold, the state carried between its supervised steps only (the published way)
train "$RUNS/{estimator}-N{deep_supervision}-reset-s{seed}.csv" --state reset --estimator trm hrm_one_step \
  --estimator-set cycles=3
train "$RUNS/{estimator}-N{deep_supervision}-reset-s{seed}.csv" --state reset --estimator restarted_jfb --depth 2 \
  --extra-steps 1
python results/reasoning/train/equilibrium.py  # rho_loc and the schemes' bias at the end (reads the checkpoints)
python results/reasoning/train/report.py
