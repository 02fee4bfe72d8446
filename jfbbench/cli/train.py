"""``jfbbench train``: bilevel training of the problems with training presets (imaging,
classification), one run or a grid of runs."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import click

from ._common import UsageFailure, cluster_options, device_settings, make_cluster


def _parse_set(items: tuple[str, ...], option: str = "--set", what: str = "a problem setting") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise UsageFailure(f"{option} expects KEY=VALUE ({what}), got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


@click.command("train")
@click.option(
    "--problem",
    multiple=True,
    required=True,
    help="A problem with training presets: weighted_tv, pnp_fb, drunet_fb, conv_deq, mondeq, ignn, "
    "recursive_reasoning.",
)
@click.option(
    "--estimator", multiple=True, required=True, help="Any registered estimator (deq, unrolled, jfb, restarted_jfb...)."
)
@click.option("--depth", multiple=True, type=int, help="Depth K of the estimator [default: 1].")
@click.option("--steps", multiple=True, type=int, help="Outer steps (default: the preset's).")
@click.option("--seed", multiple=True, type=int, help="Seeds [default: 0].")
@click.option("--lr", multiple=True, type=float, help="Outer learning rate (default: the preset's).")
@click.option("--optimizer", multiple=True, help="adam or sgd [default: adam].")
@click.option("--batch-size", multiple=True, type=int, help="Training images per outer step.")
@click.option(
    "--gap-every", default=None, type=int, help="Measure the gap to the DEQ gradient every N steps (0: never)."
)
@click.option("--tol", multiple=True, type=float, help="Forward (and DEQ adjoint) tolerance.")
@click.option("--solver", multiple=True, help="picard, anderson, broyden or auto (forward solves) [default: anderson; broyden for shine, which needs it].")
@click.option("--adjoint", multiple=True, help="DEQ adjoint solver: gmres, fixed_point or auto [default: gmres].")
@click.option("--extra-steps", multiple=True, type=int, help="restarted_jfb: graph-free steps M [default: 0].")
@click.option(
    "--deep-supervision",
    multiple=True,
    type=int,
    help="N_sup supervised steps per outer step, each an optimiser step on the same batch from the state the "
    "previous one left [default: 1]; N_sup > 1 runs for the estimators that carry a state (restarted_jfb, trm, "
    "hrm_one_step; deq, jfb, phantom, neumann with --start warm).",
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(["carry", "reset"]),
    help="carry: each sample's state goes on from its last visit [default]; reset: each outer step starts its "
    "batch cold, the state carried between its supervised steps only (as the published recursive models).",
)
@click.option(
    "--estimator-set",
    "estimator_settings",
    multiple=True,
    help="An estimator setting KEY=VALUE, e.g. --estimator-set cycles=3 (trm, hrm_one_step); given to the "
    "estimators that take it.",
)
@click.option(
    "--warm-start",
    is_flag=True,
    help="deq, jfb, phantom, neumann: start each forward (and DEQ adjoint) solve from the sample's last solution.",
)
@click.option(
    "--start",
    multiple=True,
    type=click.Choice(["cold", "warm"]),
    help="cold and/or warm (--start cold warm: both; warm as --warm-start, for the estimators that can).",
)
@click.option(
    "--reference-tol",
    default=1e-8,
    show_default=True,
    type=float,
    help="Tolerance of the float64 DEQ the gradient gap is measured against (<= 1e-8).",
)
@click.option("--device", default=None, help="torch device of the problem, e.g. cuda (default: the problem's, cpu).")
@click.option("--dtype", default=None, help="float32 or float64 (default: the problem's).")
@click.option("--preset", default="default", show_default=True, help="default or quick.")
@click.option("--quick", is_flag=True, help="Shorthand for --preset quick (seconds; for tests).")
@click.option("--set", "settings", multiple=True, help="A problem setting KEY=VALUE, e.g. --set weights=per_pixel.")
@click.option(
    "--out",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV to append rows to (resumable); for several runs a template such as "
    "'runs/{problem}/{estimator}-K{depth}-s{seed}.csv' ({settings}: a digest of every setting) "
    "[default: runs/train/{problem}/{estimator}-{start}-K{depth}-s{seed}-{settings}.csv].",
)
@click.option("--threads", default=None, type=int, hidden=True, help="Deprecated: --threads-per-worker.")
@cluster_options
def train_command(**kw: Any) -> None:
    """Bilevel training: one gradient per outer step from the chosen estimator; learning
    curves (outer loss, test PSNR or accuracy, wall time, operator/VJP counts, gap to DEQ) to --out.
    Every option but --set, --gap-every, --preset and --reference-tol takes several values:
    one run per combination, each its own resumable table, run here or on Dask (--workers,
    --scheduler)."""
    from ..training import Run, grid_runs, out_paths, progress_enabled, train_grid

    threads = kw.pop("threads")
    if threads is not None:  # the deprecated name of --threads-per-worker
        if kw["threads_per_worker"] not in (None, threads):
            raise UsageFailure("give --threads-per-worker only (--threads is its deprecated name)")
        click.echo("--threads is deprecated: use --threads-per-worker", err=True)
        kw["threads_per_worker"] = threads
    cluster = make_cluster(kw)
    preset = "quick" if kw["quick"] else kw["preset"]
    starts = dict.fromkeys([*kw.pop("start"), *(["warm"] if kw.pop("warm_start") else [])])
    kw["warm_start"] = tuple(s == "warm" for s in starts)
    kw["reset_state"] = tuple(s == "reset" for s in dict.fromkeys(kw.pop("states")))
    try:
        configs = grid_runs(
            kw,
            preset=preset,
            gap_every=kw["gap_every"],
            reference_tol=kw["reference_tol"],
            problem_kwargs=_parse_set(kw["settings"]) | device_settings(kw["device"], kw["dtype"]),
            estimator_kwargs=_parse_set(kw["estimator_settings"], "--estimator-set", "an estimator setting"),
        )
        for c in configs:
            c.resolved()
    except (ValueError, TypeError) as err:
        raise UsageFailure(str(err).splitlines()[0]) from None
    try:
        outs = out_paths(kw["out"], configs)
    except ValueError as err:  # the library names the argument, the command line its option
        raise UsageFailure(f"--{err}") from None
    single = len(configs) == 1 and cluster.local
    runs = [Run(c, o, progress=single and progress_enabled()) for c, o in zip(configs, outs, strict=True)]
    try:
        results, summary = train_grid(runs, cluster, progress=False if single else None)
    except ValueError as err:  # the cluster cannot be reached
        raise UsageFailure(str(err).splitlines()[0]) from None
    errors = [r["error"] for r in results.values() if "error" in r]
    if single and errors:
        raise UsageFailure(errors[0].removeprefix("error: ").partition(": ")[2] or errors[0])
    for run in runs:
        c, res = run.config, results.get(run.key())
        head = f"{c.problem} {c.estimator}{' warm' if c.warm_start else ''} K={c.depth} seed={c.seed}"
        head += "".join(f" {k}={v}" for k, v in c.estimator_kwargs.items())
        head += f" N_sup={c.deep_supervision}" if c.deep_supervision != 1 else ""
        head += " reset" if c.reset_state else ""
        if res is None or "error" in res:
            click.echo(f"{head}: {res['error'] if res else 'lost with its worker; rerun to train it'}")
            continue
        if res["metric"] == "psnr":
            metric = f"test PSNR {res['first']:.2f} -> {res['last']:.2f} dB (blurred input {res['baseline']:.2f})"
        else:
            metric = f"test {res['metric']} {res['first']:.4g} -> {res['last']:.4g}"
        click.echo(
            f"{head}: step {res['step']}, {metric}, {float(res['wall_time']):.1f} s, "
            f"{res['operator_evals']} T + {res['vjp_evals']} VJP"
            + (f" + {res['jvp_evals']} JVP" if res.get("jvp_evals") else "")
            + f", status {res['status']}; table {run.out}"
        )
    if errors or summary.lost:
        raise SystemExit(1)
