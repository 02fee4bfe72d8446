"""``jfbbench report``: one offline HTML page that renders in a real headless browser, names
every estimator of the table in its DOM, and shows every column of a row on hover."""

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from jfbbench import report
from jfbbench.cli import main
from jfbbench.sweep import Grid, run

ESTIMATORS = ["deq", "jfb", "unrolled", "restarted_jfb"]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A small sweep: two problems, two rho, two seeds, restarted JFB at 0 and 2 restarts."""
    out = tmp_path_factory.mktemp("report") / "sweep.csv"
    grid = Grid(["affine", "tikhonov"], [0.5, 0.9], ESTIMATORS, [1, 2, 4], seeds=[0, 1], restarts=[0, 2],
                configs={"dim": [5]})  # fmt: skip
    run(grid, out, timing=True, min_run_time=0.005, progress=False)
    return out


@pytest.fixture(scope="module")
def page(table, tmp_path_factory):
    out = tmp_path_factory.mktemp("page") / "report.html"
    res = CliRunner().invoke(main, ["report", str(table), "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out


def browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def headless(url_path, *args, tmp_path):
    exe = browser()
    if exe is None:
        pytest.skip("no headless browser: install Debian's chromium (apt-get install -y chromium)")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", *args, url_path.as_uri()]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def test_page_is_self_contained(page):
    text = page.read_text(encoding="utf-8")
    assert len(text) > 2_000_000  # plotly.js inlined
    assert not re.search(r"""<script[^>]+src=|<link[^>]+href=["']?https?:""", text)  # nothing to fetch
    for name in ESTIMATORS:
        assert f'value="{name}"' in text  # a control per estimator


def test_page_renders_in_headless_chromium(page, tmp_path):
    res = headless(page, "--dump-dom", tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    assert dom.count('class="main-svg"') >= 2  # plotly drew its SVG layers
    # the page's script ran: the rho control was filled for the first problem, the shown panel named
    assert '<option value="ρ = 0.9">' in dom and '<span id="shown">affine, ρ = 0.5</span>' in dom
    assert len(re.findall(r'class="scatterlayer', dom)) >= 4  # the four plots hold traces
    legend = re.findall(r'class="legendtext"[^>]*>([^<]*)<', dom)
    for name in ESTIMATORS:
        assert any(t.startswith(name) for t in legend), (name, legend)  # every estimator in the legend
    assert "restarted_jfb (2 restarts)" in legend and "restarted_jfb (0 restarts)" in legend
    shot = tmp_path / "shot.png"
    res = headless(page, f"--screenshot={shot}", "--window-size=1400,1200", tmp_path=tmp_path)
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    not_white = (pixels < 240).any(axis=1).mean()
    colours = len(np.unique(pixels, axis=0))
    assert not_white > 0.03 and colours > 100, (not_white, colours)  # drawn, not a blank page


def test_hover_shows_every_setting_of_the_row(table):
    df = pd.read_csv(table)
    data = report.prepare([table])
    fig = report.figure(data)
    row = df[(df.estimator == "restarted_jfb") & (df.depth == 2) & (df.restarts == 2) & (df.seed == 1)
             & (df.problem == "tikhonov") & (df.lipschitz == 0.9)].iloc[0]  # fmt: skip
    texts = [t for tr in fig.data if tr.hovertext is not None for t in tr.hovertext]
    expected = [f"{c}: {report._fmt(row[c])}" for c in df.columns if pd.notna(row[c]) and str(row[c]) not in ("", "{}")]
    assert len(expected) > 25
    matches = [t for t in texts if all(e in t.split("<br>") for e in expected)]
    assert matches, expected


def test_two_tables_are_told_apart(table, tmp_path):
    other = tmp_path / "other.csv"
    pd.read_csv(table).to_csv(other, index=False)
    data = report.prepare([table, other])
    assert data["tables"] == ["sweep.csv", "other.csv"]
    series = set(data["rows"]["series"])
    assert any(s.startswith("sweep.csv · jfb") for s in series) and any(s.startswith("other.csv · jfb") for s in series)


def test_every_trace_is_tagged_and_one_panel_is_shown_first(table):
    fig = report.figure(report.prepare([table]))
    panels = {(t.meta["panel"], t.meta["rho"]) for t in fig.data}
    assert panels == {(p, f"ρ = {r}") for p in ("affine", "tikhonov") for r in (0.5, 0.9)}
    shown = {(t.meta["panel"], t.meta["rho"]) for t in fig.data if t.visible}
    assert len(shown) == 1
    assert {t.meta["cost"] for t in fig.data} == {None, "cost", "seconds", "memory"}


def test_bad_input_is_one_line(table, tmp_path):
    res = CliRunner().invoke(main, ["report", str(table), "--out", str(tmp_path / "r.png")])
    assert res.exit_code == 2 and "out must be an .html file" in res.output
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"a": [1]}).to_csv(bad, index=False)
    res = CliRunner().invoke(main, ["report", str(bad), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "not a sweep table" in res.output


def test_coinciding_lines_are_said_in_the_legend(table):
    """Restarted JFB's first call is unrolling from the cold start: the same errors, so the
    legend of the line drawn on top names the one it hides."""
    data = report.prepare([table])
    same = report.coincident(data["rows"])
    for problem in ("affine", "tikhonov"):
        for rho in ("ρ = 0.5", "ρ = 0.9"):
            assert same[(problem, rho, "unrolled")] == "restarted_jfb (0 restarts)"
            assert (problem, rho, "jfb") not in same
    names = {t.name for t in report.figure(data).data if t.showlegend}
    assert "unrolled (error as restarted_jfb (0 restarts))" in names
