"""``jfbbench list``: what is registered."""

from __future__ import annotations

import click


@click.command("list")
def list_names() -> None:
    """List the registered problems and estimators."""
    from .. import estimators, problems

    click.echo("problems:   " + ", ".join(problems.names()))
    click.echo("estimators: " + ", ".join(estimators.names()))
