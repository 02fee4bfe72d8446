"""The figures of a validation table (:mod:`jfbbench.theory`): measured errors beside their
bounds against the depth K, and measured / bound at every checked point."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from ..tables import require_columns
from ..theory.checks import CHECKS
from ._style import ERROR_FLOOR, NEUTRAL, estimator_palette, panel_grid, save

VALIDATION_COLUMNS = ["bound", "check", "problem", "lipschitz", "seed", "depth", "measured", "bound_value", "checked"]


def _rows(d: pd.DataFrame, bound: str, check: str | None = None, exclude: str | None = None) -> pd.DataFrame:
    """The rows of ``bound`` (of one ``check``, or of every check but ``exclude``) by depth."""
    sel = d["bound"] == bound
    if check is not None:
        sel &= d["check"] == check
    if exclude is not None:
        sel &= d["check"] != exclude
    return d[sel].sort_values("depth")


def _error_panel(ax, d: pd.DataFrame, rho: float) -> None:
    """One problem and rho: JFB-K's error with B1 and B2, unrolling's with B4's shape, the
    forward error with B3, and the round-off floor."""
    colour = estimator_palette(["jfb", "unrolled"])
    jfb = _rows(d, "B1", exclude=CHECKS["B1"][1])
    if not jfb.empty:
        ax.plot(jfb["depth"], jfb["measured"], "-", color=colour["jfb"], label="JFB-K error")
        ax.plot(jfb["depth"], jfb["bound_value"], "--", color=colour["jfb"], label="B1 bound (ρ)")
    loc = _rows(d, "B1", CHECKS["B1"][1])
    if not loc.empty:
        ax.plot(loc["depth"], loc["bound_value"], ":", color=colour["jfb"], label="B1 bound (ρ_loc)")
    b2 = _rows(d[d["bound_value"].notna()], "B2")
    if not b2.empty:
        ax.plot(b2["depth"], b2["bound_value"], "-.", color=colour["jfb"], label="B2 bound ‖B‖‖u‖‖J^K‖")
    unr = _rows(d[d["estimator"] == "unrolled"], "B4")
    if not unr.empty:
        ax.plot(unr["depth"], unr["measured"], "-", color=colour["unrolled"], label="unrolled error")
        shape = unr["depth"] * float(rho) ** unr["depth"]
        fit = unr[unr["measured"] > unr["floor"]]
        if not fit.empty:
            c = float((fit["measured"] / (fit["depth"] * float(rho) ** fit["depth"])).max())
            ax.plot(unr["depth"], c * shape, "--", color=colour["unrolled"], label="B4 shape C·Kρ^K (fitted C)")
    fwd = _rows(d, "B3", CHECKS["B3"][0])
    if not fwd.empty:
        ax.plot(fwd["depth"], fwd["measured"], "-", color=NEUTRAL, label="‖x_K − x*‖")
        ax.plot(fwd["depth"], fwd["bound_value"], "--", color=NEUTRAL, label="B3 bound ρ^K‖x₀ − x*‖")
    if "floor" in d and d["floor"].notna().any():
        ax.axhline(float(d["floor"].max()), color="0.6", lw=0.8, label="round-off floor (gradients)")
    ax.set_yscale("log")
    ax.set_ylim(bottom=max(ERROR_FLOOR, float(d["measured"][d["measured"] > 0].min()) / 10))
    ax.grid(True, alpha=0.3)


def _error_figure(v: pd.DataFrame, out: Path, formats: Sequence[str]) -> list[Path]:
    probs, rhos = sorted(v["problem"].unique()), sorted(v["lipschitz"].unique())
    fig, axes = panel_grid(len(probs), len(rhos), 3.6, 2.9, sharex=True)
    for i, prob in enumerate(probs):
        for j, rho in enumerate(rhos):
            ax = axes[i, j]
            d = v[(v["problem"] == prob) & (v["lipschitz"] == rho)]
            if d.empty:
                ax.set_visible(False)
                continue
            _error_panel(ax, d, rho)
            ax.set_title(f"{prob}, ρ = {rho:g}", fontsize=9)
            if i == len(probs) - 1:
                ax.set_xlabel("depth K")
            if j == 0:
                ax.set_ylabel("error (absolute)")
    entries: dict[str, object] = {}
    for ax in axes.flat:
        for handle, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(lab, handle)
    fig.legend(list(entries.values()), list(entries), loc="lower center", ncol=4, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle("Measured errors (solid) and their bounds B1–B4 (dashed)", y=1.0)
    fig.tight_layout(rect=(0, 0.06, 1, 0.98))
    return save(fig, out / "error_vs_depth_bounds", formats)


def _ratio_figure(v: pd.DataFrame, out: Path, formats: Sequence[str]) -> list[Path]:
    r = v[v["checked"].astype(bool) & v["bound"].isin(["B1", "B2", "B3", "B4", "B5"]) & v["bound_value"].notna()].copy()
    r = r[pd.to_numeric(r["ratio"], errors="coerce") > 0]
    if r.empty:
        return []
    r["ratio"] = pd.to_numeric(r["ratio"], errors="coerce")
    r["steps"] = np.where(r["bound"] == "B5", r["depth"] * r["calls"].fillna(1), r["depth"])
    r["label"] = r["bound"] + ": " + r["check"]
    r["ρ"] = r["lipschitz"].map(lambda x: f"{x:g}")
    g = sns.relplot(
        data=r,
        x="steps",
        y="ratio",
        hue="label",
        style="ρ",
        col="problem",
        kind="scatter",
        s=14,
        col_wrap=min(3, r["problem"].nunique()),
        height=3.4,
        aspect=1.15,
    )
    for ax in g.axes.flat:
        ax.set_yscale("log")
        ax.axhline(1.0, color="red", lw=1)
        ax.grid(True, alpha=0.3)
    g.set_axis_labels("depth K (B5: steps m·K)", "measured / bound (holds below 1)")
    g.set_titles("{col_name}")
    g.figure.suptitle("Measured / bound at every checked point", y=1.02)
    return save(g.figure, out / "bound_ratios", formats)


def plot_bounds(table: pd.DataFrame, out: str | Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Figures of a validation table (:mod:`jfbbench.theory`), first seed of each problem:

    - ``error_vs_depth_bounds``: measured errors against K (solid) with their bounds (dashed,
      same colour): JFB-K's gradient error with B1 (rho dashed, rho_loc dotted) and B2's
      finite-K bound ||B|| ||u|| ||J^K|| (dash-dot), unrolling's with the O(K rho^K) shape of
      B4 (constant fitted to the measurements, so a guide to the rate, not a bound), and the
      forward error ||x_K - x*|| with B3 (a priori); the grey line is the round-off floor
      below which points are not checked;
    - ``bound_ratios``: measured/bound for every checked point of B1, B2, B3, B4 (JFB-K error
      over unrolled error) and B5 (against the steps m K): a bound holds where its points lie
      below 1.

    Problems outside the theory have no curves. Returns the files written."""
    require_columns(table, VALIDATION_COLUMNS, "validation table")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    v = table[(table["status"] == "checked") & table["depth"].notna()].copy()
    if v.empty:
        return []
    v = v[v["seed"] == v.groupby("problem")["seed"].transform("min")]
    for c in ("depth", "measured", "bound_value", "calls", "floor", "floor_x"):
        if c in v.columns:
            v[c] = pd.to_numeric(v[c], errors="coerce")
    return _error_figure(v, out, formats) + _ratio_figure(v, out, formats)
