"""The theory's scope per check: a problem whose T is not smooth (relu) has the checks that
assume a smooth T (B4, B5) measured and reported out of scope with the reason, never failed
nor passed; its other checks, and every check of a smooth problem, are judged as before."""

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from jfbbench import plots, problems, theory
from jfbbench.cli import main


class _Tanh:
    """A small tanh layer, smooth; ``declared`` is the rho it claims (true: 0.9)."""

    declared = 0.9

    def __init__(self, lipschitz=None, seed=0, dtype=torch.float64, device="cpu"):
        self._p = problems.make("tanh_layer", lipschitz=0.9, seed=seed, dim=5, input_dim=3, batch=2)
        self.lipschitz = self.declared
        self.config = dict(dim=5)

    def __getattr__(self, name):  # operator, loss, parameters, initial_point: the layer's
        return getattr(self._p, name)


class _Rough(_Tanh):
    smooth = False
    theory_note = "a test's declaration"


class _Overclaimed(_Tanh):
    declared = 0.5  # below the true 0.9: B1 with rho, its premise, B3 and B5 fail


class _RoughOverclaimed(_Overclaimed):
    smooth = False


def registered(name, factory):
    """Register ``factory`` as ``name`` (the registries are restored after each test: conftest)."""
    problems.register(name, overwrite=True)(factory)


def _validate(name, out, *extra):
    args = ["validate", "--problem", name, "--lipschitz", "0.9", "--seed", "0", "--max-depth", "12"]
    result = CliRunner().invoke(main, [*args, "--restart-depth", "2", "--no-plots", "--out", str(out), *extra])
    return result, pd.read_csv(out / "validation.csv.gz"), pd.read_csv(out / "summary.csv")


def test_a_relu_family_declares_itself_not_smooth_and_leaves_b4_b5_out_of_scope():
    for name in ("mondeq", "conv_deq", "ignn"):
        reasons = theory.scope_reasons(problems.factory(name))
        assert set(reasons) == {"B4", "B5"} == set(theory.SMOOTH_PREMISES)
        assert "T not smooth" in reasons["B5"] and "relu" in reasons["B5"] and "start point" in reasons["B5"]
    for name in ("affine", "tanh_layer", "tikhonov", "weighted_tv", "recursive_reasoning"):
        assert theory.scope_reasons(problems.factory(name)) == {}
    # the instance says what its class says
    made = problems.make("mondeq", lipschitz=0.5, width=4, batch=2)
    assert theory.scope_reasons(made) == theory.scope_reasons(problems.factory("mondeq"))


def test_b5_of_a_non_smooth_problem_is_out_of_scope_with_the_reason_and_the_rest_is_checked(tmp_path):
    registered("rough_tanh", _Rough)
    registered("smooth_tanh", _Tanh)
    result, full, summary = _validate("rough_tanh", tmp_path / "rough")
    assert result.exit_code == 0, result.output
    assert "out of scope on rough_tanh (measured, reported, not checked): B4, B5" in result.output
    status = summary.groupby("bound")["status"].agg(set)
    assert status["B5"] == status["B4"] == {theory.OUT_OF_SCOPE}
    assert {"B1", "B2", "B3", "B6"} <= set(status.index) and all(
        theory.OUT_OF_SCOPE not in status[b] for b in ("B1", "B2", "B3", "B6")
    )
    b5 = full[full["bound"] == "B5"]
    assert not b5["checked"].any() and b5["holds"].isna().all() and b5["measured"].notna().all()
    assert b5["note"].str.contains("T not smooth \\(smooth=False\\) \\(a test's declaration\\); B5 assumes").all()
    assert (summary.loc[summary["bound"] == "B5", "checked"] == 0).all()
    # the same layer, smooth: B5 is checked, on the same measurements
    result, smooth_full, smooth_summary = _validate("smooth_tanh", tmp_path / "smooth")
    assert result.exit_code == 0, result.output
    assert set(smooth_summary.loc[smooth_summary["bound"] == "B5", "status"]) == {"pass"}
    smooth_b5 = smooth_full[smooth_full["bound"] == "B5"]
    assert smooth_b5["checked"].sum() > 0
    assert b5["measured"].tolist() == pytest.approx(smooth_b5["measured"].tolist(), rel=1e-9)


def test_a_check_that_fails_still_fails_in_scope_and_out_of_scope_is_no_pass(tmp_path):
    registered("overclaimed_tanh", _Overclaimed)
    registered("rough_overclaimed_tanh", _RoughOverclaimed)
    result, _, summary = _validate("overclaimed_tanh", tmp_path / "smooth")
    assert result.exit_code == 1 and "FAILED" in result.output
    status = summary.set_index(["bound", "check"])["status"]
    assert status[("B5", theory.CHECKS["B5"][0])] == "FAIL"
    assert status[("B3", theory.CHECKS["B3"][0])] == "FAIL"
    # not smooth: B5 is out of scope, but B1 and B3 (which need no smooth T) still fail the run
    result, _, summary = _validate("rough_overclaimed_tanh", tmp_path / "rough")
    assert result.exit_code == 1 and "FAILED" in result.output
    status = summary.set_index(["bound", "check"])["status"]
    assert status[("B5", theory.CHECKS["B5"][0])] == theory.OUT_OF_SCOPE
    assert status[("B3", theory.CHECKS["B3"][0])] == "FAIL"
    assert status[("B1", theory.CHECKS["B1"][2])] == "FAIL"  # rho_loc = 0.9 > declared 0.5


def test_a_stored_validation_table_is_judged_again_as_a_fresh_run_would(tmp_path):
    registered("later_rough", _Tanh)  # measured while it said it was smooth
    _, stored, stored_summary = _validate("later_rough", tmp_path / "stored")
    assert set(stored_summary.loc[stored_summary["bound"] == "B5", "status"]) == {"pass"}
    registered("later_rough", _Rough)  # then it says it is not
    _, fresh, fresh_summary = _validate("later_rough", tmp_path / "fresh")
    rejudged = theory.rescope(stored)
    columns = ["bound", "check", "depth", "calls", "checked", "holds", "status", "note", "measured"]
    pd.testing.assert_frame_equal(
        rejudged[columns].astype(str).reset_index(drop=True), fresh[columns].astype(str).reset_index(drop=True)
    )
    cols = ["bound", "check", "points", "checked", "hold", "status"]
    pd.testing.assert_frame_equal(theory.summarize(rejudged)[cols], fresh_summary[cols])
    # the command does it on the stored file, figures included, without measuring
    out = tmp_path / "again"
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "stored" / "validation.csv.gz"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "out of scope on later_rough" in result.output
    assert pd.read_csv(out / "summary.csv")[cols].equals(fresh_summary[cols])
    assert (out / "bound_ratios.png").stat().st_size > 0
    # a table whose out-of-scope rows were never judged cannot be put back in scope
    registered("later_rough", _Tanh)
    with pytest.raises(ValueError, match="B4, B5 out of scope for 'later_rough', which is now in scope"):
        theory.rescope(fresh)


def test_checks_out_of_scope_are_named_not_drawn_as_points(monkeypatch, tmp_path):
    from jfbbench.plots import bounds

    base = dict(problem="mondeq", lipschitz=0.9, seed=0, estimator="jfb", floor=0.0)
    rows = pd.DataFrame(
        [dict(base, bound="B1", check=theory.CHECKS["B1"][0], depth=k, measured=0.5 * 0.8**k, bound_value=0.9**k,
              ratio=0.5 * (0.8 / 0.9) ** k, checked=True, status="checked") for k in range(1, 5)]
        + [dict(base, bound="B5", check=theory.CHECKS["B5"][0], depth=1, calls=m, measured=1.0, bound_value=0.1,
                ratio=10.0, checked=False, status=theory.OUT_OF_SCOPE) for m in range(2, 5)]
    )  # fmt: skip
    figures = {}
    monkeypatch.setattr(bounds, "save", lambda fig, stem, formats: figures.setdefault(stem.name, fig) and [stem])
    plots.plot_bounds(rows, tmp_path)
    fig = figures["bound_ratios"]
    assert "B5: out of scope" in fig.axes[0].get_title()
    assert not any("B5" in (c.get_gid() or "") for ax in fig.axes for c in ax.collections)
    plt.close("all")
