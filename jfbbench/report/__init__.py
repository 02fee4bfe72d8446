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
series named by its table. The figure is :mod:`jfbbench.report.traces`'s.
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

from .. import environment, front
from ..plots import ERROR_FLOOR, estimator_palette, sweep_frame, with_depthless_rows_spread
from ..tables import read_table
from .traces import COSTS, DASHES, SYMBOLS, coincident, figure, hover_text
from .traces import _fmt as _fmt

__all__ = [
    "COSTS", "DASHES", "DIV_ID", "SYMBOLS", "coincident", "figure", "hover_text", "page", "prepare", "write",
]  # fmt: skip

DIV_ID = "jfbbench-report"


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
