"""One self-contained, interactive HTML page from sweep tables: ``jfbbench report``.

The page holds four plots of one problem at one ρ at a time: the gradient's relative error
against depth, its cost against depth (T + VJP + JVP, seconds with their interquartile range, or peak
memory), the bytes saved for backward against depth, and the error–cost front (median over
seeds, quartile bars, the settings no other beats joined). Controls choose the problem and ρ,
the cost axis, linear or log scales, and which estimators are drawn; hovering a point shows
every column of its row. plotly.js is inlined, so the page opens offline and fetches nothing.

Rows are grouped as :func:`jfbbench.plots.sweep_frame` groups them for the static figures
(nothing that varies is averaged over; seeds are drawn as points with their median as a line);
the front is :func:`jfbbench.front.summarise`'s. Several tables are drawn side by side, each
series named by its table.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import to_hex

from . import environment, front
from .plots import ERROR_FLOOR, estimator_palette, sweep_frame, with_depthless_rows_spread
from .tables import read_table

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
DIV_ID = "jfbbench-report"


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


def _frames(tables: Sequence[str | Path | pd.DataFrame]) -> tuple[pd.DataFrame, list[str], list[dict[str, Any]]]:
    """The tables read and concatenated (with a ``table`` column), their names, and each one's
    recorded environment (:mod:`jfbbench.environment`)."""
    frames, names, envs = [], [], []
    for i, t in enumerate(tables):
        name = f"table {i + 1}" if isinstance(t, pd.DataFrame) else Path(t).name
        df = t.copy() if isinstance(t, pd.DataFrame) else read_table(t)
        missing = [c for c in ("problem", "estimator", "depth", "rel_error") if c not in df.columns]
        if missing:
            raise ValueError(f"{name} is not a sweep table: it lacks {', '.join(missing)}")
        if df.empty:
            raise ValueError(f"{name} has no rows")
        if "status" in df.columns:
            df = df[df["status"].fillna("ok").astype(str) == "ok"]
        if name in names:
            name = f"{name} ({i + 1})"
        names.append(name)
        envs.append(environment.read(t)[-1] if not isinstance(t, pd.DataFrame) and environment.read(t) else {})
        frames.append(df.assign(table=name))
    if not frames:
        raise ValueError("no tables given")
    return pd.concat(frames, ignore_index=True), names, envs


def prepare(tables: Sequence[str | Path | pd.DataFrame]) -> dict[str, Any]:
    """What the page draws: the rows by panel and series (``rows``), the front (``front``),
    the estimators with their colours, the panels (problem -> its ρ labels) and the tables."""
    raw, names, envs = _frames(tables)
    columns = [c for c in raw.columns if c != "table" or len(names) > 1]
    framed = []
    points = []
    for name in names:
        part = raw[raw["table"] == name].reset_index(drop=True)
        d = sweep_frame(part).assign(
            base=part["estimator"].astype(str), table=name, hover=[hover_text(r, columns) for _, r in part.iterrows()]
        )
        pts = front.points_from_sweep(part)
        pts["panel"] = d["panel"] + "\x1f" + d["column"]
        summary = front.summarise(pts)
        summary[["panel", "column"]] = summary["panel"].str.split("\x1f", n=1, expand=True)
        summary["table"] = name
        framed.append(d)
        points.append(summary)
    d = pd.concat(framed, ignore_index=True)
    prefix = (d["table"] + " · ") if len(names) > 1 else ""
    d["series"] = prefix + d["estimator"] + np.where(d["setting"] != "", " · " + d["setting"], "")
    d = with_depthless_rows_spread(d, by="panel")
    d["depth"] = pd.to_numeric(d["depth"], errors="coerce")
    d["rel_error"] = pd.to_numeric(d["rel_error"], errors="coerce").clip(lower=ERROR_FLOOR)
    for c in ("operator_evals", "vjp_evals", "jvp_evals", "time_s", "time_iqr_s", "memory_bytes", "peak_memory_bytes"):
        d[c] = pd.to_numeric(d[c], errors="coerce") if c in d.columns else np.nan
    d["cost"] = d["operator_evals"] + d["vjp_evals"].fillna(0) + d["jvp_evals"].fillna(0)
    fr = pd.concat(points, ignore_index=True)
    fr["series"] = (fr["table"] + " · " if len(names) > 1 else "") + fr["setting"]
    fr["error"] = fr["error"].clip(lower=ERROR_FLOOR)
    estimators = sorted(d["base"].unique())
    # the static figures' colours: one per estimator, shades for its variants (restart counts)
    colours = {k: to_hex(v) for k, v in estimator_palette(estimators).items()}
    shades = {k: to_hex(v) for k, v in estimator_palette(d["estimator"].unique()).items()}
    panels: dict[str, list[str]] = {}
    for (panel, col), _ in d.groupby(["panel", "column"], sort=True):
        panels.setdefault(panel, []).append(col)
    return dict(
        rows=d,
        front=fr,
        shades=shades,
        columns=columns,
        estimators=estimators,
        colours=colours,
        panels=panels,
        tables=names,
        envs=envs,
        n_rows=len(raw),
    )


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


_SCRIPT = """
(function () {
  var gd = document.getElementById(%(div)s);
  var PANELS = %(panels)s, COSTS = %(costs)s;
  function $(id) { return document.getElementById(id); }
  function fillRho() {
    var sel = $("rho"), keep = sel.value;
    sel.innerHTML = "";
    PANELS[$("problem").value].forEach(function (r) {
      var o = document.createElement("option"); o.value = r; o.textContent = r; sel.appendChild(o);
    });
    if (PANELS[$("problem").value].indexOf(keep) >= 0) sel.value = keep;
  }
  function update() {
    var panel = $("problem").value, rho = $("rho").value, cost = $("cost").value, scale = $("scale").value;
    var on = {};
    document.querySelectorAll("input.estimator").forEach(function (e) { on[e.value] = e.checked; });
    var vis = gd.data.map(function (t) {
      var m = t.meta;
      return m.panel === panel && m.rho === rho && (m.est === "" || on[m.est] === true) &&
        (m.cost === null || m.cost === cost);
    });
    Plotly.restyle(gd, {visible: vis});
    var lay = {"yaxis2.title.text": COSTS[cost], "xaxis4.title.text": COSTS[cost], "xaxis4.type": scale,
               "xaxis.type": $("depthscale").value, "xaxis2.type": $("depthscale").value,
               "xaxis3.type": $("depthscale").value};
    ["", "2", "3", "4"].forEach(function (i) {
      lay["yaxis" + i + ".type"] = scale; lay["yaxis" + i + ".autorange"] = true;
      lay["xaxis" + i + ".autorange"] = true;
    });
    Plotly.relayout(gd, lay);
    $("shown").textContent = panel + ", " + rho;
  }
  $("problem").addEventListener("change", function () { fillRho(); update(); });
  ["rho", "cost", "scale", "depthscale"].forEach(function (id) { $(id).addEventListener("change", update); });
  document.querySelectorAll("input.estimator").forEach(function (e) { e.addEventListener("change", update); });
  fillRho();
  update();
})();
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 0.3em 0; }
.controls { display: flex; flex-wrap: wrap; gap: 1.2em; align-items: flex-start; margin: 0.6em 0; }
.controls label { font-weight: 600; margin-right: 0.3em; }
fieldset { border: 1px solid #ccc; padding: 0.3em 0.8em; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; margin: 0 0.3em 0 0.1em; vertical-align: -0.1em; }
.meta { color: #555; font-size: 0.9em; }
"""


def _options(values: Sequence[str], labels: Sequence[str] | None = None) -> str:
    labels = labels or values
    return "".join(
        f'<option value="{html.escape(v)}">{html.escape(lbl)}</option>' for v, lbl in zip(values, labels, strict=True)
    )


def page(data: dict[str, Any], title: str = "jfbbench report") -> str:
    """The whole HTML page: header, controls, the figure (plotly.js inlined) and the script
    that ties them."""
    fig = figure(data)
    plot = fig.to_html(full_html=False, include_plotlyjs=True, div_id=DIV_ID, config=dict(displaylogo=False))
    boxes = "".join(
        f'<label style="font-weight:normal"><input type="checkbox" class="estimator" value="{html.escape(e)}" checked>'
        f'<span class="swatch" style="background:{data["colours"][e]}"></span>{html.escape(e)}</label> '
        for e in data["estimators"]
    )
    tables = []
    for name, env in zip(data["tables"], data["envs"], strict=True):
        made = ", ".join(f"{k} {env[k]}" for k in ("jfbbench", "git_commit", "torch", "cpu", "gpu") if env.get(k))
        tables.append(f"<li>{html.escape(name)}{': ' + html.escape(made) if made else ''}</li>")
    problems = list(data["panels"])
    script = _SCRIPT % dict(
        div=json.dumps(DIV_ID),
        panels=json.dumps(data["panels"]),
        costs=json.dumps({k: v[2] for k, v in COSTS.items()}),
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<div class="meta">{data["n_rows"]} rows from
<ul>{"".join(tables)}</ul>
Lines: the median over seeds; points: every row (hover for all its columns). The front: the
median error over seeds against the median cost of each setting, quartile bars, the settings
that no other beats in both joined in black. Showing <span id="shown"></span>.</div>
<div class="controls">
<div><label for="problem">problem</label><select id="problem">{_options(problems)}</select></div>
<div><label for="rho">ρ</label><select id="rho"></select></div>
<div><label for="cost">cost</label><select id="cost">{
        _options(list(COSTS), ["T + VJP", "seconds", "peak memory"])
    }</select></div>
<div><label for="scale">scale</label><select id="scale">{_options(["log", "linear"])}</select></div>
<div><label for="depthscale">depth axis</label><select id="depthscale">{_options(["linear", "log"])}</select></div>
<fieldset id="estimators"><legend>estimators</legend>{boxes}</fieldset>
</div>
{plot}
<script>{script}</script>
</body></html>
"""


def write(tables: Sequence[str | Path | pd.DataFrame], out: str | Path, title: str | None = None) -> Path:
    """Write the report of ``tables`` (sweep tables: paths or data frames) to ``out``."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"out must be an .html file, got {str(out)!r}")
    data = prepare(tables)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page(data, title or "jfbbench report: " + ", ".join(data["tables"])), encoding="utf-8")
    return out
