"""Sweep figures never average over a setting that varies: each is a panel, a column or a
line style; only seeds are pooled (median and range)."""

import json

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from jfbbench import plots


def table(rows):
    base = dict(problem="affine", lipschitz=0.9, seed=0, estimator="jfb", time_s=1e-3, memory_bytes=100.0)
    out = []
    for r in rows:
        row = {**base, **r}
        row["config"] = json.dumps(row.pop("problem_settings", {}))
        row["estimator_config"] = json.dumps(row.pop("estimator_settings", {}))
        out.append(row)
    return pd.DataFrame(out)


def lines_by_axes(d):
    g = plots.facet_figure(d, "rel_error", "error", "t")
    found = {}
    for key, ax in g.axes_dict.items():
        found[key] = sorted(tuple(np.round(line.get_ydata(), 12)) for line in ax.lines if len(line.get_ydata()) > 1)
    plt.close(g.figure)
    return found


def test_two_values_of_a_problem_setting_give_two_panels_not_one_mean():
    rows = [
        dict(problem_settings={"spectrum": s}, depth=k, rel_error=e)
        for s, errors in (("symmetric", [0.5, 0.25]), ("orthogonal", [0.8, 0.64]))
        for k, e in zip([1, 2], errors, strict=True)
    ]
    found = lines_by_axes(plots.prepare(table(rows)))
    assert found == {
        ("affine · spectrum=symmetric", "ρ = 0.9"): [(0.5, 0.25)],
        ("affine · spectrum=orthogonal", "ρ = 0.9"): [(0.8, 0.64)],
    }


def test_two_values_of_an_estimator_setting_and_of_rho_give_two_lines_and_two_columns():
    rows = [
        dict(lipschitz=rho, estimator_settings={"tol": tol}, depth=k, rel_error=e * rho)
        for rho in (0.5, 0.9)
        for tol, errors in ((1e-4, [0.3, 0.2]), (1e-8, [0.1, 0.01]))
        for k, e in zip([1, 2], errors, strict=True)
    ]
    d = plots.prepare(table(rows))
    assert set(d["setting"]) == {"tol=0.0001", "tol=1e-08"}
    found = lines_by_axes(d)
    assert set(found) == {("affine", "ρ = 0.5"), ("affine", "ρ = 0.9")}
    assert found[("affine", "ρ = 0.5")] == [(0.05, 0.005), (0.15, 0.1)]
    assert found[("affine", "ρ = 0.9")] == [(0.09, 0.009), (0.27, 0.18)]


def test_seeds_are_pooled_into_a_median_and_a_range():
    rows = [
        dict(seed=s, depth=k, rel_error=e)
        for s, errors in ((0, [1.0, 0.5]), (1, [3.0, 1.5]), (2, [2.0, 1.0]))
        for k, e in zip([1, 2], errors, strict=True)
    ]
    d = plots.prepare(table(rows))
    g = plots.facet_figure(d, "rel_error", "error", "t")
    ax = g.axes_dict[("affine", "ρ = 0.9")]
    assert [tuple(line.get_ydata()) for line in ax.lines if len(line.get_ydata()) > 1] == [(2.0, 1.0)]
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.5) and band.max() == pytest.approx(3.0)
    plt.close(g.figure)


def test_columns_by_the_measured_contraction_and_rho_then_a_style():
    rows = [
        dict(lipschitz=rho, rho_loc=loc, spectral_radius=r, depth=1, rel_error=0.1)
        for rho, loc, r in ((0.9, 0.9, 0.9), (0.99, 0.9, 0.45))
    ]
    d = plots.prepare(table(rows), facet="rho_loc")
    assert set(d["column"]) == {"ρ_loc ≈ 0.9"} and set(d["setting"]) == {"ρ=0.9", "ρ=0.99"}
    with pytest.raises(ValueError, match="facet must be one of"):
        plots.sweep_frame(table(rows), facet="rho")


def _line_colours(d):
    """{(y values): colour} of the lines of a one-panel sweep figure."""
    g = plots.facet_figure(d, "rel_error", "error", "t")
    (ax,) = g.axes_dict.values()
    found = {tuple(np.round(line.get_ydata(), 12)): mcolors.to_rgb(line.get_color()) for line in ax.lines}
    plt.close(g.figure)
    return found


def test_an_estimator_has_one_colour_whatever_else_the_figure_shows(tmp_path, monkeypatch):
    jfb_errors = (0.5, 0.25)
    runs = [("deq", (1e-6, 1e-6)), ("jfb", jfb_errors)], [("jfb", jfb_errors), ("unrolled", (0.7, 0.6))]
    colours = []
    for estimators in runs:  # jfb is second of two names in one figure, first in the other
        rows = [
            dict(estimator=e, depth=k, rel_error=v) for e, errs in estimators for k, v in zip([1, 2], errs, strict=True)
        ]
        colours.append(_line_colours(plots.prepare(table(rows)))[jfb_errors])
    assert colours[0] == colours[1]
    summary = pd.DataFrame(
        [dict(panel="p", estimator=e, cost=c, error=0.1, error_q25=0.1, error_q75=0.1, warm_start=True,
              on_front_cost=True, setting=e) for e, c in (("jfb", 1.0), ("unrolled", 2.0))]
    )  # fmt: skip
    captured = []
    original = plt.Axes.errorbar

    def spy(self, *args, **kwargs):
        captured.append(mcolors.to_rgb(kwargs["color"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(plt.Axes, "errorbar", spy)
    plots.plot_front(summary, "cost", tmp_path / "front", formats=("png",))
    assert captured[0] == pytest.approx(colours[0])  # the front's jfb is the sweep's jfb


def test_plug_in_estimators_get_their_own_stable_colours_and_variants_are_shades():
    built_in = set(plots.ESTIMATOR_COLOURS.values())
    assert len(built_in) == len(plots.ESTIMATOR_COLOURS)  # no two built-in estimators share a colour
    alone = plots.estimator_palette(["my_plugin"])["my_plugin"]
    beside = plots.estimator_palette(["jfb", "another_plugin", "my_plugin", "deq"])
    assert alone == beside["my_plugin"] and alone not in built_in
    assert beside["another_plugin"] != beside["my_plugin"]
    shades = plots.estimator_palette(["restarted_jfb (16 restarts)", "restarted_jfb (2 restarts)"])
    assert shades["restarted_jfb (2 restarts)"] == pytest.approx(plots.ESTIMATOR_COLOURS["restarted_jfb"])
    light, dark = np.mean(shades["restarted_jfb (16 restarts)"]), np.mean(shades["restarted_jfb (2 restarts)"])
    assert light > dark  # the later variant is a lighter shade of the same colour
