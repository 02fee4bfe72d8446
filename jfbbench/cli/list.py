"""``jfbbench list``: what is registered, and where each name comes from."""

from __future__ import annotations

import click


@click.command("list")
def list_names() -> None:
    """List the problems and estimators with where each comes from: built-in, register() in
    a module, an entry point (distribution and version) or a module path. Any
    package.module:factory on PYTHONPATH also works as a name, without being listed."""
    from .. import estimators, problems

    for title, registry in (("problems", problems), ("estimators", estimators)):
        click.echo(f"{title}:")
        rows = registry.describe()
        width = max((len(name) for name, _ in rows), default=0)
        for name, where in rows:
            click.echo(f"  {name:<{width}}  {where}")
    click.echo("(any package.module:factory on PYTHONPATH works as a name too)")
