"""The figures of a validation table (:mod:`jfbbench.theory`): measured errors beside their
bounds against the depth K, and measured / bound at every checked point."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..tables import require_columns
from ..theory.checks import CHECKS, EXPECTATIONS
from ..theory.scope import OUT_OF_SCOPE
from ._axes import ERROR_FLOOR, panel_grid, readable_log_axis, save
from ._style import NEUTRAL, estimator_palette

VALIDATION_COLUMNS = ["bound", "check", "problem", "lipschitz", "seed", "depth", "measured", "bound_value", "checked"]


def is_validation_table(df: pd.DataFrame) -> bool:
    """A table written by ``jfbbench validate`` (:mod:`jfbbench.theory`), not by a sweep."""
    return set(VALIDATION_COLUMNS) <= set(df.columns) and "rel_error" not in df.columns


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
        r = float(pd.to_numeric(unr["spectral_radius"], errors="coerce").max())  # B4's rate: the radius
        shape = unr["depth"] * r ** unr["depth"]
        fit = unr[unr["measured"] > unr["floor"]]
        if not fit.empty and r > 0 and not (unr["status"] == OUT_OF_SCOPE).any():  # no rate where B4 is out of scope
            c = float((fit["measured"] / (fit["depth"] * r ** fit["depth"])).max())
            ax.plot(unr["depth"], c * shape, ls=(0, (1, 2)), lw=1.0, color=colour["unrolled"],
                    label="B4 rate C·K r^K (r: spectral radius), C fitted (a guide, not a bound)")  # fmt: skip
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
    fig.tight_layout()
    height = fig.get_figheight()  # the title half an inch above the first row's titles, whatever the rows
    fig.subplots_adjust(top=1 - 0.75 / height)
    fig.suptitle(
        "Measured errors (solid) and their bounds B1–B3 (dashed, dotted, dash-dot); B4's rate (fine dots)",
        y=1 - 0.15 / height,
    )
    fig.legend(list(entries.values()), list(entries), loc="upper center", ncol=3, bbox_to_anchor=(0.5, 0.0))
    return save(fig, out / "error_vs_depth_bounds", formats)


#: The marker of each rho in the ratio figure.
_RHO_MARKERS = ("o", "^", "s", "D", "v", "P")


def _ratio_figure(v: pd.DataFrame, out: Path, formats: Sequence[str]) -> list[Path]:
    """measured / bound at every checked point: the bounds in the top row of panels (they
    hold below 1), the expected-but-unproven orderings (:data:`EXPECTATIONS`, e.g. B4's JFB-K
    error / unrolled error) apart in the bottom row, where a point above 1 is an expectation
    not met, not a violation."""
    r = v[v["checked"].astype(bool) & v["bound"].isin(["B1", "B2", "B3", "B4", "B5"]) & v["bound_value"].notna()].copy()
    r["ratio"] = pd.to_numeric(r["ratio"], errors="coerce")
    r = r[r["ratio"] > 0]
    if r.empty:
        return []
    r["steps"] = np.where(r["bound"] == "B5", r["depth"] * r["calls"].fillna(1), r["depth"])
    r["label"] = r["bound"] + ": " + r["check"]
    r["expected"] = [(b, c) in EXPECTATIONS for b, c in zip(r["bound"], r["check"], strict=True)]
    problems = sorted(r["problem"].unique())
    kinds = [False] + ([True] if r["expected"].any() else [])
    scoped = v[v["status"] == OUT_OF_SCOPE].groupby("problem")["bound"].unique()
    expectation_bounds = {b for b, _ in EXPECTATIONS}
    fig, axes = panel_grid(len(kinds), len(problems), 3.5, 3.0, sharex="col", sharey="row")
    labels = sorted(r["label"].unique())
    colours = dict(zip(labels, sns.color_palette("Dark2", len(labels)), strict=True))
    rhos = sorted(r["lipschitz"].unique())
    markers = {rho: _RHO_MARKERS[i % len(_RHO_MARKERS)] for i, rho in enumerate(rhos)}
    for i, expected in enumerate(kinds):
        for j, problem in enumerate(problems):
            ax = axes[i, j]
            sub = r[(r["problem"] == problem) & (r["expected"] == expected)]
            for (lab, rho), pts in sub.groupby(["label", "lipschitz"]):
                ax.scatter(pts["steps"], pts["ratio"], s=14, color=colours[lab], marker=markers[rho], lw=0,
                           gid=f"{'expected' if expected else 'bound'}:{lab}")  # fmt: skip
            gone = sorted(b for b in scoped.get(problem, []) if not expected or b in expectation_bounds)
            if sub.empty:
                why = f"\n({', '.join(gone)} out of scope)" if gone else ""
                ax.text(0.5, 0.5, "no checked point" + why, ha="center", va="center", color=NEUTRAL,
                        transform=ax.transAxes)  # fmt: skip
            ax.set_yscale("log")
            if expected:
                ax.axhline(1.0, color=NEUTRAL, lw=1, ls="--")
            else:
                ax.axhline(1.0, color="red", lw=1)
            ax.grid(True, alpha=0.3)
            if i == 0:
                ax.set_title(problem + (f"\n{', '.join(gone)}: out of scope" if gone else ""), fontsize=9)
            if i == len(kinds) - 1:
                ax.set_xlabel("depth K (B5: steps m·K)")
        axes[i, 0].set_ylabel(
            "measured / reference\n(expected ≤ 1, not proven)" if expected else "measured / bound\n(holds below 1)"
        )
    for ax in axes.flat:
        readable_log_axis(ax.yaxis)
    expected_labels = set(r.loc[r["expected"], "label"])
    handles = [
        plt.Line2D([], [], ls="", marker="o", color=colours[lab],
                   label=lab + (" (expected, not a bound: bottom row)" if lab in expected_labels else ""))
        for lab in labels
    ]  # fmt: skip
    handles += [plt.Line2D([], [], ls="", marker=markers[rho], color=NEUTRAL, label=f"ρ = {rho:g}") for rho in rhos]
    handles += [plt.Line2D([], [], color="red", label="a bound: a point above is a violation")]
    if len(kinds) > 1:
        handles += [plt.Line2D([], [], color=NEUTRAL, ls="--", label="an expectation: a point above is no violation")]
    fig.suptitle("Measured / bound at every checked point (top); expected orderings, not bounds, apart (bottom)")
    fig.tight_layout()
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    return save(fig, out / "bound_ratios", formats)


def plot_bounds(table: pd.DataFrame, out: str | Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Figures of a validation table (:mod:`jfbbench.theory`), first seed of each problem:

    - ``error_vs_depth_bounds``: measured errors against K (solid) with their bounds (dashed,
      same colour): JFB-K's gradient error with B1 (rho dashed, rho_loc dotted) and B2's
      finite-K bound ||B|| ||u|| ||J^K|| (dash-dot; an implementation check), unrolling's with
      the O(K r^K) shape of B4 (r the spectral radius; constant fitted to the measurements, so
      a guide to the rate, not a bound; not drawn where B4 is out of scope), and the
      forward error ||x_K - x*|| with B3 (a priori); the grey line is the round-off floor
      below which points are not checked;
    - ``bound_ratios``: measured/bound for every checked point of B1, B2, B3 and B5 (against
      the steps m K; a bound holds where its points lie below the red line at 1), and, in a
      row of their own, the expected orderings that are no bound (B4: JFB-K error over
      unrolled error), whose points above 1 are expectations not met, not violations.

    Problems outside the theory have no curves; the checks out of scope for a problem
    (:data:`~jfbbench.theory.scope.SMOOTH_PREMISES`) keep their measured curves and are named
    in its ratio panels' titles, without points. Returns the files written."""
    require_columns(table, VALIDATION_COLUMNS, "validation table")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    v = table[table["status"].isin(["checked", OUT_OF_SCOPE]) & table["depth"].notna()].copy()
    if v.empty:
        return []
    v = v[v["seed"] == v.groupby("problem")["seed"].transform("min")]
    for c in ("depth", "measured", "bound_value", "calls", "floor", "floor_x"):
        if c in v.columns:
            v[c] = pd.to_numeric(v[c], errors="coerce")
    return _error_figure(v, out, formats) + _ratio_figure(v, out, formats)
