"""Two sweep tables side by side: what moved beyond the measured spread.

For every point the two tables share (the same problem, settings, estimator, depth, restarts,
seed, dtype), the ratios B/A of the gradient's relative error, its cost in T + VJP, its
seconds and its memory, and by how much each moved *beyond its spread*, in percent of A:

- seconds (``time_s``): the spread is the sum of the two interquartile ranges
  (``time_iqr_s``), so moved = max(0, abs(b − a) − (iqr_a + iqr_b)) / a;
- T + VJP + JVP (``operator_evals + vjp_evals + jvp_evals``) and memory (``peak_memory_bytes``, or the bytes
  saved for backward, ``memory_bytes``, where either row lacks the peak) are exact counts: no
  spread, any relative change beyond :data:`EXACT_RTOL` moves, moved = abs(b − a) / a;
- the relative error (``rel_error``): the spread is round-off, floor = :data:`ROUND_OFF_EPS`
  machine epsilons of the row's dtype (absolute: the error is already relative), plus
  :data:`ERROR_RTOL` of the larger error (a change of 0.1 % is not a change of accuracy), so
  moved = max(0, abs(b − a) − floor − 0.001 max(a, b)) / max(a, floor). Errors at round-off level
  (a DEQ solved to 1e-12) can still move between machines.

A point is ``flagged`` when any of them moved at all, or when its ``status`` or ``converged``
changed (moved: infinite). :func:`fails` says whether any point moved by more than a given
percentage, the check ``jfbbench compare --fail-above`` makes for CI, as ``asv compare`` does
for timings. The environments the tables were measured in (:mod:`jfbbench.environment`) come
first in the report: a ratio of seconds between two machines is a ratio of machines too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import environment
from .sweep import KEY_COLUMNS
from .tables import read_table

#: Relative change of an exact count (T + VJP, bytes) that counts as a move.
EXACT_RTOL = 1e-9
#: Round-off level of a relative error, in machine epsilons of the row's dtype.
ROUND_OFF_EPS = 1e3
#: Relative change of an error within which its accuracy has not changed (0.1 %).
ERROR_RTOL = 1e-3
#: Settings of the measurement rather than of the point: joined on only where a table varies them.
LOOSE_KEYS = ("device", "timing", "min_run_time")
#: The quantities compared, in the order they are printed: (name, label).
QUANTITIES = (("error", "error"), ("cost", "T+VJP"), ("seconds", "seconds"), ("memory", "memory"))


@dataclass
class Comparison:
    """The result of :func:`compare`: one row per common point (``points``: its key, the
    estimator, ``ratio_<q>`` and ``moved_<q>`` for each quantity q of :data:`QUANTITIES`,
    ``moved`` the largest, ``flagged``, ``reason``), the points found in one table only, and
    the environments' differences."""

    points: pd.DataFrame
    only_a: int
    only_b: int
    keys: list[str]
    environments: tuple[list[dict[str, Any]], list[dict[str, Any]]] = field(default_factory=lambda: ([], []))

    def env_differences(self) -> list[tuple[str, list[Any], list[Any]]]:
        return environment.differences(*self.environments)

    def flagged_per_estimator(self) -> dict[str, int]:
        """``{estimator: number of flagged points}``, every estimator of the common points."""
        counts = self.points.groupby("estimator", sort=True)["flagged"].sum()
        return {str(k): int(v) for k, v in counts.items()}


def _key_text(value: Any) -> str:
    """A key value as text that reads the same from CSV and Parquet (1 and 1.0 alike)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _number(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df.columns:
        return pd.Series(np.nan, index=df.index)
    return pd.to_numeric(df[column], errors="coerce")


def _keys(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    keys = [k for k in KEY_COLUMNS if k in a.columns and k in b.columns]
    missing = [k for k in ("problem", "estimator") if k not in keys]
    if missing:
        raise ValueError(f"a sweep table needs the columns {', '.join(missing)}; one of the two tables lacks them")
    return [k for k in keys if k not in LOOSE_KEYS or a[k].nunique(dropna=False) > 1 or b[k].nunique(dropna=False) > 1]


def _prepare(df: pd.DataFrame, keys: list[str], name: str) -> pd.DataFrame:
    out = pd.DataFrame({f"key:{k}": df[k].map(_key_text) for k in keys}, index=df.index)
    out["estimator"] = df["estimator"].astype(str)
    out["dtype"] = df["dtype"].astype(str) if "dtype" in df.columns else "float64"
    out["error"] = _number(df, "rel_error")
    out["cost"] = (
        _number(df, "operator_evals") + _number(df, "vjp_evals").fillna(0) + _number(df, "jvp_evals").fillna(0)
    )
    out["seconds"] = _number(df, "time_s")
    out["iqr"] = _number(df, "time_iqr_s").fillna(0.0)
    out["peak"] = _number(df, "peak_memory_bytes")
    out["saved"] = _number(df, "memory_bytes")
    out["status"] = df["status"].fillna("ok").astype(str) if "status" in df.columns else "ok"
    out["converged"] = df["converged"].map(_key_text) if "converged" in df.columns else ""
    dup = out.duplicated([f"key:{k}" for k in keys], keep=False)
    if dup.any():
        raise ValueError(
            f"table {name} holds {int(dup.sum())} rows with the same point (key columns {', '.join(keys)}); "
            "compare tables with one row per point"
        )
    return out


def _round_off(dtype: str) -> float:
    try:
        return ROUND_OFF_EPS * torch.finfo(getattr(torch, dtype.replace("torch.", ""))).eps
    except (AttributeError, TypeError):
        return ROUND_OFF_EPS * torch.finfo(torch.float64).eps


def _moved(a: pd.Series, b: pd.Series, spread: pd.Series, scale: pd.Series) -> pd.Series:
    """Percent of ``scale`` by which abs(b - a) exceeds ``spread``: 0 inside it, infinite where
    the scale is 0, NaN where either value is missing (nothing to compare)."""
    excess = ((b - a).abs() - spread).clip(lower=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = 100.0 * excess / scale.abs()
    pct = pct.mask((excess > 0) & (scale == 0), np.inf)
    return pct.where(a.notna() & b.notna())


def compare(a: pd.DataFrame | str | Path, b: pd.DataFrame | str | Path) -> Comparison:
    """Compare sweep table ``b`` with sweep table ``a`` (data frames, or paths whose
    ``<table>.env.json`` is read too) on their common points."""
    envs: list[list[dict[str, Any]]] = []
    frames = []
    for t in (a, b):
        envs.append([] if isinstance(t, pd.DataFrame) else environment.read(t))
        frames.append(t if isinstance(t, pd.DataFrame) else read_table(t))
    fa, fb = frames
    keys = _keys(fa, fb)
    pa, pb = _prepare(fa, keys, "A"), _prepare(fb, keys, "B")
    on = [f"key:{k}" for k in keys]
    merged = pa.merge(
        pb.drop(columns=["estimator", "dtype"]), on=on, suffixes=("_a", "_b"), how="outer", indicator=True, sort=False
    )
    only_a = int((merged["_merge"] == "left_only").sum())
    only_b = int((merged["_merge"] == "right_only").sum())
    m = merged[merged["_merge"] == "both"].drop(columns="_merge").reset_index(drop=True)
    out = pd.DataFrame({k: m[f"key:{k}"] for k in keys})
    out["estimator"] = m["estimator"]
    both_peak = m["peak_a"].notna() & m["peak_b"].notna()
    for side in ("a", "b"):
        m[f"memory_{side}"] = m[f"peak_{side}"].where(both_peak, m[f"saved_{side}"])
    floor = m["dtype"].map(_round_off)
    spreads = {
        "error": (floor + ERROR_RTOL * np.maximum(m["error_a"], m["error_b"]), np.maximum(m["error_a"], floor)),
        "cost": (EXACT_RTOL * m["cost_a"].abs(), m["cost_a"]),
        "seconds": (m["iqr_a"] + m["iqr_b"], m["seconds_a"]),
        "memory": (EXACT_RTOL * m["memory_a"].abs(), m["memory_a"]),
    }
    for q, _ in QUANTITIES:
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"a_{q}"], out[f"b_{q}"] = m[f"{q}_a"], m[f"{q}_b"]
            out[f"ratio_{q}"] = m[f"{q}_b"] / m[f"{q}_a"]
        spread, scale = spreads[q]
        out[f"moved_{q}"] = _moved(m[f"{q}_a"], m[f"{q}_b"], spread, scale)
    changed = (m["status_a"] != m["status_b"]) | (m["converged_a"] != m["converged_b"])
    moved = out[[f"moved_{q}" for q, _ in QUANTITIES]]
    out["moved"] = moved.max(axis=1, skipna=True).mask(changed, np.inf)
    out["flagged"] = out["moved"].fillna(0.0) > 0
    out["reason"] = [
        _reason(row, m.loc[i]) if flag else "" for (i, row), flag in zip(out.iterrows(), out["flagged"], strict=True)
    ]
    out = out.iloc[sorted(range(len(out)), key=lambda i: tuple(_sort_key(out.at[i, k]) for k in keys))]
    return Comparison(out.reset_index(drop=True), only_a, only_b, keys, (envs[0], envs[1]))


def _sort_key(value: str) -> tuple[int, float, str]:
    """Numbers in numeric order (depth 2 before 16), then text."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def _reason(row: pd.Series, m: pd.Series) -> str:
    parts = []
    if m["status_a"] != m["status_b"]:
        parts.append(f"status {m['status_a']} -> {m['status_b']}")
    if m["converged_a"] != m["converged_b"]:
        parts.append(f"converged {m['converged_a'] or '-'} -> {m['converged_b'] or '-'}")
    parts += [f"{label} +{row[f'moved_{q}']:.3g}%" for q, label in QUANTITIES if row[f"moved_{q}"] > 0]
    return "; ".join(parts)


def fails(comparison: Comparison, percent: float) -> bool:
    """Whether any common point moved by more than ``percent`` beyond its spread (a status or
    convergence change always counts)."""
    if not isinstance(percent, (int, float)) or isinstance(percent, bool) or not percent >= 0:
        raise ValueError(f"percent must be a number >= 0, got {percent!r}")
    return bool((comparison.points["moved"] > percent).any())


def _fmt_ratio(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x:.3g}"


def _point_label(row: pd.Series, shown: list[str]) -> str:
    return " ".join([row["problem"], row["estimator"], *(f"{k}={row[k]}" for k in shown if row[k] not in ("", "{}"))])


def report(comparison: Comparison, names: tuple[str, str] = ("A", "B"), only_flagged: bool = False) -> list[str]:
    """The lines ``jfbbench compare`` prints: the two tables, what differs between their
    environments, then one line per common point (ratios B/A, and ``flagged`` with what moved
    and by how much beyond its spread), then one line per estimator."""
    envs = comparison.environments
    lines = [f"A: {names[0]}", f"B: {names[1]}"]
    missing = [f"{side}: no environment recorded" for side, e in zip("AB", envs, strict=True) if not e]
    diffs = comparison.env_differences() if not missing else []
    if missing:
        lines += ["environments: " + "; ".join(missing)]
    elif diffs:
        lines.append("environments differ (A | B):")
        lines += [f"  {key}: {' / '.join(map(str, va))} | {' / '.join(map(str, vb))}" for key, va, vb in diffs]
    else:
        lines.append("environments: the same")
    lines.append(
        f"{len(comparison.points)} common points; {comparison.only_a} only in A, {comparison.only_b} only in B"
    )
    lines.append("per point, ratios B/A of " + ", ".join(label for _, label in QUANTITIES))
    points = comparison.points
    shown = [k for k in comparison.keys if k not in ("problem", "estimator") and points[k].nunique() > 1]
    for _, row in points.iterrows():
        if only_flagged and not row["flagged"]:
            continue
        ratios = "  ".join(f"{label} {_fmt_ratio(row[f'ratio_{q}'])}" for q, label in QUANTITIES)
        flag = f"  flagged ({row['reason']})" if row["flagged"] else ""
        lines.append(f"{_point_label(row, shown)}: {ratios}{flag}")
    lines += [f"{est}: {n} flagged" for est, n in comparison.flagged_per_estimator().items()]
    return lines
