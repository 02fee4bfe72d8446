"""Reading the tables of training runs back: one frame, each row labelled with its setting."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

#: the estimators whose label says whether they started cold or warm
WARM_STARTABLE = ("deq", "jfb", "phantom", "neumann")


def setting_label(estimator: str, depth: float, warm_start: bool) -> str:
    """``deq warm``, ``jfb K=2 cold``, ``restarted_jfb K=10``: the estimator, its depth where
    it has one, and its start where it can start either way."""
    name = estimator if math.isnan(depth) else f"{estimator} K={int(depth)}"
    if estimator in WARM_STARTABLE:
        name += " warm" if warm_start else " cold"
    return name


def read_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """The rows of the training tables ``paths``, concatenated, with ``depth`` numeric (NaN
    for estimators without one), ``warm_start`` boolean and the setting's ``label``."""
    frames = [pd.read_csv(p) for p in paths]
    if not frames:
        raise ValueError("paths names no training table")
    df = pd.concat(frames, ignore_index=True)
    df["depth"] = pd.to_numeric(df["depth"], errors="coerce")
    df["warm_start"] = df["warm_start"].astype(str).str.lower().eq("true")
    df["label"] = [
        setting_label(e, d, w) for e, d, w in zip(df["estimator"], df["depth"], df["warm_start"], strict=True)
    ]
    return df
