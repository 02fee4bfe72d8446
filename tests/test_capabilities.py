"""``estimators.capabilities``: one answer for what an estimator can do, read by sweeps and
training alike, with one default for a plug-in that declares nothing."""

import pandas as pd
import pytest

from jfbbench import estimators
from jfbbench.estimators.capabilities import DEFAULTS
from jfbbench.sweep import Grid
from jfbbench.training import TrainConfig, grid_runs, train

#: A plug-in that accepts ``warm_start`` (and passes it on to JFB) without declaring
#: ``supports_warm_start``; and one that declares nothing and takes ``**settings``.
PLUGIN = """
from jfbbench.estimators import JFB


class QuietWarm:
    def __init__(self, depth=1, tol=None, max_iter=2000, solver=None, warm_start=False):
        self.inner = JFB(depth=depth, tol=tol, max_iter=max_iter, solver=solver, warm_start=warm_start)

    def gradient(self, problem, state=None):
        return self.inner.gradient(problem, state=state)


def opaque(**settings):
    return JFB(**settings)
"""
NAME = "warmplug:QuietWarm"


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "warmplug.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield NAME
    estimators.refresh()


def test_every_registered_estimator_answers_with_its_declared_attributes():
    for name in estimators.names():
        caps = estimators.capabilities(name)
        cls = estimators.factory(name)
        assert caps.name == name and caps.settings is not None and "depth" in caps.settings
        assert (caps.uses_depth, caps.solves, caps.stateful) == (cls.uses_depth, cls.solves, cls.stateful)
        assert caps.supports_warm_start == (cls.supports_warm_start and "warm_start" in caps.settings)
        assert caps.defaults["depth"] == 1
    deq, unrolled, rjfb = (estimators.capabilities(n) for n in ("deq", "unrolled", "restarted_jfb"))
    assert not deq.uses_depth and deq.solves and deq.supports_warm_start and deq.accepts("adjoint")
    assert unrolled.uses_depth and not unrolled.solves and not unrolled.supports_warm_start
    assert rjfb.stateful and rjfb.accepts("extra_steps") and rjfb.defaults["extra_steps"] == 0


def test_a_plugin_that_declares_nothing_gets_the_defaults(plugin):
    caps = estimators.capabilities(plugin)
    assert caps.accepts("warm_start") and not caps.supports_warm_start
    assert (caps.uses_depth, caps.solves, caps.stateful) == (DEFAULTS["uses_depth"], DEFAULTS["solves"], False)
    assert caps.defaults == dict(depth=1, tol=None, max_iter=2000, solver=None, warm_start=False)
    opaque = estimators.capabilities("warmplug:opaque")
    assert opaque.settings is None and not opaque.accepts("depth") and not opaque.supports_warm_start


def test_an_undeclared_warm_start_is_cold_in_a_sweep_and_in_training_alike(plugin, tmp_path):
    # sweep: the warm_start axis applies to jfb, not to the plug-in (cold, no restarts)
    grid = Grid(["affine"], [0.5], ["jfb", plugin], [1], restarts=[0, 2], configs={"dim": [3]},
                estimator_axes={"warm_start": [True]})  # fmt: skip
    grid.validate()
    by = {}
    for p in grid.points():
        by.setdefault(p.estimator, []).append(p)
    assert {dict(p.estimator_config).get("warm_start") for p in by["jfb"]} == {True}
    assert [(p.estimator_config, p.restarts) for p in by[plugin]] == [((), 0)]
    assert by[plugin][0].columns()["warm_start"] is None
    # training: the same grid of runs makes the plug-in's run cold only
    runs = grid_runs(dict(problem=["weighted_tv"], estimator=["jfb", plugin], warm_start=[True, False]))
    assert sorted((c.estimator, c.warm_start) for c in runs) == [("jfb", False), ("jfb", True), (plugin, False)]
    # asked for alone, warm start is refused by both, before anything is measured
    with pytest.raises(ValueError, match="no estimator of the grid takes the setting 'warm_start'"):
        Grid(["affine"], [0.5], [plugin], [1], estimator_axes={"warm_start": [True]}).validate()
    with pytest.raises(ValueError, match="warm_start applies to estimators that solve for x"):
        TrainConfig("weighted_tv", plugin, warm_start=True, preset="quick").resolved()
    # and its cold training run is jfb's, step for step
    rows = {e: pd.DataFrame(train(TrainConfig("weighted_tv", e, preset="quick", steps=2))) for e in ("jfb", plugin)}
    assert not rows[plugin]["warm_start"].any()
    cols = ["step", "outer_loss", "test_psnr", "operator_evals", "vjp_evals"]
    pd.testing.assert_frame_equal(rows["jfb"][cols], rows[plugin][cols])
