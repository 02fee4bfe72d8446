"""The sweep figures: error, runtime, memory and operator work against the depth K, from a
sweep table alone, with seaborn; never averaging over a setting that varies."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from ..tables import require_columns
from ._style import ERROR_FLOOR, estimator_palette, save

SWEEP_COLUMNS = ["problem", "lipschitz", "estimator", "depth", "rel_error", "time_s", "memory_bytes"]


def with_depthless_rows_spread(df: pd.DataFrame, by: str = "problem") -> pd.DataFrame:
    """Rows without a depth (``deq``) are repeated at every depth of their panel (``by``), so
    they draw as flat lines beside the truncated estimators."""
    has = df[df["depth"].notna()]
    none = df[df["depth"].isna()]
    if none.empty or has.empty:
        return df
    parts = [has]
    for panel, rows in none.groupby(by, sort=False):
        depths = np.unique(has.loc[has[by] == panel, "depth"])
        if len(depths) == 0:
            depths = np.unique(has["depth"])
        parts.append(rows.drop(columns="depth").merge(pd.DataFrame({"depth": depths}), how="cross"))
    return pd.concat(parts, ignore_index=True)


#: Columns of a sweep table that change a measurement besides the problem, rho, the estimator,
#: its depth and restarts and the seed: each one that varies is drawn apart (a style).
RUN_SETTINGS = ("dtype", "device", "timing", "min_run_time")
#: What the column facets can show.
FACETS = ("lipschitz", "rho_loc", "spectral_radius")
_FACET_LABEL = {"lipschitz": "ρ", "rho_loc": "ρ_loc", "spectral_radius": "r"}


def _settings(column: pd.Series) -> pd.Series:
    """A JSON column of settings (``config``, ``estimator_config``) as dicts."""
    return column.map(lambda v: json.loads(v) if isinstance(v, str) and v.strip() else {})


def _varying(dicts: pd.Series) -> list[str]:
    keys = sorted({k for d in dicts for k in d})
    return [k for k in keys if dicts.map(lambda d, k=k: json.dumps(d.get(k), default=str)).nunique() > 1]


def _label(d: dict, keys: Sequence[str]) -> str:
    return ", ".join(f"{k}={d.get(k)}" for k in keys)


def sweep_frame(df: pd.DataFrame, facet: str = "lipschitz") -> pd.DataFrame:
    """The table with the columns the sweep figures are drawn by, so that no setting that
    varies is ever averaged over:

    - ``panel`` (facet row): the problem and every problem setting that varies among its rows;
    - ``column`` (facet column): the declared ρ (``facet="lipschitz"``), or the measured
      ``rho_loc`` or ``spectral_radius`` (rounded to 3 digits);
    - ``estimator`` (hue): the estimator, with its restart count where that varies;
    - ``setting`` (line style): the estimator settings that vary for that estimator
      (``tol``, ``extra_steps``, ``warm_start``, ...), the dtype, device and timing settings
      that vary, and ρ where the columns are not ρ; empty when nothing else varies.

    Rows that still share all of these differ by their seed only (checked): the figures draw
    their median with the range over seeds."""
    if facet not in FACETS:
        raise ValueError(f"facet must be one of {', '.join(FACETS)}, got {facet!r}")
    if facet != "lipschitz":
        require_columns(df, [facet], f"a table faceted by {facet}")
    d = df.copy().reset_index(drop=True)
    d["panel"] = d["problem"].astype(str)
    if "config" in d.columns:
        conf = _settings(d["config"])
        for problem, idx in d.groupby("problem", sort=False).groups.items():
            keys = _varying(conf.loc[idx])
            if keys:
                d.loc[idx, "panel"] = [f"{problem} · {_label(c, keys)}" for c in conf.loc[idx]]
    if facet == "lipschitz":
        d["column"] = d["lipschitz"].map(lambda r: "ρ estimated" if pd.isna(r) else f"ρ = {float(r):g}")
    else:
        d["column"] = d[facet].map(lambda v: f"{_FACET_LABEL[facet]} ≈ {float(v):.3g}")
    if "restarts" in d.columns:
        varied = d.groupby("estimator")["restarts"].transform("nunique") > 1
        d.loc[varied, "estimator"] = [
            f"{e} ({int(m)} restarts)"
            for e, m in zip(d.loc[varied, "estimator"], d.loc[varied, "restarts"], strict=True)
        ]
    parts = [pd.Series("", index=d.index)]
    if "estimator_config" in d.columns:
        est = _settings(d["estimator_config"])
        for _, idx in d.groupby("estimator", sort=False).groups.items():
            keys = _varying(est.loc[idx])
            if keys:
                parts.append(pd.Series([_label(c, keys) for c in est.loc[idx]], index=idx))
    for col in RUN_SETTINGS:
        if col in d.columns and d[col].astype(str).nunique() > 1:
            parts.append(col + "=" + d[col].astype(str))
    if facet != "lipschitz":
        parts.append("ρ=" + d["lipschitz"].map(lambda r: "estimated" if pd.isna(r) else f"{float(r):g}"))
    d["setting"] = [
        ", ".join(p for p in row if p) for row in zip(*(p.reindex(d.index).fillna("") for p in parts), strict=True)
    ]
    _check_only_seeds_are_pooled(d)
    return d


def _check_only_seeds_are_pooled(d: pd.DataFrame) -> None:
    keys = [c for c in ("problem", "config", "lipschitz", "estimator_config", "restarts", *RUN_SETTINGS) if c in d]
    group = d.assign(depth=d["depth"].fillna(-1)).groupby(["panel", "column", "estimator", "setting", "depth"])
    for col in keys:
        n = group[col].apply(lambda s: s.astype(str).nunique())
        if (n > 1).any():
            raise ValueError(f"the figure would average rows that differ in {col!r}")


def prepare(df: pd.DataFrame, facet: str = "lipschitz") -> pd.DataFrame:
    """:func:`sweep_frame` with depthless rows spread over the depths and units for the axes."""
    d = with_depthless_rows_spread(sweep_frame(df, facet), by="panel")
    d["depth"] = d["depth"].astype(float)
    d["rel_error"] = d["rel_error"].astype(float).clip(lower=ERROR_FLOOR)
    d["memory_KiB"] = d["memory_bytes"].astype(float) / 1024
    for col in ("workspace_bytes", "state_bytes", "peak_memory_bytes"):
        if col in d.columns:
            d[col.replace("_bytes", "_KiB")] = pd.to_numeric(d[col], errors="coerce") / 1024
    return d


def facet_figure(d: pd.DataFrame, y: str, ylabel: str, title: str, logy: bool = True) -> sns.FacetGrid:
    """One figure of :func:`plot_sweep` from a prepared table (:func:`prepare`)."""
    order = sorted(d["estimator"].unique())
    # estimators often coincide (restarted JFB after restarts = JFB-K; on its first call =
    # unrolling): earlier ones in the order are drawn wider, so a line on top leaves the one
    # below visible as a halo
    widths = dict(zip(order, np.linspace(3.2, 1.2, len(order)) if len(order) > 1 else [2.0], strict=True))
    palette = estimator_palette(order)
    styled = d["setting"].nunique() > 1 or (d["setting"] != "").any()
    seeds = "seed" in d.columns and d["seed"].nunique() > 1
    g = sns.relplot(
        data=d,
        x="depth",
        y=y,
        hue="estimator",
        hue_order=order,
        palette=palette,
        size="estimator",
        size_order=order,
        sizes=widths,
        style="setting" if styled else None,
        row="panel",
        col="column",
        row_order=list(dict.fromkeys(d["panel"])),
        col_order=sorted(d["column"].unique(), key=_column_sort_key),
        kind="line",
        markers=True,
        dashes=True,
        height=3.0,
        aspect=1.2,
        facet_kws={"sharey": False, "margin_titles": False},
        estimator="median",
        errorbar=("pi", 100) if seeds else None,
    )
    for (panel, column), ax in g.axes_dict.items():
        ax.set_xscale("log", base=2)
        if logy:
            ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
        ax.set_title(_panel_title(d, panel, column), fontsize=9)
    g.set_axis_labels("truncation depth K (log scale)", ylabel)
    note = "; median over seeds, band = range over seeds" if seeds else ""
    g.figure.suptitle(title + note, y=1.03)
    return g


def _column_sort_key(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label.split("=")[-1].split("≈")[-1]), label)
    except ValueError:
        return (1, 0.0, label)


def _panel_title(d: pd.DataFrame, panel: str, column: str) -> str:
    """The panel's problem and column, with the contraction measured there (range over seeds
    and settings when it is not one number)."""
    title = f"{panel}\n{column}"
    rows = d[(d["panel"] == panel) & (d["column"] == column)]
    found = []
    for col, name in (("rho_loc", "ρ_loc"), ("spectral_radius", "r")):
        if col in rows.columns and rows[col].notna().any():
            lo, hi = float(rows[col].min()), float(rows[col].max())
            found.append(f"{name} {lo:.3g}" if f"{lo:.3g}" == f"{hi:.3g}" else f"{name} {lo:.3g}–{hi:.3g}")
    return title + (" · " + ", ".join(found) if found else "")


def plot_sweep(
    df: pd.DataFrame,
    out: str | Path,
    formats: Sequence[str] = ("png", "pdf"),
    bounds: pd.DataFrame | None = None,
    facet: str = "lipschitz",
) -> list[Path]:
    """Relative error, runtime, memory and operator applications against depth: a row of
    panels per problem (and per problem setting that varies), a column per ρ (or per measured
    ``rho_loc`` / ``spectral_radius``, ``facet``), colour = estimator, line style = any other
    setting that varies (:func:`sweep_frame`); several seeds draw as their median with the
    range over seeds. Panel titles give the contraction measured at x* (ρ_loc, r). With
    ``bounds`` (a validation table of :mod:`jfbbench.theory`), the error figure also draws
    B1's bound on JFB-K's relative error (thin dashed lines in JFB's colour). Returns the
    files written."""
    require_columns(df, SWEEP_COLUMNS)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the folder {str(out)!r}: {exc.strerror}") from None
    d = prepare(df, facet)
    written: list[Path] = []
    specs = [
        ("error_vs_depth", "rel_error", "relative error ‖g − g_DEQ‖/‖g_DEQ‖", "Gradient error against depth", True),
        ("time_vs_depth", "time_s", "time per gradient (s)", "Runtime against depth", True),
        ("memory_vs_depth", "memory_KiB", "saved for backward (KiB)", "Autograd memory against depth", True),
        ("peak_memory_vs_depth", "peak_memory_KiB", "allocator peak (KiB)", "Peak memory against depth", True),
        ("evals_vs_depth", "operator_evals", "applications of T per gradient", "Operator work against depth", True),
    ]
    for name, y, ylabel, title, logy in specs:
        sub = d[d[y].notna()] if y in d.columns else d.iloc[:0]
        if sub.empty:
            continue
        g = facet_figure(sub, y, ylabel, title, logy)
        if name == "error_vs_depth" and bounds is not None:
            overlay_jfb_bound(g, bounds, sub)
        written += save(g.figure, out / name, formats)
    return written


def overlay_jfb_bound(g: sns.FacetGrid, bounds: pd.DataFrame, d: pd.DataFrame) -> None:
    """Draw B1 (declared rho) relative to ||grad ell|| -- the largest over seeds and settings
    -- on each panel of a relative-error facet (``d``: its :func:`sweep_frame`), dashed, in
    the colour of ``jfb``."""
    require_columns(bounds, ["bound", "check", "problem", "lipschitz", "depth", "bound_value", "grad_norm"], "bounds")
    b1 = bounds[(bounds["bound"] == "B1") & (bounds["check"] != "same with rho_loc") & bounds["depth"].notna()].copy()
    if b1.empty:
        return
    b1["relative"] = pd.to_numeric(b1["bound_value"]) / pd.to_numeric(b1["grad_norm"])
    curves = b1.groupby(["problem", "lipschitz", "depth"])["relative"].max().reset_index()
    color = estimator_palette(["jfb"])["jfb"]
    for (panel, column), ax in g.axes_dict.items():
        rows = d[(d["panel"] == panel) & (d["column"] == column)]
        if rows.empty:
            continue
        problem, rhos = rows["problem"].iloc[0], set(rows["lipschitz"].astype(float))
        for rho, c in curves[curves["problem"] == problem].groupby("lipschitz"):
            if float(rho) not in rhos:
                continue
            c = c.sort_values("depth")
            ax.plot(c["depth"], c["relative"], linestyle=(0, (4, 2)), lw=1.0, alpha=0.8, color=color)
            ax.annotate(f"B1, ρ={rho:g}", (c["depth"].iloc[-1], c["relative"].iloc[-1]), fontsize=7, color=color)
