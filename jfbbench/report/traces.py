"""The plotly figure of the report page (:func:`figure`): four plots (error, cost and bytes
saved against depth, and the error-cost front), every trace tagged with the panel, rho,
estimator and cost axis it belongs to, so that the page's controls choose which are shown;
with the hover text of a row and the series that repeat another's error curve."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import front

#: The cost axes a reader chooses from: key -> (sweep column, front column, axis title).
COSTS = {
    "cost": ("cost", "cost", "T + VJP + JVP per gradient"),
    "seconds": ("time_s", "seconds", "seconds per gradient"),
    "memory": ("peak_memory_bytes", "memory", "peak memory per gradient (bytes)"),
}
#: Line styles and markers that tell apart the series of one estimator (its colour).
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = (
    "circle", "square-open", "diamond", "x-thin-open", "triangle-up-open", "cross", "star-open", "triangle-down",
    "hexagon-open", "pentagon",
)  # fmt: skip


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def hover_text(row: pd.Series, columns: Sequence[str]) -> str:
    """Every column of a row that holds a value, one per line (plotly's ``<br>``)."""
    parts = []
    for c in columns:
        v = row[c]
        if v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and v in ("", "{}")):
            continue
        parts.append(f"{html.escape(str(c), quote=False)}: {html.escape(_fmt(v), quote=False)}")
    return "<br>".join(parts)


def _styles(d: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """A (dash, marker) per series: the dash distinct among the series of one estimator (its
    colour), the marker distinct among all series (up to ten), open and filled in turn, so that
    series that coincide (restarted JFB's first call and unrolling) stay visible."""
    out = {}
    series = sorted(d["series"].unique())
    for _, sub in d.groupby("base", sort=True):
        for i, s in enumerate(sorted(sub["series"].unique())):
            out[s] = (DASHES[i % len(DASHES)], SYMBOLS[series.index(s) % len(SYMBOLS)])
    return out


def coincident(d: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """``(panel, rho, series) -> the series drawn before it whose error curve it repeats``
    (medians equal to 1e-6 at every depth), so that the legend says what a line hides under."""
    out = {}
    for (panel, rho), g in d.groupby(["panel", "column"], sort=True):
        curves = {s: sub.groupby("depth")["rel_error"].median() for s, sub in g.groupby("series", sort=True)}
        names = list(curves)
        for i, s in enumerate(names):
            for t in names[:i]:
                a, b = curves[s], curves[t]
                if a.index.equals(b.index) and np.allclose(a.to_numpy(), b.to_numpy(), rtol=1e-6, atol=0.0):
                    out[(panel, rho, s)] = t
                    break
    return out


def figure(data: dict[str, Any]) -> Any:
    """The plotly figure: every trace of every panel, each tagged (``meta``) with its panel,
    ρ, estimator and cost axis; the page's controls choose which are visible."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    d, fr, colours = data["rows"], data["front"], data["colours"]
    styles = _styles(d)
    same = coincident(d)
    fig = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=(
            "relative error against depth",
            "cost against depth",
            "bytes saved for backward against depth",
            "error against cost: the front",
        ),
        horizontal_spacing=0.1,
        vertical_spacing=0.14,
    )
    first_panel = next(iter(data["panels"]))
    first = (first_panel, data["panels"][first_panel][0])
    shown: set[tuple[str, str, str]] = set()

    def add(trace: Any, cell: tuple[int, int], panel: str, rho: str, est: str, cost: str | None) -> None:
        trace.meta = dict(panel=panel, rho=rho, est=est, cost=cost)
        trace.visible = (panel, rho) == first and cost in (None, "cost")
        fig.add_trace(trace, row=cell[0], col=cell[1])

    def points(x: Any, y: Any, marker: dict, error_y: dict | None, name: str, group: str, text: list[str]) -> Any:
        """Markers that show their rows on hover (the legend entry is the line's)."""
        return go.Scatter(
            x=x, y=y, mode="markers", marker=marker, error_y=error_y, name=name, legendgroup=group,
            showlegend=False, hovertext=text, hoverinfo="text",
        )  # fmt: skip

    for (panel, rho, series), g in d.groupby(["panel", "column", "series"], sort=True):
        est = str(g["base"].iloc[0])
        dash, symbol = styles[series]
        colour = data["shades"][str(g["estimator"].iloc[0])]
        g = g.sort_values("depth")
        text = list(g["hover"])
        median = g.groupby("depth", sort=True)
        legend = (panel, rho, series) not in shown
        shown.add((panel, rho, series))
        quantities = [
            (1, 1, "rel_error", None, None),
            (1, 2, "cost", "cost", None),
            (1, 2, "time_s", "seconds", "time_iqr_s"),
            (1, 2, "peak_memory_bytes", "memory", None),
            (2, 1, "memory_bytes", None, None),
        ]
        for r, c, y, cost, spread in quantities:
            if g[y].notna().sum() == 0:
                continue
            med = median[y].median()
            line = go.Scatter(
                x=med.index,
                y=med.values,
                mode="lines",
                line=dict(color=colour, dash=dash, width=2),
                name=series + (f" (error as {same[panel, rho, series]})" if (panel, rho, series) in same else ""),
                legendgroup=series,
                showlegend=legend and (r, c) == (1, 1),
                hoverinfo="skip",
            )
            add(line, (r, c), panel, rho, est, cost)
            marker = dict(color=colour, symbol=symbol, size=7, line=dict(width=0.5, color="white"))
            bars = dict(type="data", array=g[spread], visible=True, thickness=1) if spread else None
            add(points(g["depth"], g[y], marker, bars, series, series, text), (r, c), panel, rho, est, cost)
    for (panel, rho), g in fr.groupby(["panel", "column"], sort=True):
        for key, (_, col, _) in COSTS.items():
            on = g[g[f"on_front_{col}"]].sort_values(col)
            if len(on):
                joined = go.Scatter(
                    x=on[col], y=on["error"], mode="lines", line=dict(color="black", width=1.5), name="front",
                    showlegend=False, hoverinfo="skip",
                )  # fmt: skip
                add(joined, (2, 2), panel, rho, "", key)
            groups = g.groupby(["table", "estimator", "restarts", "tol", "warm_start"], sort=True, dropna=False)
            for j, (_, s) in enumerate(groups):
                est = str(s["estimator"].iloc[0])
                symbol = SYMBOLS[j % len(SYMBOLS)]
                text = [
                    hover_text(r, ["table", "setting", "estimator", "depth", "tol", "warm_start", "restarts",
                                   "error", "error_q25", "error_q75", "cost", "seconds", "memory", "n"])
                    + f"<br>on the front: {bool(r[f'on_front_{col}'])}"
                    for _, r in s.iterrows()
                ]  # fmt: skip
                marker = dict(
                    color=colours.get(est, "#333333"),
                    symbol=symbol,
                    size=9,
                    line=dict(width=1, color="black"),
                    opacity=[1.0 if f else 0.45 for f in s[f"on_front_{col}"]],
                )
                bars = dict(
                    type="data",
                    symmetric=False,
                    array=(s["error_q75"] - s["error"]).clip(lower=0),
                    arrayminus=(s["error"] - s["error_q25"]).clip(lower=0),
                    thickness=1,
                )
                name = front.label(s.iloc[0].drop("depth"))
                add(points(s[col], s["error"], marker, bars, name, est, text), (2, 2), panel, rho, est, key)
    for r, c in ((1, 1), (1, 2), (2, 1), (2, 2)):
        fig.update_yaxes(type="log", row=r, col=c, exponentformat="power")
    fig.update_xaxes(title_text="depth K", row=1, col=1)
    fig.update_xaxes(title_text="depth K", row=1, col=2)
    fig.update_xaxes(title_text="depth K", row=2, col=1)
    fig.update_xaxes(title_text=COSTS["cost"][2], type="log", row=2, col=2, exponentformat="power")
    fig.update_yaxes(title_text="relative error", row=1, col=1)
    fig.update_yaxes(title_text=COSTS["cost"][2], row=1, col=2)
    fig.update_yaxes(title_text="bytes", row=2, col=1)
    fig.update_yaxes(title_text="relative error", row=2, col=2)
    fig.update_layout(
        height=900,
        margin=dict(l=70, r=20, t=60, b=60),
        legend=dict(x=1.02, y=1.0, xanchor="left", yanchor="top", font=dict(size=11)),
        hoverlabel=dict(align="left", font=dict(size=11)),
        template="plotly_white",
    )
    return fig
