"""``jfbbench train``: bilevel training of an imaging problem with one gradient estimator."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import click


def _parse_set(items: tuple[str, ...]) -> dict[str, Any]:
    from ._common import UsageFailure

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise UsageFailure(f"--set expects KEY=VALUE (a problem setting), got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


@click.command("train")
@click.option("--problem", required=True, help="weighted_tv, pnp_fb or drunet_fb.")
@click.option("--estimator", required=True, help="Any registered estimator (deq, unrolled, jfb, restarted_jfb, ...).")
@click.option("--depth", default=1, show_default=True, type=int, help="Depth K of the estimator.")
@click.option("--steps", default=None, type=int, help="Outer steps (default: the preset's).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--lr", default=None, type=float, help="Outer learning rate (default: the preset's).")
@click.option("--optimizer", default="adam", show_default=True, help="adam or sgd.")
@click.option("--batch-size", default=None, type=int, help="Training images per outer step.")
@click.option(
    "--gap-every", default=None, type=int, help="Measure the gap to the DEQ gradient every N steps (0: never)."
)
@click.option("--tol", default=None, type=float, help="Forward (and DEQ adjoint) tolerance.")
@click.option(
    "--solver", default="anderson", show_default=True, help="picard, anderson, broyden or auto (forward solves)."
)
@click.option("--adjoint", default="gmres", show_default=True, help="DEQ adjoint solver: gmres, fixed_point or auto.")
@click.option("--device", default=None, help="torch device of the problem, e.g. cuda (default: the problem's, cpu).")
@click.option("--dtype", default=None, help="float32 or float64 (default: the problem's).")
@click.option("--extra-steps", default=0, show_default=True, type=int, help="restarted_jfb: graph-free steps M.")
@click.option("--preset", default="default", show_default=True, help="default or quick.")
@click.option("--quick", is_flag=True, help="Shorthand for --preset quick (seconds; for tests).")
@click.option("--set", "settings", multiple=True, help="A problem setting KEY=VALUE, e.g. --set weights=per_pixel.")
@click.option(
    "--out", default=None, type=click.Path(dir_okay=False, path_type=Path), help="CSV to append rows to (resumable)."
)
@click.option("--threads", default=1, show_default=True, type=int, help="torch intra-op threads.")
def train_command(**kw: Any) -> None:
    """Bilevel training: one gradient per outer step from the chosen estimator; learning
    curves (outer loss, test PSNR, wall time, operator/VJP counts, gap to DEQ) to --out."""
    import torch

    from ..train import TrainConfig, progress_enabled, train
    from ._common import UsageFailure, device_settings

    if kw["threads"] < 1:
        raise UsageFailure(f"--threads must be >= 1, got {kw['threads']}")
    torch.set_num_threads(kw["threads"])
    preset = "quick" if kw["quick"] else kw["preset"]
    config = TrainConfig(
        problem=kw["problem"], estimator=kw["estimator"], depth=kw["depth"], seed=kw["seed"], preset=preset,
        steps=kw["steps"], lr=kw["lr"], optimizer=kw["optimizer"], batch_size=kw["batch_size"],
        gap_every=kw["gap_every"], tol=kw["tol"], solver=kw["solver"], adjoint=kw["adjoint"],
        extra_steps=kw["extra_steps"],
        problem_kwargs=_parse_set(kw["settings"]) | device_settings(kw["device"], kw["dtype"]),
    )  # fmt: skip
    try:
        rows = train(config, kw["out"], progress=progress_enabled())
    except (ValueError, TypeError) as err:
        raise UsageFailure(str(err).splitlines()[0]) from None
    first, last = rows[0], rows[-1]
    click.echo(
        f"{config.problem} {config.estimator} K={config.depth} seed={config.seed}: step {last['step']}, "
        f"test PSNR {float(first['test_psnr']):.2f} -> {float(last['test_psnr']):.2f} dB, "
        f"{float(last['wall_time']):.1f} s, {last['operator_evals']} operator evals, status {last['status']}"
    )
