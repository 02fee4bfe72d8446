"""The points of the error-cost front, read from sweep and training tables: one row per
measurement in the front's columns (its panel, regime, setting, error and costs, and why it is
left out where it is), each labelled with the settings that tell it apart
(:func:`read_points`, :func:`label`)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..tables import read_table

#: What the memory axis holds, by device.
MEMORY_SOURCES = {
    "cpu": "CPU allocator peak (torch.profiler)",
    "cuda": "CUDA max_memory_allocated",
}

#: What makes a point: the estimator, its settings (``settings``: the rest of its
#: ``estimator_config``, as sorted JSON), the dtype and the device.
SETTING = ["estimator", "depth", "tol", "warm_start", "restarts", "settings", "dtype", "device"]

#: Settings with a column of their own, not repeated in ``settings``.
_OWN_COLUMNS = {"depth", "tol", "warm_start"}

#: Columns of a training table that name a setting of the run beyond those.
TRAINING_SETTINGS = (
    "optimizer", "lr", "batch_size", "solver", "adjoint", "extra_steps", "max_iter", "memory", "deep_supervision",
    "reset_state", "estimator_kwargs",
)  # fmt: skip


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


def _settings_json(config: object) -> str:
    """An estimator's settings beyond depth, tol and warm start, as sorted JSON."""
    if isinstance(config, dict):
        d = config
    else:
        try:
            d = json.loads(str(config)) if _present(config) else {}
        except json.JSONDecodeError:
            return json.dumps({"estimator_config": str(config)})
    return json.dumps({k: v for k, v in d.items() if k not in _OWN_COLUMNS}, sort_keys=True)


def _present(v: object) -> bool:
    return not (v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip()))


def _flag(v: object) -> bool | None:
    """A true/false column read back from a CSV: True, False or None (empty)."""
    if not _present(v):
        return None
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    return bool(v)


def _memory_source(device: pd.Series) -> pd.Series:
    kind = device.fillna("cpu").astype(str).str.split(":").str[0]
    return kind.map(lambda k: MEMORY_SOURCES.get(k, f"{k} allocator peak"))


def _reason(status: object, converged: object, reference_converged: object, error: float) -> str:
    """Why a row is left out of the front ("" when it is not)."""
    if _present(status) and str(status) not in ("ok", "reference_not_converged"):
        return str(status).splitlines()[0]
    if _flag(reference_converged) is False or status == "reference_not_converged":
        return "reference not converged"
    if _flag(converged) is False:
        return "not converged"
    if not (isinstance(error, (int, float)) and math.isfinite(error)):
        return "no error measured"
    return ""


def points_from_sweep(df: pd.DataFrame) -> pd.DataFrame:
    """One row per measurement of a sweep table, in the front's columns."""
    restarts = pd.to_numeric(_column(df, "restarts", 0), errors="coerce").fillna(0)
    device = _column(df, "device", "cpu")
    error = pd.to_numeric(df["rel_error"], errors="coerce")
    reasons = [
        _reason(*r)
        for r in zip(
            _column(df, "status", ""), _column(df, "converged"), _column(df, "reference_converged"), error, strict=True
        )
    ]
    return pd.DataFrame(
        dict(
            panel=_panel(df),
            source="sweep",
            regime=np.where(restarts > 0, "fixed_theta_limit", "cold"),
            estimator=df["estimator"],
            depth=_column(df, "depth"),
            tol=_column(df, "tol"),
            warm_start=_column(df, "warm_start", False),
            restarts=restarts,
            settings=_column(df, "estimator_config", "{}").map(_settings_json),
            dtype=_column(df, "dtype", "float64").astype(str),
            device=device.astype(str),
            error=error,
            cost=_column(df, "operator_evals") + _column(df, "vjp_evals") + _column(df, "jvp_evals").fillna(0),
            seconds=_column(df, "time_s"),
            memory=_column(df, "peak_memory_bytes"),
            memory_source=_memory_source(device),
            excluded=reasons,
        )
    )


def points_from_training(df: pd.DataFrame) -> pd.DataFrame:
    """One row per gap measurement of a training table (the steps where ``grad_gap`` was
    measured), in the front's columns: the cost is that step's gradient's."""
    df = df[df["step"] > 0]
    df = df[df["grad_gap"].notna()]
    tol = _column(df, "tol").where(df["estimator"].map(_solves), np.nan)  # the evaluation's tol otherwise
    panel = df["problem"].astype(str) + " (training" + (", " + df["preset"].astype(str) if "preset" in df else "") + ")"
    present = [c for c in TRAINING_SETTINGS if c in df.columns]
    settings: object = "{}"
    if present and len(df):
        settings = df[present].apply(lambda r: json.dumps(r.to_dict(), sort_keys=True, default=_scalar), axis=1)
    device = _column(df, "device", "cpu")  # training runs on the CPU unless the table says otherwise
    reasons = [
        _reason(*r)
        for r in zip(
            _column(df, "status", ""),
            _column(df, "forward_converged"),
            _column(df, "reference_converged"),
            df["grad_gap"],
            strict=True,
        )
    ]
    return pd.DataFrame(
        dict(
            panel=panel,
            source="training",
            regime="training",
            estimator=df["estimator"],
            depth=_column(df, "depth"),
            tol=tol,
            warm_start=_column(df, "warm_start", False),
            restarts=np.nan,
            settings=settings,
            dtype=_column(df, "dtype", "float64").astype(str),
            device=device.astype(str),
            error=df["grad_gap"],
            cost=df["step_cost"],
            seconds=df["step_time"],
            memory=_column(df, "peak_memory_bytes"),
            memory_source=_memory_source(device),
            excluded=reasons,
        ),
        index=df.index,
    )


def read_points(tables: Iterable[str | Path | pd.DataFrame]) -> pd.DataFrame:
    """The front's rows from sweep and training tables (paths or frames), told apart by their
    columns (a sweep has ``rel_error``; a training table ``grad_gap`` and ``step``). Rows to
    be left out of the front keep their reason in ``excluded`` (empty for the others)."""
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
    return _finish(pd.concat(frames, ignore_index=True))


def _finish(points: pd.DataFrame) -> pd.DataFrame:
    """Points read back from tables in their types (flags, numbers), each with its label."""
    out = points.copy()
    out["warm_start"] = out["warm_start"].map(_truthy)
    for col in ("depth", "tol", "restarts", "error", "cost", "seconds", "memory"):
        out[col] = pd.to_numeric(out[col], errors="coerce")
    out["label"] = _labels(out)
    return out


def _solves(name: str) -> bool:
    """Whether the estimator ``name`` solves to a tolerance (True for unknown names)."""
    from .. import estimators

    try:
        return estimators.capabilities(name).solves
    except ValueError:
        return True


def _truthy(v: object) -> bool:
    return bool(_flag(v))


def _scalar(v: object) -> object:
    """A numpy scalar as a Python one, for JSON."""
    return v.item() if hasattr(v, "item") else str(v)


def _fmt(v: object) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def label(row: pd.Series, shown: Sequence[str] = ()) -> str:
    """A setting as text: ``deq tol=1e-04 warm m=8``, ``restarted_jfb K=2 m=8`` (m: the calls
    at the same theta before the measured one, in sweeps; ``warm m=0`` is a warm setting's
    first call, from the cold start), with the settings named in ``shown`` (keys of
    ``settings``, ``dtype``, ``device``) where the row has them."""
    parts = [str(row["estimator"])]
    if pd.notna(row.get("depth")):
        parts.append(f"K={int(row['depth'])}")
    if pd.notna(row.get("tol")):
        parts.append(f"tol={row['tol']:.0e}")
    if row.get("warm_start"):
        parts.append("warm")
    if pd.notna(row.get("restarts")) and (row.get("restarts", 0) > 0 or row.get("warm_start")):
        parts.append(f"m={int(row['restarts'])}")  # m = 0: the first call of a warm setting, from a cold start
    settings = json.loads(row.get("settings") or "{}")
    for key in shown:
        if key in ("dtype", "device"):
            parts.append(str(row[key]))
        elif key in settings:
            parts.append(f"{key}={_fmt(settings[key])}")
    return " ".join(parts)


def _labels(points: pd.DataFrame) -> pd.Series:
    """Each point's label, naming the settings that differ between points of the same
    estimator in the same panel (a setting present in some rows and absent in others differs
    too), and the dtype and device where a panel holds several."""
    parsed = points["settings"].map(json.loads)
    shown: dict[tuple[str, str], list[str]] = {}
    for panel, idx in points.groupby("panel").groups.items():
        wide = [c for c in ("dtype", "device") if points.loc[idx, c].nunique(dropna=False) > 1]
        for name, sub in points.loc[idx].groupby("estimator").groups.items():
            dicts = parsed.loc[sub]
            keys = sorted(set().union(*dicts))
            differ = [k for k in keys if len({_fmt(d[k]) if k in d else None for d in dicts}) > 1]
            shown[(panel, name)] = differ + wide
    return points.apply(lambda r: label(r, shown[(r["panel"], r["estimator"])]), axis=1)
