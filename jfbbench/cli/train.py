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
@click.option("--solver", default="anderson", show_default=True, help="picard or anderson (forward solves).")
@click.option("--adjoint", default="gmres", show_default=True, help="DEQ adjoint solver: gmres or fixed_point.")
@click.option("--extra-steps", default=0, show_default=True, type=int, help="restarted_jfb: graph-free steps M.")
@click.option(
    "--warm-start",
    is_flag=True,
    help="deq, jfb, phantom, neumann: start each forward (and DEQ adjoint) solve from the sample's last solution.",
)
@click.option(
    "--reference-tol",
    default=1e-8,
    show_default=True,
    type=float,
    help="Tolerance of the float64 DEQ the gradient gap is measured against (<= 1e-8).",
)
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
    from ._common import UsageFailure

    if kw["threads"] < 1:
        raise UsageFailure(f"--threads must be >= 1, got {kw['threads']}")
    torch.set_num_threads(kw["threads"])
    preset = "quick" if kw["quick"] else kw["preset"]
    config = TrainConfig(
        problem=kw["problem"], estimator=kw["estimator"], depth=kw["depth"], seed=kw["seed"], preset=preset,
        steps=kw["steps"], lr=kw["lr"], optimizer=kw["optimizer"], batch_size=kw["batch_size"],
        gap_every=kw["gap_every"], tol=kw["tol"], solver=kw["solver"], adjoint=kw["adjoint"],
        extra_steps=kw["extra_steps"], warm_start=kw["warm_start"], reference_tol=kw["reference_tol"],
        problem_kwargs=_parse_set(kw["settings"]),
    )  # fmt: skip
    try:
        rows = train(config, kw["out"], progress=progress_enabled())
    except (ValueError, TypeError) as err:
        raise UsageFailure(str(err).splitlines()[0]) from None
    first, last = rows[0], rows[-1]
    warm = " warm" if config.warm_start else ""
    click.echo(
        f"{config.problem} {config.estimator}{warm} K={config.depth} seed={config.seed}: step {last['step']}, "
        f"test PSNR {float(first['test_psnr']):.2f} -> {float(last['test_psnr']):.2f} dB "
        f"(blurred input {float(first['input_psnr']):.2f}), {float(last['wall_time']):.1f} s, "
        f"{last['operator_evals']} T + {last['vjp_evals']} VJP, status {last['status']}"
    )
