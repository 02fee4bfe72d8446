"""Reading the tables of training runs back: one frame, each row labelled with its setting."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .. import estimators
from .config import OWN_FIELDS

#: the estimators whose label says whether they started cold or warm, for a table whose
#: estimator is not registered here (a registered one says so in its capabilities)
WARM_STARTABLE = ("deq", "jfb", "phantom", "neumann", "shine")


def _warm_startable(estimator: str) -> bool:
    try:
        return estimators.capabilities(estimator).supports_warm_start
    except ValueError:
        return estimator in WARM_STARTABLE


def _settings(estimator: str) -> frozenset[str]:
    """The estimator's own settings that a training row may carry as columns (those of
    ``estimator_kwargs``: not depth, tol, solver and the other fields of TrainConfig)."""
    try:
        declared = estimators.capabilities(estimator).settings or frozenset()
    except ValueError:
        return frozenset()
    return frozenset(declared) - set(OWN_FIELDS)


def setting_label(estimator: str, depth: float, warm_start: bool, settings: Mapping[str, Any] | None = None) -> str:
    """``deq warm``, ``jfb K=2 cold``, ``restarted_jfb K=10``, ``shine refine=8 cold``: the
    estimator, its depth where it has one, its other settings (``settings``, as in the run's
    ``estimator_kwargs``) in name order, and its start where it can start either way."""
    name = estimator if math.isnan(depth) else f"{estimator} K={int(depth)}"
    for key in sorted(settings or {}):
        name += f" {key}={settings[key]:g}" if isinstance(settings[key], float) else f" {key}={settings[key]}"
    if _warm_startable(estimator):
        name += " warm" if warm_start else " cold"
    return name


def read_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """The rows of the training tables ``paths``, concatenated, with ``depth`` numeric (NaN
    for estimators without one), ``warm_start`` boolean and the setting's ``label`` (its
    estimator settings are the columns named after the settings the estimator declares)."""
    frames = [pd.read_csv(p) for p in paths]
    if not frames:
        raise ValueError("paths names no training table")
    df = pd.concat(frames, ignore_index=True)
    df["depth"] = pd.to_numeric(df["depth"], errors="coerce")
    df["warm_start"] = df["warm_start"].astype(str).str.lower().eq("true")
    own = {e: sorted(_settings(e) & set(df.columns)) for e in df["estimator"].unique()}
    labels = []
    for row in df.itertuples(index=False):
        r = row._asdict()
        kw = {k: r[k] for k in own[r["estimator"]] if not (isinstance(r[k], float) and math.isnan(r[k]))}
        labels.append(setting_label(r["estimator"], r["depth"], r["warm_start"], kw))
    df["label"] = labels
    return df
