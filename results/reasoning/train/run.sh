#!/usr/bin/env bash
# Training on generated 4 x 4 Sudoku (recursive_reasoning, rho = 0.9, the family's default
# preset) with each scheme, without and with deep supervision (N_sup = 1, 4), seeds 0-2, on
# one core. Resumable: a rerun continues every unfinished run and leaves the finished ones.
# See results/reasoning/README.md for the reading.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's jfbbench
OUT='results/reasoning/train/runs/{estimator}-N{deep_supervision}-s{seed}.csv'
train() { nice -n 5 python -m jfbbench train --problem recursive_reasoning --seed 0 1 2 --deep-supervision 1 4 \
  --workers 1 --out "$OUT" "$@"; }
train --estimator trm hrm_one_step --estimator-set cycles=3  # 3 cycles of n = 3 latent updates
train --estimator restarted_jfb --depth 2 --extra-steps 1     # the same 3 cycles, the last 2 with the graph
train --estimator jfb deq --start warm                        # each solve starts where the last one ended
train --estimator unrolled --depth 3                          # carries no state: N_sup = 1 only
python results/reasoning/train/equilibrium.py  # rho_loc and the schemes' bias at the end (reads the checkpoints)
python results/reasoning/train/report.py
