"""The error-cost front: which estimator setting to use for which accuracy, at what cost.

From sweep tables (gradients at a fixed theta, one row per seed) and training tables
(gradients along a training run, the gap to a tight DEQ every few steps), one *point* per
problem and estimator setting (estimator, K, tolerance, warm or cold; for sweeps also the
number of restarts before the measured call): the gradient's relative error to a tight DEQ
gradient, median and interquartile range over the seeds or the steps, against its cost per
gradient: T + VJP (operator applications plus vector-Jacobian products), seconds, peak
memory. A setting is on the *front* when no other setting of the same problem is at most as
costly and at most as wrong, one of the two strictly. For a target error, the cheapest
setting whose median error reaches it answers "which estimator should I use"
(:func:`targets`).

The tables are written by :func:`write_tables`, the figures by :mod:`jfbbench.plots.front`,
both from the tables alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .tables import read_table

#: The target errors of the "cheapest setting that reaches it" table.
TARGETS = (1e-1, 1e-2, 1e-4, 1e-8)

#: The cost axes, in the order of preference: (column, label).
COSTS = (
    ("cost", "T + VJP per gradient"),
    ("seconds", "seconds per gradient"),
    ("memory", "peak memory per gradient (bytes)"),
)

SETTING = ["estimator", "depth", "tol", "warm_start", "restarts"]


def _column(df: pd.DataFrame, name: str, default: object = np.nan) -> pd.Series:
    return df[name] if name in df.columns else pd.Series(default, index=df.index)


def _panel(df: pd.DataFrame) -> pd.Series:
    """The problem a point belongs to: the problem's name, with rho (and the settings) when a
    sweep varies them; training runs by problem (and preset)."""
    name = df["problem"].astype(str)
    if "lipschitz" in df.columns:
        rho = df["lipschitz"]
        name = name + np.where(rho.notna(), " rho=" + rho.astype(str), "")
    if "config" in df.columns:
        cfg = df["config"].fillna("{}").astype(str)
        name = name + np.where(cfg.isin(["{}", "", "nan"]), "", " " + cfg)
    return name


def _estimator(df: pd.DataFrame) -> pd.Series:
    """The estimator a point measures: its name, with its settings when the row has any
    (``shine (memory=40, refine=4)``), so that variants are separate settings of the front
    (the tolerance and warm start, which the label shows anyway, left out)."""
    name = df["estimator"].astype(str)
    if "estimator_config" not in df.columns:
        return name

    def settings(cfg: object) -> str:
        if not isinstance(cfg, str) or cfg in ("", "{}", "nan"):
            return ""
        shown = {k: v for k, v in json.loads(cfg).items() if k not in ("tol", "warm_start")}
        return " (" + ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) + ")" if shown else ""

    return name + df["estimator_config"].map(settings)


def points_from_sweep(df: pd.DataFrame) -> pd.DataFrame:
    """One row per measurement of a sweep table, in the front's columns."""
    memory = _column(df, "peak_memory_bytes")
    memory = memory.where(memory.notna(), _column(df, "memory_bytes"))
    return pd.DataFrame(
        dict(
            panel=_panel(df),
            source="sweep",
            estimator=_estimator(df),
            depth=_column(df, "depth"),
            tol=_column(df, "tol"),
            warm_start=_column(df, "warm_start", False),
            restarts=_column(df, "restarts", 0),
            error=df["rel_error"],
            cost=_column(df, "operator_evals") + _column(df, "vjp_evals"),
            seconds=_column(df, "time_s"),
            memory=memory,
        )
    )


def points_from_training(df: pd.DataFrame) -> pd.DataFrame:
    """One row per gap measurement of a training table (the steps where ``grad_gap`` was
    measured), in the front's columns: the cost is that step's gradient's."""
    df = df[df["step"] > 0]
    df = df[df["grad_gap"].notna()]
    tol = _column(df, "tol").where(df["estimator"].map(_solves), np.nan)  # the evaluation's tol otherwise
    panel = df["problem"].astype(str) + " (training" + (", " + df["preset"].astype(str) if "preset" in df else "") + ")"
    return pd.DataFrame(
        dict(
            panel=panel,
            source="training",
            estimator=df["estimator"],
            depth=_column(df, "depth"),
            tol=tol,
            warm_start=_column(df, "warm_start", False),
            restarts=np.nan,
            error=df["grad_gap"],
            cost=df["step_cost"],
            seconds=df["step_time"],
            memory=_column(df, "peak_memory_bytes"),
        )
    )


def read_points(tables: Iterable[str | Path | pd.DataFrame]) -> pd.DataFrame:
    """The front's rows from sweep and training tables (paths or frames), told apart by their
    columns (a sweep has ``rel_error``; a training table ``grad_gap`` and ``step``)."""
    frames = []
    for t in tables:
        df = t if isinstance(t, pd.DataFrame) else read_table(t)
        if {"grad_gap", "step", "step_cost"} <= set(df.columns):
            frames.append(points_from_training(df))
        elif {"rel_error", "estimator", "problem"} <= set(df.columns):
            frames.append(points_from_sweep(df))
        else:
            name = "a table" if isinstance(t, pd.DataFrame) else repr(str(t))
            raise ValueError(
                f"{name} is neither a sweep table (rel_error) nor a training table (grad_gap, step, step_cost)"
            )
    if not frames:
        raise ValueError("no tables given")
    out = pd.concat(frames, ignore_index=True)
    out["warm_start"] = out["warm_start"].map(_truthy)
    for col in ("depth", "tol", "restarts"):
        out[col] = pd.to_numeric(out[col], errors="coerce")
    return out


def _solves(name: str) -> bool:
    """Whether the estimator ``name`` solves to a tolerance (True for unknown names)."""
    from . import estimators

    try:
        return estimators.capabilities(name).solves
    except ValueError:
        return True


def _truthy(v: object) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return False
    return bool(v)


def label(row: pd.Series) -> str:
    """A setting as text: ``deq tol=1e-04 warm``, ``restarted_jfb K=2 m=8``."""
    parts = [str(row["estimator"])]
    if pd.notna(row.get("depth")):
        parts.append(f"K={int(row['depth'])}")
    if pd.notna(row.get("tol")):
        parts.append(f"tol={row['tol']:.0e}")
    if row.get("warm_start"):
        parts.append("warm")
    if pd.notna(row.get("restarts")) and row.get("restarts", 0) > 0:
        parts.append(f"m={int(row['restarts'])}")
    return " ".join(parts)


def summarise(points: pd.DataFrame) -> pd.DataFrame:
    """One row per (panel, setting): median and quartiles of the error, medians of the costs,
    the number of measurements, and ``on_front`` for each cost axis."""
    keys = ["panel", "source", *SETTING]
    g = points.groupby(keys, dropna=False)
    out = g["error"].quantile(0.5).rename("error").to_frame()
    out["error_q25"] = g["error"].quantile(0.25)
    out["error_q75"] = g["error"].quantile(0.75)
    for col, _ in COSTS:
        out[col] = g[col].median()
    out["n"] = g["error"].size()
    out = out.reset_index()
    out["setting"] = out.apply(label, axis=1)
    for col, _ in COSTS:
        out[f"on_front_{col}"] = False
        for _, idx in out.groupby("panel").groups.items():
            sub = out.loc[idx]
            out.loc[pareto(sub[col], sub["error"]), f"on_front_{col}"] = True
    return out.sort_values(["panel", "cost", "error"]).reset_index(drop=True)


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
    return pd.DataFrame(rows)


def write_tables(
    tables: Iterable[str | Path | pd.DataFrame], out: str | Path
) -> tuple[pd.DataFrame, pd.DataFrame, list[Path]]:
    """Read the tables and write ``front.csv`` (every setting, with its front membership),
    ``targets.csv`` (cheapest setting per target error, by T + VJP) and ``targets_cold.csv``
    (the same among the settings that start cold: one gradient at a new theta, no state)
    under ``out``. Returns the summary, the targets table and the paths written. The figures
    are :func:`jfbbench.plots.write_front`'s."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(read_points(tables))
    table = targets(summary)
    cold = summary[~summary["warm_start"] & ~(summary["restarts"].fillna(0) > 0)]
    cold = cold[~((cold["source"] == "training") & (cold["estimator"] == "restarted_jfb"))]
    written = [out / "front.csv", out / "targets.csv", out / "targets_cold.csv"]
    summary.to_csv(written[0], index=False)
    table.to_csv(written[1], index=False)
    targets(cold).to_csv(written[2], index=False)
    return summary, table, written
