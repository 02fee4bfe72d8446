#!/usr/bin/env bash
# Gradient error of the recursive reasoning family's training schemes (TRM, HRM 1-step) against
# the exact gradient, on one core. See results/reasoning/README.md for the reading.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's jfbbench
# (1) error against depth, rho in {0.5, 0.9, 0.99} and free, seeds 0-2 -> depth.csv, depth.png
python results/reasoning/gradients.py depth
# (2) deep supervision against restarted JFB's bound, N_sup = 1..40 -> supervision.csv, supervision.png
python results/reasoning/gradients.py supervision
