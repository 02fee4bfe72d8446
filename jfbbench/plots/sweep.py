"""The sweep figures: error, runtime, memory and operator work against the depth K, from a
sweep table alone, with seaborn; never averaging over a setting that varies."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..tables import require_columns
from ._axes import BYTE_UNITS, ERROR_FLOOR, TIME_UNITS, depth_axis, readable_log_axis, readable_unit, save
from ._facets import facet_grid, label_axes, wrap_title
from ._style import COINCIDE_RTOL, coincidence_notes, estimator_order, estimator_styles, line_widths

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
    """``k=v`` for each key; a key the row does not hold took the estimator's (or problem's)
    default, which the sweep does not record: ``k=default``."""
    return ", ".join(f"{k}={d[k]}" if d.get(k) is not None else f"{k}=default" for k in keys)


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
    """:func:`sweep_frame` with depthless rows spread over the depths, the errors floored at
    :data:`ERROR_FLOOR` and the lines named (``line``: the estimator, and its setting where
    one varies)."""
    d = with_depthless_rows_spread(sweep_frame(df, facet), by="panel")
    d["depth"] = d["depth"].astype(float)
    d["rel_error"] = d["rel_error"].astype(float).clip(lower=ERROR_FLOOR)
    d["line"] = [f"{e}, {s}" if s else e for e, s in zip(d["estimator"], d["setting"], strict=True)]
    return d


def _not_converged(rows: pd.DataFrame) -> pd.Series:
    """Rows whose forward solve is recorded as not converged."""
    if "converged" not in rows.columns:
        return pd.Series(False, index=rows.index)
    return rows["converged"].astype(str).str.lower().isin(["false", "0", "0.0"])


#: The size of a panel of the sweep figures: height (inches) and width / height.
PANEL_HEIGHT, PANEL_ASPECT = 3.0, 1.25


def facet_figure(
    d: pd.DataFrame, y: str, ylabel: str, title: str, logy: bool = True, spread: str | None = None
) -> sns.FacetGrid:
    """One figure of :func:`plot_sweep` from a prepared table (:func:`prepare`): a row of
    panels per ``panel``, one per ``column`` that panel has (left-aligned, so that no panel is
    empty where panels have different columns, :func:`~._facets.facet_grid`; titles wrapped
    to the panel's width), a line per ``line`` (its estimator's
    colour, dash and marker, :func:`~._style.estimator_styles`; drawn widest first, so a line
    on top of an equal one leaves it visible), the median over seeds with their range as a
    band; with ``spread`` (a column of the same unit as ``y``, e.g. ``time_iqr_s``), its
    median drawn as a bar of that length centred on each point. Lines that coincide are said
    so: in the legend (``(= unrolled)``: the same numbers; ``(≈ jfb)``: within 2 %) where they
    coincide in every panel, in the panel's title where only there. Points whose forward
    solve did not converge are ringed."""
    d = d.assign(line=d["line"] if "line" in d.columns else d["estimator"])
    order = estimator_order(d["line"])
    styles = estimator_styles(order)
    widths = dict(zip(order, line_widths(len(order)), strict=True))
    sizes = dict(zip(order, line_widths(len(order), 10.0, 5.0), strict=True))
    seeds = "seed" in d.columns and d["seed"].nunique() > 1
    g = facet_grid(d, PANEL_HEIGHT, PANEL_ASPECT)
    curves: dict[tuple[str, str], dict[str, pd.Series]] = {}
    ringed = False
    for (panel, column), ax in g.axes_dict.items():
        here = d[(d["panel"] == panel) & (d["column"] == column)]
        curves[(panel, column)] = {}
        for lab in order:
            rows = here[here["line"] == lab]
            if rows.empty:
                continue
            style = styles[lab]
            agg = rows.groupby("depth")[y].agg(["median", "min", "max"])
            ax.plot(
                agg.index, agg["median"], color=style.colour, linestyle=style.linestyle, marker=style.marker,
                lw=widths[lab], ms=sizes[lab], mfc="none", mec=style.colour, mew=1.3, gid=lab, label=lab,
            )  # fmt: skip
            if seeds:
                ax.fill_between(agg.index, agg["min"], agg["max"], color=style.colour, alpha=0.15, lw=0)
            if spread is not None and spread in rows.columns and rows[spread].notna().any():
                half = rows.groupby("depth")[spread].median().reindex(agg.index).to_numpy(float) / 2
                mid = agg["median"].to_numpy(float)
                low = np.minimum(half, 0.9 * mid) if logy else half
                ax.errorbar(
                    agg.index, mid, yerr=[low, half], fmt="none", ecolor=style.colour, elinewidth=1.0, capsize=2.5,
                    gid=f"spread:{lab}",
                )  # fmt: skip
            bad = _not_converged(rows)
            if bad.any():
                ax.scatter(rows.loc[bad, "depth"], rows.loc[bad, y], s=160, facecolors="none", edgecolors="k",
                           lw=1.2, zorder=5, gid=f"not converged:{lab}")  # fmt: skip
                ringed = True
            curves[(panel, column)][lab] = agg["median"]
    suffix, notes = coincidence_notes(curves)
    g.notes_cut = False  # whether a title left out notes (then plot_sweep lists them beside the figure)
    for (panel, column), ax in g.axes_dict.items():
        depth_axis(ax, d.loc[d["panel"] == panel, "depth"])
        if logy:
            ax.set_yscale("log")
            readable_log_axis(ax.yaxis)
        ax.grid(True, which="major", alpha=0.3)
        full = notes.get((panel, column), "")
        note = _short_note(full)
        g.notes_cut |= note != full
        heading = _panel_title(d, panel, column) + (f"\n{note}" if note else "")
        ax.set_title(wrap_title(heading, PANEL_HEIGHT * PANEL_ASPECT, 8), fontsize=8)
    g.coinciding = {key: note for key, note in notes.items() if note}  # every note, for a sidecar table
    label_axes(g, "truncation depth K (log scale)", ylabel)
    entries = {
        lab + suffix.get(lab, ""): plt.Line2D(
            [], [], color=styles[lab].colour, linestyle=styles[lab].linestyle, marker=styles[lab].marker,
            lw=widths[lab], ms=sizes[lab] * 0.8, mfc="none", mew=1.3,
        )
        for lab in order
    }  # fmt: skip
    if ringed:
        entries["forward solve not converged"] = plt.Line2D(
            [], [], ls="", marker="o", ms=11, mfc="none", mec="k", mew=1.2
        )
    g._legend_data = entries
    _legend(g)
    notes_said = ["= : the same numbers", f"≈ : within {COINCIDE_RTOL:.0%}"]
    if seeds:
        notes_said.insert(0, "median over seeds, band = range over seeds")
    if spread is not None:
        notes_said.insert(0, "bars: interquartile range of the repeats")
    g.figure.suptitle(title + "\n" + "; ".join(notes_said), y=1.0, fontsize=10)
    g.tight_layout()
    return g


#: The most lines of coincidence notes a panel's title holds; the rest are counted there and
#: listed in full in ``<figure>_coinciding.csv`` beside the figure.
NOTE_LINES = 3


def _short_note(note: str) -> str:
    """The groups of ``note`` ("a, b = c; d ≈ e") that fit in :data:`NOTE_LINES` title lines,
    then how many more there are."""
    if not note:
        return ""
    groups, kept = note.split("; "), []
    for group in groups:
        text = "; ".join([*kept, group])
        if len(wrap_title(text, PANEL_HEIGHT * PANEL_ASPECT, 8).split("\n")) > NOTE_LINES - 1:
            break
        kept.append(group)
    rest = len(groups) - len(kept)
    return "; ".join(kept) + (f"; +{rest} more coinciding (listed in _coinciding.csv)" if rest else "")


def _legend(g: sns.FacetGrid, extra: dict | None = None) -> None:
    """(Re)draw the figure's legend, outside the panels on the right, from ``g._legend_data``
    and ``extra``."""
    if extra:
        g._legend_data = {**g._legend_data, **extra}
    if g._legend is not None:
        g._legend.remove()
        g._legend = None
    g.add_legend(legend_data=g._legend_data, title="estimator", label_order=list(g._legend_data), fontsize=9)


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
    panels per problem (and per problem setting that varies), a panel per ρ of that problem (or
    per measured ``rho_loc`` / ``spectral_radius``, ``facet``; a problem whose ρ is estimated
    has its one panel, never a column of empty ones), colour = estimator, line style = any other
    setting that varies (:func:`sweep_frame`); several seeds draw as their median with the
    range over seeds. Panel titles give the contraction measured at x* (ρ_loc, r). With
    ``bounds`` (a validation table of :mod:`jfbbench.theory`), the error figure also draws
    B1's bound on JFB-K's relative error (thin lines in JFB's colour, no markers). Each
    figure picks its own unit (ms or s, KiB or MiB ...: the one its median reads in as 1 to
    1000); the runtime figure draws the timing spread (``time_iqr_s``) as bars; the operator
    work figure has a row of panels for the applications of T and one for the VJPs of each
    problem. A figure whose panel titles cannot hold every coincidence note (more than
    :data:`NOTE_LINES` lines) lists them all in ``<figure>_coinciding.csv`` beside it. Returns
    the files written."""
    require_columns(df, SWEEP_COLUMNS)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the folder {str(out)!r}: {exc.strerror}") from None
    d = prepare(df, facet)
    written: list[Path] = []
    for name, y, ylabel, title in _FIGURES:
        if name == "evals_vs_depth":
            sub = _operator_work(d)
        else:
            sub = d[d[y].notna()].copy() if y in d.columns else d.iloc[:0]
        if sub.empty:
            continue
        spread = None
        if y == "time_s":
            unit, size = readable_unit(sub[y], TIME_UNITS)
            sub[y] = pd.to_numeric(sub[y]) / size
            if "time_iqr_s" in sub.columns:
                sub["time_iqr_s"] = pd.to_numeric(sub["time_iqr_s"], errors="coerce") / size
                spread = "time_iqr_s"
            ylabel = ylabel.format(unit=unit)
        elif y.endswith("_bytes"):
            unit, size = readable_unit(sub[y], BYTE_UNITS)
            sub[y] = pd.to_numeric(sub[y]) / size
            ylabel = ylabel.format(unit=unit)
        g = facet_figure(sub, y, ylabel, title, True, spread)
        if name == "evals_vs_depth":
            for (panel, _), ax in g.axes_dict.items():
                if ax.get_ylabel():
                    ax.set_ylabel("VJPs per gradient" if panel.endswith(_VJP) else "applications of T per gradient")
        if name == "error_vs_depth" and bounds is not None:
            overlay_jfb_bound(g, bounds, sub)
        written += save(g.figure, out / name, formats)
        sidecar = out / f"{name}_coinciding.csv"
        if g.notes_cut:
            rows = [dict(panel=panel, column=column, coinciding=group)
                    for (panel, column), note in g.coinciding.items() for group in note.split("; ")]  # fmt: skip
            pd.DataFrame(rows).to_csv(sidecar, index=False)
            written.append(sidecar)
        elif sidecar.exists():
            sidecar.unlink()  # a sidecar of an earlier drawing that no longer applies
    return written


#: The figures of :func:`plot_sweep`: (file name, column, y label (``{unit}`` filled per figure), title).
_FIGURES = [
    ("error_vs_depth", "rel_error", "relative error ‖g − g_DEQ‖/‖g_DEQ‖", "Gradient error against depth"),
    ("time_vs_depth", "time_s", "time per gradient ({unit})", "Runtime against depth"),
    ("memory_vs_depth", "memory_bytes", "saved for backward ({unit})", "Autograd memory against depth"),
    ("peak_memory_vs_depth", "peak_memory_bytes", "allocator peak ({unit})", "Peak memory against depth"),
    ("evals_vs_depth", "work", "per gradient", "Operator work against depth: applications of T and VJPs"),
]
_T, _VJP = " · applications of T", " · VJPs"


def _operator_work(d: pd.DataFrame) -> pd.DataFrame:
    """The operator work of a prepared table in long form: a row of panels for the
    applications of T and one for the VJPs (column ``work``) of each panel."""
    parts = []
    for col, tag in (("operator_evals", _T), ("vjp_evals", _VJP)):
        if col in d.columns and d[col].notna().any():
            part = d[d[col].notna()].copy()
            part["work"] = pd.to_numeric(part[col]).astype(float)
            part["panel"] = part["panel"] + tag
            parts.append(part)
    if not parts:
        return d.iloc[:0]
    out = pd.concat(parts, ignore_index=True)
    rows = [p + tag for p in dict.fromkeys(d["panel"]) for tag in (_T, _VJP)]
    out["panel"] = pd.Categorical(out["panel"], categories=[r for r in rows if r in set(out["panel"])], ordered=True)
    return out.sort_values("panel", kind="stable").assign(panel=lambda x: x["panel"].astype(str))


def overlay_jfb_bound(g: sns.FacetGrid, bounds: pd.DataFrame, d: pd.DataFrame) -> None:
    """Draw B1 (declared rho) relative to ||grad ell|| -- the largest over seeds and settings
    -- on each panel of a relative-error facet (``d``: its :func:`sweep_frame`): a thin line
    without markers in the colour of ``jfb``, named in the legend."""
    require_columns(bounds, ["bound", "check", "problem", "lipschitz", "depth", "bound_value", "grad_norm"], "bounds")
    b1 = bounds[(bounds["bound"] == "B1") & (bounds["check"] != "same with rho_loc") & bounds["depth"].notna()].copy()
    if b1.empty:
        return
    b1["relative"] = pd.to_numeric(b1["bound_value"]) / pd.to_numeric(b1["grad_norm"])
    curves = b1.groupby(["problem", "lipschitz", "depth"])["relative"].max().reset_index()
    colour = estimator_styles(["jfb"])["jfb"].colour
    drawn = False
    for (panel, column), ax in g.axes_dict.items():
        rows = d[(d["panel"] == panel) & (d["column"] == column)]
        if rows.empty:
            continue
        problem, rhos = rows["problem"].iloc[0], set(rows["lipschitz"].astype(float))
        for rho, c in curves[curves["problem"] == problem].groupby("lipschitz"):
            if float(rho) not in rhos:
                continue
            c = c.sort_values("depth")
            ax.plot(c["depth"], c["relative"], linestyle="-", lw=0.9, alpha=0.9, color=colour, gid="B1")
            drawn = True
    if drawn:
        _legend(g, {"B1 bound on jfb's error (ρ declared)": plt.Line2D([], [], color=colour, lw=0.9)})
