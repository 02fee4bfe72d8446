"""What every subcommand shares: multi-value options and the one-line usage error."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import click

#: Options that take several space-separated values (``--depth 1 2 4``); each value is also
#: accepted as a repeated option (``--depth 1 --depth 2``).
MULTI_VALUE_OPTIONS = {
    "--problem", "--lipschitz", "--estimator", "--depth", "--seed", "--restarts", "--dim", "--set", "--restart-depth",
    "--tol", "--extra-steps", "--estimator-set", "--steps", "--lr", "--optimizer", "--batch-size", "--solver",
    "--adjoint", "--start", "--deep-supervision", "--state",
}  # fmt: skip


def expand_multi_values(args: list[str]) -> list[str]:
    """Rewrite ``--depth 1 2 4`` as ``--depth 1 --depth 2 --depth 4`` for click."""
    out: list[str] = []
    current: str | None = None
    for arg in args:
        if arg.startswith("--"):
            current = arg if arg in MULTI_VALUE_OPTIONS else None
            out.append(arg)
        elif current is not None and out[-1] != current:
            out.extend([current, arg])
        else:
            out.append(arg)
    return out


class UsageFailure(click.ClickException):
    """A one-line error for bad input: exit code 2, no traceback."""

    exit_code = 2

    def format_message(self) -> str:
        return self.message


def usage_failure(err: Exception, spellings: Mapping[str, str | Callable[[str], str]] | None = None) -> UsageFailure:
    """A library error as a one-line usage error; an :class:`~jfbbench._validation.ArgumentError`
    spells the arguments it names as the command's options (``spellings``: placeholder -> the
    option, or a function of the placeholder's key)."""
    from .._validation import ArgumentError

    text = err.spelled(spellings or {}) if isinstance(err, ArgumentError) else str(err)
    return UsageFailure(text.strip().splitlines()[0] if text.strip() else type(err).__name__)


def cluster_options(fn):
    """The options that say where a grid's tasks run (see :mod:`jfbbench.runner`)."""
    from ..runner import SCHEDULER_TIMEOUT_S

    options = [
        click.option("--workers", type=int, default=None, help="Run on a local Dask cluster of N worker processes."),
        click.option(
            "--scheduler",
            default=None,
            help=f"Run on an existing Dask cluster (e.g. tcp://host:8786); refused, before anything is measured, "
            f"unless a Dask scheduler answers there within {SCHEDULER_TIMEOUT_S:g} s.",
        ),
        click.option(
            "--scheduler-file",
            type=click.Path(dir_okay=False),
            default=None,
            help="... or the one in this file (dask scheduler --scheduler-file writes it; same timeout).",
        ),
        click.option(
            "--threads-per-worker",
            type=int,
            default=None,
            help="torch threads per task [default: 1], in this process as on Dask (the grid's problems are small; "
            "more threads than free cores slow every task down).",
        ),
        click.option(
            "--retries", type=int, default=2, show_default=True, help="Reruns of a task lost with its worker."
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def make_cluster(kw: dict):
    """The :class:`~jfbbench.runner.Cluster` of the options above (popped from ``kw``)."""
    from ..runner import Cluster

    if kw.get("scheduler_file") is not None and not Path(kw["scheduler_file"]).is_file():
        raise UsageFailure(
            f"--scheduler-file {kw['scheduler_file']!r} does not exist (dask scheduler --scheduler-file writes it)"
        )
    threads = kw.pop("threads_per_worker")
    try:
        return Cluster(
            workers=kw.pop("workers"),
            scheduler=kw.pop("scheduler"),
            scheduler_file=kw.pop("scheduler_file"),
            threads_per_worker=1 if threads is None else threads,
            retries=kw.pop("retries"),
        )
    except ValueError as exc:
        raise UsageFailure(str(exc)) from None


def device_settings(device: str | None, dtype: str | None) -> dict:
    """``--device`` / ``--dtype`` as problem settings (checked here: a one-line error for a
    device that does not exist, or CUDA where there is none)."""
    from .._validation import check_device, check_dtype

    out: dict = {}
    try:
        if device is not None:
            out["device"] = str(check_device(device, "--device"))
        if dtype is not None:
            out["dtype"] = str(check_dtype(dtype, "--dtype")).removeprefix("torch.")
    except ValueError as err:
        raise UsageFailure(str(err)) from None
    return out
