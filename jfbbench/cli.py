"""The ``jfbbench`` command: thin, it parses arguments and calls the modules that do the work."""

from __future__ import annotations

import click

from . import __version__


class UsageFailure(click.ClickException):
    """A one-line error for bad input: exit code 2, no traceback."""

    exit_code = 2

    def format_message(self) -> str:
        return self.message


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jfbbench")
def main() -> None:
    """Benchmark gradient estimators of equilibrium models: DEQ, unrolling, JFB, restarted JFB."""


@main.command("list")
def list_names() -> None:
    """List the registered problems and estimators."""
    from . import estimators, problems

    click.echo("problems:   " + ", ".join(problems.names()))
    click.echo("estimators: " + ", ".join(estimators.names()))


if __name__ == "__main__":  # pragma: no cover
    main()
