"""The ``jfbbench`` command: thin, it parses arguments and calls the modules that do the work."""

from __future__ import annotations

import sys

import click

from .. import __version__
from ._common import MULTI_VALUE_OPTIONS, UsageFailure, expand_multi_values
from .compare import compare_command
from .front import front_command
from .list import list_names
from .plot import plot
from .report import report_command
from .sweep import sweep
from .train import train_command
from .validate import validate_command

__all__ = ["MULTI_VALUE_OPTIONS", "UsageFailure", "entry", "expand_multi_values", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jfbbench")
def main() -> None:
    """Benchmark gradient estimators of equilibrium models: DEQ, unrolling, JFB, restarted JFB."""


for _command in (
    list_names,
    sweep,
    plot,
    front_command,
    train_command,
    validate_command,
    compare_command,
    report_command,
):
    main.add_command(_command)


def entry(argv: list[str] | None = None) -> None:
    """The console script: expands multi-value options, then runs the click group."""
    args = sys.argv[1:] if argv is None else argv
    main.main(args=expand_multi_values(args), prog_name="jfbbench")


if __name__ == "__main__":  # pragma: no cover
    entry()
