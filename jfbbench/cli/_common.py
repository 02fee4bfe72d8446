"""What every subcommand shares: multi-value options and the one-line usage error."""

from __future__ import annotations

import click

#: Options that take several space-separated values (``--depth 1 2 4``); each value is also
#: accepted as a repeated option (``--depth 1 --depth 2``).
MULTI_VALUE_OPTIONS = {
    "--problem", "--lipschitz", "--estimator", "--depth", "--seed", "--restarts", "--dim", "--set", "--restart-depth",
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
