"""Side-by-side run: DeepInverse's own DEQ gradients (``deepinv_deq``, ``deepinv_jfb``) against
our ``deq`` and ``jfb`` (K = 1) on DeepInverse optimisers (PGD, HQS, GD; Tikhonov-regularised
deblurring with an exact rho, ``jfbbench.problems.deepinv_optim:tikhonov_deblurring``) at
equal tolerances, in one run.

    python results/peers/make_deepinv.py            # the committed table (a few minutes on 1 CPU)
    python results/peers/make_deepinv.py --quick    # a smoke run into a temporary folder

Writes ``deepinv.csv`` next to this file: the sweep table (error against the tight float64
DEQ reference, time, saved bytes, operator and VJP counts, convergence) with two more
columns, ``counterpart`` (deq for deepinv_deq, jfb for deepinv_jfb and the other way round)
and ``agreement`` (||g - g_counterpart|| / ||g_counterpart|| at the same tolerance), and
``time_ratio`` (time over the counterpart's). Prints the summary as Markdown. Delete
``deepinv.csv`` (and its journal) to re-measure.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

import pandas as pd
import torch

from jfbbench import estimators, problems
from jfbbench.sweep import Grid, run

HERE = Path(__file__).resolve().parent
PROBLEM = "jfbbench.problems.deepinv_optim:tikhonov_deblurring"
ALGORITHMS = ["PGD", "HQS", "GD"]
RHOS = [0.5, 0.9, 0.99]
TOLS = [1e-6, 1e-10]
COUNTERPART = {"deepinv_deq": "deq", "deq": "deepinv_deq", "deepinv_jfb": "jfb", "jfb": "deepinv_jfb"}


def agreement(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``counterpart``, ``agreement`` (relative gap of the gradients, recomputed at the
    row's problem and tolerance) and ``time_ratio`` to each row."""
    table = table.copy()
    table["counterpart"] = table["estimator"].map(COUNTERPART)
    gaps, ratios = [], []
    for _, r in table.iterrows():
        config = json.loads(r["config"])
        p = problems.make(PROBLEM, lipschitz=float(r["lipschitz"]), seed=int(r["seed"]), **config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g = estimators.make(r["estimator"], tol=float(r["tol"])).gradient(p).grad
            h = estimators.make(r["counterpart"], tol=float(r["tol"])).gradient(p).grad
        gaps.append(float(torch.linalg.vector_norm(g - h) / torch.linalg.vector_norm(h)))
        other = table[
            (table["estimator"] == r["counterpart"])
            & (table["config"] == r["config"])
            & (table["lipschitz"] == r["lipschitz"])
            & (table["tol"] == r["tol"])
        ]
        ratios.append(float(r["time_s"]) / float(other["time_s"].iloc[0]) if len(other) else float("nan"))
    table["agreement"] = gaps
    table["time_ratio"] = ratios
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="PGD, rho = 0.5, into a temporary folder")
    args = parser.parse_args()
    missing = [name for name in ("deepinv_deq", "deepinv_jfb") if name not in estimators.names()]
    if missing:
        raise SystemExit(f"{missing} are not registered: the installed DeepInverse has no DEQConfig(jacobian_free)")
    torch.set_num_threads(1)  # timings of one core, steadier on a shared machine
    out = Path(tempfile.mkdtemp()) if args.quick else HERE
    algorithms, rhos = (ALGORITHMS[:1], RHOS[:1]) if args.quick else (ALGORITHMS, RHOS)
    grid = Grid(
        [PROBLEM],
        rhos,
        ["deq", "deepinv_deq", "jfb", "deepinv_jfb"],
        [1],
        configs=dict(algorithm=algorithms, size=[16]),
        estimator_axes=dict(tol=TOLS),
    )
    table = agreement(run(grid, out / "deepinv_sweep.csv", progress=True))
    table.to_csv(out / "deepinv.csv", index=False, float_format="%.6g")
    table["algorithm"] = table["config"].map(lambda c: json.loads(c)["algorithm"])
    cols = ["algorithm", "lipschitz", "tol", "estimator", "rel_error", "agreement", "time_s", "time_ratio"]
    cols += ["operator_evals", "vjp_evals", "converged"]
    print(table[cols].to_markdown(index=False, floatfmt=".3g"))
    print(f"tables in {out}")


if __name__ == "__main__":
    main()
