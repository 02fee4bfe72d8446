"""The error-cost front: which estimator setting to use for which accuracy, at what cost.

From sweep tables (gradients at a fixed theta, one row per seed) and training tables
(gradients along a training run, the gap to a tight DEQ every few steps), one *point* per
problem and estimator setting -- every setting of the estimator (its ``estimator_config``:
K, tolerance, solver, adjoint, extra steps, memory, ..., warm or cold, the number of
restarts before the measured call), the dtype and the device: rows that differ in any of
them are never pooled. A point gives the gradient's relative error to a tight DEQ gradient,
median and interquartile range over the seeds or the steps, against its cost per gradient:
T + VJP + JVP (operator applications plus derivative products), seconds, and the
allocator's peak memory (the CPU allocator's as torch.profiler records it, or CUDA's
``max_memory_allocated``; a row without a measured peak has none, never another figure in its
place). A setting is on the *front* when no other setting of the same problem is at most as
costly and at most as wrong, one of the two strictly. For a target error, the cheapest
setting whose median error reaches it answers "which estimator should I use"
(:func:`targets`).

Rows that did not converge, whose reference did not converge, or whose measurement failed
are left out of the front and listed beside it (:func:`excluded`, ``excluded.csv``).

*Fixed-theta limit.* A sweep row measured after m restarts (``restarts`` > 0: restarted JFB,
or a warm-started estimator, called m times at the same theta first) costs only its own call,
while the m calls that made its state are not counted; at a fixed theta such a state
converges to the equilibrium, so the point is the limit of a training run whose theta does
not move. These points are kept apart (``regime = "fixed_theta_limit"``): they have their own
front and their own targets table (``targets_fixed_theta.csv``), and are not in
``targets.csv``, which holds the cold settings and the training runs (whose per-step cost
carries the state along a real run).


The points are read from the tables by :mod:`jfbbench.front.points`; the tables are written
by :func:`write_tables`, the figures by :mod:`jfbbench.plots.front`, both from the tables alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .points import (
    MEMORY_SOURCES,
    SETTING,
    TRAINING_SETTINGS,
    _finish,
    label,
    points_from_sweep,
    points_from_training,
    read_points,
)

__all__ = [
    "COSTS", "MEMORY_SOURCES", "REGIMES", "SETTING", "TARGETS", "TRAINING_SETTINGS", "excluded", "label", "pareto",
    "points_from_sweep", "points_from_training", "read_points", "summarise", "targets", "write_tables",
]  # fmt: skip

#: The target errors of the "cheapest setting that reaches it" table.
TARGETS = (1e-1, 1e-2, 1e-4, 1e-8)

#: The cost axes, in the order of preference: (column, label).
COSTS = (
    ("cost", "T + VJP + JVP per gradient"),
    ("seconds", "seconds per gradient"),
    ("memory", "allocator peak per gradient (bytes; CPU: torch.profiler, CUDA: max_memory_allocated)"),
)

#: The regimes: a cold sweep setting, a sweep setting measured after restarts at a fixed
#: theta (its state's cost not counted), a training run.
REGIMES = ("cold", "fixed_theta_limit", "training")


def summarise(points: pd.DataFrame) -> pd.DataFrame:
    """One row per (panel, setting), from the points not left out: median and quartiles of
    the error, medians of the costs (the memory's over the rows that measured a peak:
    ``memory_n`` of them), the number of measurements, and ``on_front`` for each cost axis,
    the front taken within each panel and regime (the fixed-theta limit apart)."""
    if "label" not in points:  # made by points_from_sweep or points_from_training directly
        points = _finish(points)
    points = points[points["excluded"] == ""]
    keys = ["panel", "source", "regime", *SETTING]
    g = points.groupby(keys, dropna=False)
    out = g["error"].quantile(0.5).rename("error").to_frame()
    out["error_q25"] = g["error"].quantile(0.25)
    out["error_q75"] = g["error"].quantile(0.75)
    for col, _ in COSTS:
        out[col] = g[col].median()
    out["memory_n"] = g["memory"].count()
    out["memory_source"] = g["memory_source"].first()
    out["n"] = g["error"].size()
    out["setting"] = g["label"].first()
    out = out.reset_index()
    for col, _ in COSTS:
        out[f"on_front_{col}"] = False
        for _, idx in out.groupby(["panel", "regime"]).groups.items():
            sub = out.loc[idx]
            out.loc[pareto(sub[col], sub["error"]), f"on_front_{col}"] = True
    return out.sort_values(["panel", "regime", "cost", "error"]).reset_index(drop=True)


def excluded(points: pd.DataFrame) -> pd.DataFrame:
    """The settings left out of the front, one row per (panel, setting, reason), with the
    number of rows left out."""
    left = points[points["excluded"] != ""]
    cols = ["panel", "source", "regime", "label", "excluded"]
    out = left.groupby(cols, dropna=False).size().rename("n").reset_index()
    return out.rename(columns={"label": "setting", "excluded": "reason"})


def pareto(cost: pd.Series, error: pd.Series) -> list:
    """The index labels of the points that no other point dominates (cost and error both at
    most as large, one strictly smaller); points with a missing cost or error are left out."""
    ok = cost.notna() & error.notna()
    c, e = cost[ok], error[ok]
    front = []
    for i in c.index:
        dominated = ((c <= c[i]) & (e <= e[i]) & ((c < c[i]) | (e < e[i]))).any()
        if not dominated:
            front.append(i)
    return front


def targets(summary: pd.DataFrame, levels: Sequence[float] = TARGETS, by: str = "cost") -> pd.DataFrame:
    """For each panel and target error: the cheapest setting (by ``by``; ties broken by the
    other costs) whose median error is at most the target, its error and costs, and the
    runner-up (the next cheapest that reaches it). "none" when no setting reaches it."""
    order = [by] + [c for c, _ in COSTS if c != by]
    rows = []
    for panel, sub in summary.groupby("panel", sort=True):
        for t in levels:
            ok = sub[sub["error"] <= t].sort_values(order, na_position="last")
            row: dict[str, object] = dict(panel=panel, target=t, best="none", runner_up="none")
            if len(ok):
                b = ok.iloc[0]
                row.update(best=b["setting"], best_error=b["error"], **{f"best_{c}": b[c] for c, _ in COSTS})
            if len(ok) > 1:
                r = ok.iloc[1]
                row.update(
                    runner_up=r["setting"],
                    runner_up_error=r["error"],
                    **{f"runner_up_{c}": r[c] for c, _ in COSTS},
                    runner_up_cost_ratio=r[by] / b[by] if b[by] else np.nan,
                )
            rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["panel", "target", "best", "runner_up"])


def write_tables(
    tables: Iterable[str | Path | pd.DataFrame], out: str | Path
) -> tuple[pd.DataFrame, pd.DataFrame, list[Path]]:
    """Read the tables and write under ``out``:

    - ``front.csv``: every setting, with its regime, front membership and memory source;
    - ``targets.csv``: the cheapest setting per target error, by T + VJP + JVP, among the
      cold settings and the training runs: the answer to "which estimator for which accuracy";
    - ``targets_cold.csv``: the same among the settings that start cold (one gradient at a new
      theta, no state);
    - ``targets_fixed_theta.csv``: the same among the fixed-theta limit's settings (measured
      after restarts at the same theta; the calls that made their state are not counted);
    - ``excluded.csv``: the settings left out (not converged, reference not converged, failed).

    Returns the summary, the targets table and the paths written. The figures are
    :func:`jfbbench.plots.write_front`'s."""
    points = read_points(tables)  # the tables read and checked before anything is written
    summary = summarise(points)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fixed = summary["regime"] == "fixed_theta_limit"
    table = targets(summary[~fixed])
    cold = summary[(summary["regime"] == "cold") & ~summary["warm_start"]]
    cold = pd.concat([cold, summary[(summary["regime"] == "training") & ~summary["warm_start"]]])
    cold = cold[~((cold["source"] == "training") & (cold["estimator"] == "restarted_jfb"))]
    names = ["front.csv", "targets.csv", "targets_cold.csv", "targets_fixed_theta.csv", "excluded.csv"]
    written = [out / n for n in names]
    summary.to_csv(written[0], index=False)
    table.to_csv(written[1], index=False)
    targets(cold).to_csv(written[2], index=False)
    targets(summary[fixed]).to_csv(written[3], index=False)
    excluded(points).to_csv(written[4], index=False)
    return summary, table, written
