#!/bin/sh
# Reversible DEQ's round-off against beta, N and dtype; then its figure. Run from the repository root.
set -e
PYTHONPATH=. python results/revdeq/stability.py results/revdeq/stability.csv
PYTHONPATH=. python results/revdeq/plot.py results/revdeq/stability.csv results/revdeq/stability.png
