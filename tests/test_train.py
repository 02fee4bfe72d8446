"""``jfbbench train``: rows, learning, resumption, divergence and bad input."""

import csv

import pytest
from click.testing import CliRunner
from test_imaging import _one_thread_and_cache  # noqa: F401  (autouse fixture: one thread, a private cache)

from jfbbench.cli import main
from jfbbench.problems.weighted_tv import WeightedTV
from jfbbench.train import TrainConfig, Trainer, checkpoint_path, train


def read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def quick(estimator="restarted_jfb", depth=2, **kw):
    return TrainConfig(problem="weighted_tv", estimator=estimator, depth=depth, preset="quick", **kw)


def test_quick_weighted_tv_run_writes_one_row_per_step_and_improves_test_psnr(tmp_path):
    out = tmp_path / "run.csv"
    rows = train(quick(steps=6), out)
    table = read(out)
    assert [int(r["step"]) for r in table] == list(range(7))
    assert len(rows) == 7
    psnr = [float(r["test_psnr"]) for r in table]
    assert psnr[-1] > psnr[0] + 0.3  # the quick preset starts from far too large weights
    ops = [int(r["operator_evals"]) for r in table]
    assert ops == [2 * k for k in range(7)]  # restarted JFB: K operator applications per step
    gaps = [r["grad_gap"] for r in table[1:]]
    assert gaps[0] != "nan" and gaps[2] != "nan" and gaps[1] == "nan"  # step 1, then every gap_every
    assert all(r["status"] == "ok" for r in table)
    assert float(table[-1]["wall_time"]) > 0


def test_deq_gradient_gap_to_itself_is_zero_and_restarted_jfb_keeps_a_state_per_image():
    t = Trainer(quick("deq", steps=2))
    rows = list(t.run())
    assert float(rows[0]["grad_gap"]) < 1e-6
    t = Trainer(quick(steps=3, batch_size=2))
    list(t.run())
    assert len(t.bank) == min(6, t.problem.n_images("train"))


def test_resume_continues_where_the_run_stopped_and_matches_an_uninterrupted_run(tmp_path):
    full = train(quick(steps=5), tmp_path / "full.csv")
    out = tmp_path / "resumed.csv"
    train(quick(steps=2), out)
    assert checkpoint_path(out).exists()
    at_step_2 = checkpoint_path(out).read_bytes()
    # a crash after writing row 3 but before its checkpoint: the row must be redone, not duplicated
    train(quick(steps=3), out)
    checkpoint_path(out).write_bytes(at_step_2)
    assert len(read(out)) == 4
    train(quick(steps=5), out)
    table = read(out)
    assert [int(r["step"]) for r in table] == list(range(6))
    for a, b in zip(table, full, strict=True):
        assert float(a["test_psnr"]) == pytest.approx(b["test_psnr"], abs=1e-4)
        assert int(a["operator_evals"]) == b["operator_evals"]
    # a finished run is not redone
    before = out.read_text()
    train(quick(steps=5), out)
    assert out.read_text() == before


def test_resume_after_a_kill_mid_line_drops_the_partial_row(tmp_path):
    full = train(quick(steps=4), tmp_path / "full.csv")
    out = tmp_path / "cut.csv"
    train(quick(steps=2), out)
    with open(out, "ab") as fh:  # as if the kill had cut the row of step 3 in its first fields
        fh.write(b"weighted_tv,restarted_jfb,2,0,qu")
    train(quick(steps=4), out)
    table = read(out)
    assert [int(r["step"]) for r in table] == list(range(5))
    assert [float(r["test_psnr"]) for r in table] == pytest.approx([r["test_psnr"] for r in full], abs=1e-4)


def test_resume_refuses_a_table_of_another_run(tmp_path):
    out = tmp_path / "run.csv"
    train(quick(steps=1), out)
    with pytest.raises(ValueError, match="different run"):
        train(quick("jfb", steps=1), out)
    with pytest.raises(ValueError, match="other settings"):
        train(quick(steps=2, lr=0.01), out)


def test_a_diverging_operator_is_recorded_and_rows_are_kept(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = WeightedTV.operator

    def exploding(self, x):
        # an expansive affine map 3T + 1 still has a fixed point, which Anderson may find;
        # this one overflows at once
        calls["n"] += 1
        y = original(self, x)
        return y if calls["n"] < 40 else 1e30 * y + 1e30

    monkeypatch.setattr(WeightedTV, "operator", exploding)
    out = tmp_path / "div.csv"
    rows = train(quick("jfb", depth=1, steps=6, max_iter=100), out)
    table = read(out)
    assert len(table) == len(rows) < 7
    assert table[-1]["status"].startswith("diverged")
    assert all(r["status"] == "ok" for r in table[:-1])
    # rerunning does not retry a diverged run, nor crash
    assert len(train(quick("jfb", depth=1, steps=6, max_iter=100), out)) == len(rows)


def test_pnp_fb_and_drunet_fb_quick_presets_run(tmp_path):
    for name in ("pnp_fb", "drunet_fb"):
        rows = train(TrainConfig(problem=name, estimator="restarted_jfb", depth=2, preset="quick"))
        assert rows[-1]["status"] == "ok"
        assert rows[-1]["step"] == len(rows) - 1
        assert rows[0]["rho_estimate"] > 0  # estimated, not guaranteed
    assert float(rows[-1]["test_psnr"]) > 0


def test_cli_train_quick_writes_the_table(tmp_path):
    out = tmp_path / "cli.csv"
    args = ["train", "--problem", "weighted_tv", "--estimator", "jfb", "--depth", "2", "--quick", "--steps", "2"]
    res = CliRunner().invoke(main, [*args, "--out", str(out), "--set", "weights=scalar"])
    assert res.exit_code == 0, res.output
    assert "test PSNR" in res.output
    assert len(read(out)) == 3


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--problem", "tikhonov", "--estimator", "jfb"], ["problem", "tikhonov"]),
        (["--problem", "weighted_tv", "--estimator", "magic"], ["estimator", "magic"]),
        (["--problem", "weighted_tv", "--estimator", "jfb", "--depth", "0"], ["depth", "0"]),
        (["--problem", "weighted_tv", "--estimator", "jfb", "--lr", "-1"], ["lr", "-1"]),
        (["--problem", "weighted_tv", "--estimator", "jfb", "--optimizer", "lbfgs"], ["optimizer", "lbfgs"]),
        (["--problem", "weighted_tv", "--estimator", "jfb", "--set", "patch=8", "--set", "kernel_size=7"], ["patch=8"]),
        (["--problem", "pnp_fb", "--estimator", "jfb", "--set", "tau=5"], ["tau", "5"]),
        (["--problem", "weighted_tv", "--estimator", "jfb", "--set", "oops"], ["KEY=VALUE"]),
        (["--problem", "weighted_tv", "--estimator", "deq", "--adjoint", "dense"], ["adjoint", "dense"]),
    ],
)
def test_cli_train_refuses_bad_input_with_one_line(args, words):
    res = CliRunner().invoke(main, ["train", "--quick", *args])
    assert res.exit_code == 2, res.output
    for w in words:
        assert w in res.output
    assert "Traceback" not in res.output
