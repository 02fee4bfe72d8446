"""Sweep figures never average over a setting that varies: each is a panel, a column or a
line style; only seeds are pooled (median and range)."""

import json

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from jfbbench import plots
from jfbbench.plots._style import SPARE_COLOURS


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


def test_a_setting_left_at_its_default_is_named_so_and_variants_keep_their_estimators_colour():
    rows = [
        dict(estimator="deq", estimator_settings=settings, depth=1, rel_error=e)
        for settings, e in (({}, 1e-6), ({"adjoint": "cg"}, 1e-7))
    ]
    d = plots.prepare(table(rows))
    assert set(d["setting"]) == {"adjoint=default", "adjoint=cg"}  # the sweep records no default: never "None"
    labels = ["deq, adjoint=default", "deq, adjoint=cg", "jfb"]
    assert [plots.estimator_of(lab) for lab in labels] == ["deq", "deq", "jfb"]
    styles = plots.estimator_styles(labels)
    deq = sorted((mcolors.to_rgb(styles[lab].colour) for lab in labels[:2]), key=sum)
    # both are deq's: its colour and a paler shade of it, not a plug-in's spare colour
    assert deq[0] == pytest.approx(plots.ESTIMATOR_COLOURS["deq"])
    assert deq[1] != deq[0] and all(deq[1] != pytest.approx(tuple(c)) for c in SPARE_COLOURS)


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


# --- figures a reader can trust: no estimator hides, nothing overlaps, units and spreads drawn ---


def _estimator_lines(ax):
    """{label: Line2D} of the estimator lines of a sweep panel (the lines carry their label as gid)."""
    return {line.get_gid(): line for line in ax.lines if line.get_gid() and ":" not in line.get_gid()}


def _look(line):
    """What tells a line apart: its colour, dash pattern and marker."""
    return (mcolors.to_rgb(line.get_color()), line._unscaled_dash_pattern[1], line.get_marker())


def _sweep_rows(curves, rhos=(0.9,)):
    """Sweep rows from {estimator label: errors at K = 1, 2, 4} (a label's '(m restarts)' sets restarts)."""
    rows = []
    for rho in rhos:
        for lab, errors in curves.items():
            name, _, rest = lab.partition(" (")
            restarts = int(rest.split()[0]) if rest else 0
            for k, e in zip([1, 2, 4], errors(rho) if callable(errors) else errors, strict=True):
                rows.append(dict(lipschitz=rho, estimator=name, restarts=restarts, depth=k, rel_error=e))
    return table(rows)


def test_every_estimator_has_a_visible_line_with_its_own_colour_dash_and_marker():
    same = [0.5, 0.2, 0.05]
    curves = {
        "deq": [1e-9] * 3, "unrolled": same, "jfb": [0.4, 0.1, 0.01], "restarted_jfb (0 restarts)": same,
        "restarted_jfb (8 restarts)": [0.4, 0.1, 0.01], "my_plugin": same,
    }  # fmt: skip
    g = plots.facet_figure(plots.prepare(_sweep_rows(curves)), "rel_error", "error", "t")
    (ax,) = g.axes_dict.values()
    lines = _estimator_lines(ax)
    assert set(lines) == set(curves)
    looks = {lab: _look(line) for lab, line in lines.items()}
    # no two lines share a dash pattern or a marker: each stays told apart where colours coincide
    assert len({dash for _, dash, _ in looks.values()}) == len(looks)
    assert len({marker for _, _, marker in looks.values()}) == len(looks)
    for line in lines.values():
        assert line.get_visible() and len(line.get_xdata()) == 3 and line.get_linewidth() > 0
    # of two equal lines, the one drawn first (lower) is wider and has the larger markers: a halo
    below, above = lines["unrolled"], lines["restarted_jfb (0 restarts)"]
    assert below.get_zorder() <= above.get_zorder() and ax.lines.index(below) < ax.lines.index(above)
    assert below.get_linewidth() > above.get_linewidth() and below.get_markersize() > above.get_markersize()
    # the legend shows each with the same look as its line
    legend = {
        t.get_text().split(" (=")[0].split(" (≈")[0]: h
        for t, h in zip(g._legend.texts, g._legend.legend_handles, strict=True)
    }
    for lab in lines:
        assert (mcolors.to_rgb(legend[lab].get_color()), legend[lab].get_marker()) == (looks[lab][0], looks[lab][2])
    plt.close(g.figure)


def test_coinciding_curves_are_named_in_the_legend_or_in_their_panel():
    curves = {
        "unrolled": lambda rho: [0.5 * rho, 0.2 * rho, 0.05 * rho],
        "restarted_jfb (0 restarts)": lambda rho: [0.5 * rho, 0.2 * rho, 0.05 * rho],  # equal everywhere
        "jfb": lambda rho: [0.3, 0.1, 0.01],
        # within 1 % of jfb at rho = 0.5 only; twice it at rho = 0.9
        "restarted_jfb (8 restarts)": lambda rho: [0.301, 0.1005, 0.0101] if rho == 0.5 else [0.6, 0.2, 0.02],
    }
    g = plots.facet_figure(plots.prepare(_sweep_rows(curves, rhos=(0.5, 0.9))), "rel_error", "error", "t")
    texts = [t.get_text() for t in g._legend.texts]
    assert "restarted_jfb (0 restarts) (= unrolled)" in texts
    assert "jfb" in texts and "restarted_jfb (8 restarts)" in texts  # not the same in every panel
    title = {col: ax.get_title() for (_, col), ax in g.axes_dict.items()}
    assert "restarted_jfb (8 restarts) ≈ jfb" in title["ρ = 0.5"]
    assert title["ρ = 0.9"] == "affine\nρ = 0.9"  # no note where nothing coincides but what the legend says
    plt.close(g.figure)
    # 3 % apart is not "coinciding" (a reader can tell them apart on a log axis)
    x = pd.Series([1.0, 0.1], index=[1, 2])
    assert plots.coinciding({"a": x, "b": x * 1.03}) == {}
    assert plots.coinciding({"a": x, "b": x * 1.01}) == {"b": ("a", False)}
    assert plots.coinciding({"a": x, "b": x.copy()}) == {"b": ("a", True)}


def _captured_sweep_figures(df, monkeypatch, tmp_path):
    """{figure name: Figure} of plot_sweep, kept open."""
    from jfbbench.plots import sweep

    figures = {}
    monkeypatch.setattr(sweep, "save", lambda fig, stem, formats: figures.setdefault(stem.name, fig) and [stem])
    plots.plot_sweep(df, tmp_path, formats=("png",))
    return figures


@pytest.mark.parametrize(("scale", "unit"), [(1.0, "KiB"), (2.0**20, "GiB")])
def test_memory_axis_is_in_the_unit_of_its_magnitude(scale, unit, monkeypatch, tmp_path):
    rows = [
        dict(estimator=e, depth=k, rel_error=0.1, memory_bytes=scale * 3000.0 * k * (1 + i), peak_memory_bytes=None)
        for i, e in enumerate(["jfb", "unrolled"]) for k in (1, 2, 4)
    ]  # fmt: skip
    fig = _captured_sweep_figures(table(rows), monkeypatch, tmp_path)["memory_vs_depth"]
    (ax,) = fig.axes[:1]
    assert f"({unit})" in ax.get_ylabel()
    values = np.concatenate([line.get_ydata() for line in _estimator_lines(ax).values()])
    assert 1 <= np.median(values) < 1024  # the numbers read as 1 to 1000 of that unit
    size = dict(plots.BYTE_UNITS)[unit]
    assert sorted(values * size) == pytest.approx(sorted(r["memory_bytes"] for r in rows))
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert len(labels) >= 2 and not any("times" in t for t in labels)  # never '4 x 10^0'
    plt.close("all")


def test_operator_work_shows_applications_of_t_and_vjps_and_runtime_its_spread(monkeypatch, tmp_path):
    rows = [
        dict(estimator="jfb", depth=k, rel_error=0.1, operator_evals=40 + k, vjp_evals=k, time_s=2e-3 * k,
             time_iqr_s=4e-4 * k)
        for k in (1, 2, 4)
    ]  # fmt: skip
    figures = _captured_sweep_figures(table(rows), monkeypatch, tmp_path)
    work = figures["evals_vs_depth"]
    found = {}
    for ax in work.axes:
        for line in _estimator_lines(ax).values():
            found[ax.get_ylabel()] = tuple(line.get_ydata())
    assert found == {"applications of T per gradient": (41.0, 42.0, 44.0), "VJPs per gradient": (1.0, 2.0, 4.0)}
    time_ax = figures["time_vs_depth"].axes[0]
    assert "(ms)" in time_ax.get_ylabel()
    (bars,) = [c for c in time_ax.collections if (c.get_gid() or "").startswith("spread:")]
    lengths = sorted(abs(seg[1, 1] - seg[0, 1]) for seg in bars.get_segments())
    assert lengths == pytest.approx([0.4, 0.8, 1.6])  # the IQR of each point, in ms
    plt.close("all")


def _front_summary(n):
    """A front of n settings crowded into a small corner, plus one setting off the front."""
    rows = [
        dict(panel="p", estimator=["unrolled", "jfb", "restarted_jfb"][i % 3], cost=2.0 + 0.05 * i,
             error=0.9 - 0.01 * i, warm_start=bool(i % 2), on_front_cost=True, setting=f"setting number {i}")
        for i in range(n)
    ] + [dict(panel="p", estimator="deq", cost=50.0, error=1e-6, warm_start=True, on_front_cost=True,
              setting="deq tol=1e-08")]  # fmt: skip
    summary = pd.DataFrame(rows)
    summary["error_q25"], summary["error_q75"] = summary["error"], summary["error"]
    return summary


def _area(a, b):
    return max(min(a.x1, b.x1) - max(a.x0, b.x0), 0) * max(min(a.y1, b.y1) - max(a.y0, b.y0), 0)


def test_front_labels_do_not_overlap_each_other_nor_the_points_and_the_key_names_every_one():
    from matplotlib.text import Text

    summary = _front_summary(10)
    fig = plots.front_figure(summary, "cost")
    fig.canvas.draw()  # the layout as saved; the labels' boxes measured with the renderer (text only)
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_gid() == "front label"]
    assert sorted(t.get_text() for t in labels) == sorted(str(i) for i in range(1, 12))
    boxes = [Text.get_window_extent(t, renderer) for t in labels]
    assert all(_area(a, b) == 0 for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    frame = ax.get_window_extent(renderer)
    assert all(_area(b, frame) == pytest.approx(b.width * b.height) for b in boxes)  # inside the axes
    points = ax.transData.transform(summary[["cost", "error"]].to_numpy(float))
    assert not any(b.contains(x, y) for b in boxes for x, y in points)
    key = "\n".join(t.get_text() for a in fig.axes for t in a.texts if t.get_gid() != "front label")
    assert all(s in key for s in summary["setting"])
    # the same labels put naively beside their points would overlap: the test is not vacuous
    naive = [ax.annotate(t.get_text(), t.xy, xytext=(3, 3), textcoords="offset points", fontsize=7) for t in labels]
    fig.canvas.draw()
    naive_boxes = [Text.get_window_extent(t, renderer) for t in naive]
    assert any(_area(a, b) > 0 for i, a in enumerate(naive_boxes) for b in naive_boxes[i + 1 :])
    # the legend is outside every panel
    legend = fig.legends[0].get_window_extent(renderer)
    assert all(_area(legend, a.get_window_extent(renderer)) == 0 for a in fig.axes)
    plt.close(fig)


def _validation_rows():
    rows = []
    for k in range(1, 9):
        base = dict(problem="tanh_layer", lipschitz=0.9, seed=0, depth=k, calls=None, status="checked", floor=0.0,
                    checked=True, estimator="jfb")  # fmt: skip
        rows.append({**base, "bound": "B1", "check": "JFB-K error <= ||B|| ||v|| rho^K/(1-rho)",
                     "measured": 0.5 * 0.8**k, "bound_value": 0.9**k, "ratio": 0.5 * (0.8 / 0.9) ** k})  # fmt: skip
        rows.append({**base, "bound": "B4", "check": "JFB-K error <= unrolled error",
                     "measured": 1.2, "bound_value": 1.0, "ratio": 1.2})  # fmt: skip
    return pd.DataFrame(rows)


def test_expected_orderings_are_drawn_apart_from_the_bounds_never_as_violations(monkeypatch, tmp_path):
    from jfbbench.plots import bounds

    figures = {}
    monkeypatch.setattr(bounds, "save", lambda fig, stem, formats: figures.setdefault(stem.name, fig) and [stem])
    plots.plot_bounds(_validation_rows(), tmp_path)
    fig = figures["bound_ratios"]
    where = {}
    for ax in fig.axes:
        for c in ax.collections:
            where.setdefault(c.get_gid(), set()).add(ax)
    bound_axes = where["bound:B1: JFB-K error <= ||B|| ||v|| rho^K/(1-rho)"]
    expected_axes = where["expected:B4: JFB-K error <= unrolled error"]
    assert not bound_axes & expected_axes  # never in the same panel
    red = {ax for ax in fig.axes for line in ax.lines if mcolors.to_rgb(line.get_color()) == (1.0, 0.0, 0.0)}
    assert bound_axes <= red and not expected_axes & red  # the violation line is the bounds' alone
    legend = [t.get_text() for t in fig.legends[0].texts]
    assert any("B4" in t and "not a bound" in t for t in legend)
    plt.close("all")


def test_problems_with_different_rho_sets_draw_no_empty_panel(monkeypatch, tmp_path):
    rows = [
        dict(problem=p, lipschitz=rho, estimator=e, depth=k, rel_error=0.5**k * (1 + i), operator_evals=k,
             vjp_evals=k, peak_memory_bytes=None)
        for p, rhos in (("affine", (0.5, 0.9)), ("pnp_fb", (float("nan"),)), ("tikhonov", (0.9,)))
        for rho in rhos for i, e in enumerate(["jfb", "unrolled"]) for k in (1, 2, 4)
    ]  # fmt: skip
    d = plots.prepare(table(rows))
    g = plots.facet_figure(d, "rel_error", "error", "A title")
    assert g.figure.get_suptitle().startswith("A title\n")
    cells = {("affine", "ρ = 0.5"), ("affine", "ρ = 0.9"), ("pnp_fb", "ρ estimated"), ("tikhonov", "ρ = 0.9")}
    assert set(g.axes_dict) == cells
    assert len(g.figure.axes) == len(cells)  # no axes left over: the estimated rho has no column of its own
    for (panel, column), ax in g.axes_dict.items():
        assert set(_estimator_lines(ax)) == {"jfb", "unrolled"}, (panel, column)
        assert ax.get_title().startswith(f"{panel}\n{column}")
    spec = {key: ax.get_subplotspec() for key, ax in g.axes_dict.items()}
    assert {s.colspan.start for s in spec.values()} == {0, 1}  # two columns, not three
    assert spec[("pnp_fb", "ρ estimated")].colspan.start == 0
    # each panel with no panel under it shows its depths and says what they are
    g.figure.canvas.draw()
    for key in (("affine", "ρ = 0.9"), ("tikhonov", "ρ = 0.9")):
        ax = g.axes_dict[key]
        assert ax.get_xlabel() and any(t.get_visible() and t.get_text() for t in ax.get_xticklabels()), key
    assert not g.axes_dict[("affine", "ρ = 0.5")].get_xlabel()
    plt.close(g.figure)
    # every figure of plot_sweep, the operator work's two rows per problem included
    for name, fig in _captured_sweep_figures(table(rows), monkeypatch, tmp_path).items():
        assert all(_estimator_lines(ax) for ax in fig.axes), name
    plt.close("all")


def test_long_panel_titles_wrap_and_never_touch_their_neighbours():
    from matplotlib.text import Text

    rows = [
        dict(lipschitz=rho, problem_settings=dict(a_first_long_setting=f"value {v}", a_second_long_setting=f"other {v}",
             a_third_setting=v), estimator="jfb", depth=k, rel_error=e)
        for rho in (0.5, 0.9, 0.99) for v in ("x", "y") for k, e in ((1, 0.5), (2, 0.25))
    ]  # fmt: skip
    d = plots.prepare(table(rows))
    assert d["panel"].str.len().min() > 56  # one line of it is wider than a panel
    g = plots.facet_figure(d, "rel_error", "error", "t")
    g.figure.canvas.draw()
    renderer = g.figure.canvas.get_renderer()
    titles = [ax.title for ax in g.axes_dict.values()]
    assert all(max(len(line) for line in t.get_text().split("\n")) <= 56 for t in titles)
    assert all(
        t.get_text().replace("\n", " ").startswith(p) for t, p in zip(titles, [k[0] for k in g.axes_dict], strict=True)
    )
    boxes = [Text.get_window_extent(t, renderer) for t in titles]
    assert plots.boxes_overlap(boxes) == []
    plt.close(g.figure)


def test_a_panel_with_many_coinciding_pairs_keeps_a_short_title_and_lists_them_all_beside_the_figure(tmp_path):
    # pairs a_i / b_i that coincide at rho = 0.5 only: panel notes, not legend suffixes
    rows = []
    for i in range(8):
        for rho in (0.5, 0.9):
            for name, shift in ((f"plug_a{i}", 0.0), (f"plug_b{i}", 0.0 if rho == 0.5 else 0.02)):
                rows += [dict(lipschitz=rho, estimator=name, depth=k, rel_error=(0.1 + 0.05 * i + shift) / k)
                         for k in (1, 2)]  # fmt: skip
    df = table(rows)
    written = plots.plot_sweep(df, tmp_path, formats=("png",))
    sidecar = tmp_path / "error_vs_depth_coinciding.csv"
    assert sidecar in written
    listed = pd.read_csv(sidecar)
    assert sorted(listed["coinciding"]) == sorted(f"plug_b{i} = plug_a{i}" for i in range(8))
    assert set(listed["column"]) == {"ρ = 0.5"}
    # the title holds the first pairs and the count of the others, within its line budget
    d = plots.prepare(df)
    g = plots.facet_figure(d, "rel_error", "error", "t")
    title = g.axes_dict[("affine", "ρ = 0.5")].get_title()
    shown = sum(f"plug_b{i} = plug_a{i}" in title for i in range(8))
    assert 0 < shown < 8 and f"+{8 - shown} more coinciding" in title
    note_lines = [line for line in title.split("\n") if "plug_" in line or "more coinciding" in line]
    assert len(note_lines) <= plots.sweep.NOTE_LINES
    plt.close(g.figure)
    # a figure whose notes fit writes no sidecar (and removes a stale one)
    few = table([r for r in rows if r["estimator"] in ("plug_a0", "plug_b0")])
    assert sidecar not in plots.plot_sweep(few, tmp_path, formats=("png",)) and not sidecar.exists()


def test_ticks_of_a_log_axis_under_a_decade_never_crowd_at_its_top():
    fig, ax = plt.subplots(figsize=(3.2, 2.5))
    ax.set_xscale("log")
    ax.set_xlim(3500, 27000)  # 0.9 decades: evenly spaced round numbers bunch up at the top
    plots.readable_log_axis(ax.xaxis)
    ticks = [t for t in ax.xaxis.get_majorticklocs() if 3500 <= t <= 27000]
    assert len(ticks) >= 3
    gaps = np.diff(np.log10(ticks)) / np.log10(27000 / 3500)
    assert gaps.min() >= 0.15  # no two labels closer than 15 % of the axis
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text() and t.get_visible()]
    assert plots.boxes_overlap(boxes) == []
    plt.close(fig)
