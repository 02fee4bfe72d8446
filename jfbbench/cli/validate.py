"""``jfbbench validate``: check the bounds B1-B6 numerically (:mod:`jfbbench.theory`)."""

from __future__ import annotations

import math
from pathlib import Path

import click

#: The full validation table (gzip-compressed CSV: pandas.read_csv reads it as is).
FULL_TABLE = "validation.csv.gz"


@click.command("validate")
@click.argument("table", required=False, type=click.Path(path_type=Path))
@click.option("--problem", "problem_names", multiple=True, help="Problems (default: every registered one).")
@click.option("--lipschitz", multiple=True, type=float, help="Contraction factors rho (default: 0.5 0.9 0.99).")
@click.option("--seed", multiple=True, type=int, help="Seeds (default: 0 1).")
@click.option("--max-depth", default=64, show_default=True, type=int, help="Depths K = 1..max-depth.")
@click.option(
    "--restart-depth", multiple=True, type=int, help="Depths of the restart sequences of B5 (default: 1 2 4 8)."
)
@click.option("--set", "settings", multiple=True, help="Problem settings as key=value (e.g. spectrum=nonnormal).")
@click.option("--device", default=None, help="torch device of the problems, e.g. cuda (default: cpu).")
@click.option("--dtype", default=None, help="float32 or float64 (default: each problem's).")
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("runs/validation"), show_default=True, help="A folder."
)
@click.option("--format", "formats", multiple=True, default=("png",), show_default=True, help="Figure formats.")
@click.option("--no-plots", is_flag=True, help="Write the tables only.")
@click.option("--progress", is_flag=True, help="Print each configuration as it starts.")
@click.pass_context
def validate_command(
    ctx,
    table,
    problem_names,
    lipschitz,
    seed,
    max_depth,
    restart_depth,
    settings,
    device,
    dtype,
    out,
    formats,
    no_plots,
    progress,
):
    """Check the bounds B1-B6 (gradient errors, forward iterates, memory against K): on a grid
    (every registered problem, rho in 0.5 0.9 0.99, seeds 0 1, K = 1..64), or on an existing
    sweep TABLE. A validation TABLE (validation.csv.gz of an earlier run) is judged again
    without measuring: the checks its problems' families leave out of scope (B4 and B5 where
    T is not smooth) are marked so, and the summary and figures redrawn.

    Writes OUT/validation.csv.gz (one row per bound, problem, rho, seed and K), OUT/summary.csv
    and the figures (with a sweep TABLE, also the sweep's figures, B1's bound drawn on the error
    one), prints the summary, and exits with 1 when a bound fails where its
    assumptions hold (problems outside the theory and checks out of scope are reported, never
    counted as passes).
    """
    from .. import plots, theory
    from .._validation import check_lipschitz, check_positive_int
    from ._common import UsageFailure, device_settings
    from ._values import parse_value

    config = device_settings(device, dtype)
    try:
        if table is not None and (problem_names or lipschitz or seed or restart_depth or settings or config):
            raise ValueError(
                "give either a sweep TABLE or grid options (--problem/--lipschitz/--seed/--set/--device/--dtype), not both"
            )
        for item in settings:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"--set takes key=value, got {item!r}")
            config[key.strip()] = parse_value(value)
        check_positive_int(max_depth, "--max-depth")
        for rho in lipschitz:
            check_lipschitz(rho)
        bad = [k for k in restart_depth if k < 1 or k > max_depth]
        if bad:
            raise ValueError(f"--restart-depth must lie in 1..{max_depth} (--max-depth), got {bad[0]}")
        if problem_names:
            from .. import problems

            for name in problem_names:
                problems.factory(name)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"cannot create --out {str(out)!r}: {exc.strerror}") from None
        sweep_table = plots.read_table(table) if table is not None else None
        if sweep_table is not None and plots.is_validation_table(sweep_table):
            full, sweep_table = theory.rescope(sweep_table), None
        elif sweep_table is not None:
            full = theory.check_table(sweep_table)
        else:
            full = theory.run_grid(
                problem_names or None,
                lipschitz=list(lipschitz) or theory.DEFAULT_LIPSCHITZ,
                seeds=list(seed) or theory.DEFAULT_SEEDS,
                depths=range(1, max_depth + 1),
                restart_depths=list(restart_depth) or [k for k in theory.DEFAULT_RESTART_DEPTHS if k <= max_depth],
                config=config,
                progress=progress,
            )
    except ValueError as exc:
        raise UsageFailure(str(exc)) from None
    summary = theory.summarize(full)
    full.to_csv(out / FULL_TABLE, index=False, float_format="%.10g")
    summary.to_csv(out / "summary.csv", index=False)
    click.echo(theory.format_summary(summary))
    if not no_plots:
        written = plots.plot_bounds(full, out, formats=formats)
        if sweep_table is not None:  # the sweep's own figures, B1 drawn on the error one
            written += plots.plot_sweep(sweep_table, out, formats=formats, bounds=full)
        for path in written:
            click.echo(str(path))
    click.echo(f"tables: {out / FULL_TABLE}, {out / 'summary.csv'}")
    failing = summary[summary["status"].isin(["FAIL", "error"])]
    outside = summary.loc[summary["status"] == theory.OUTSIDE, "problem"].unique()
    if len(outside):
        click.echo(f"outside the theory (reported, not checked): {', '.join(map(str, outside))}")
    scoped = summary[summary["status"] == theory.OUT_OF_SCOPE].groupby("problem")["bound"].unique()
    for problem, bounds in scoped.items():
        click.echo(f"out of scope on {problem} (measured, reported, not checked): {', '.join(sorted(bounds))}")
    if len(failing):
        listed = ", ".join(
            f"{r.bound} {r.problem} rho={r.rho:g}"
            if isinstance(r.rho, float) and not math.isnan(r.rho)
            else f"{r.bound} {r.problem}"
            for r in failing.itertuples()
        )
        click.echo(f"FAILED: {len(failing)} bound checks do not hold: {listed}", err=True)
        ctx.exit(1)
    click.echo("every bound holds where its assumptions hold")
