#!/bin/sh
# Memory against depth on weighted TV 128 x 128; then the slopes and the figure. Run from the repository root.
set -e
PYTHONPATH=. python results/memory/memory.py results/memory/memory.csv
PYTHONPATH=. python results/memory/plot.py results/memory/memory.csv results/memory
