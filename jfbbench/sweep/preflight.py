"""What a sweep checks before it opens its table, so that a bad setting costs nothing: every
axis and setting (:meth:`Grid.validate`); each problem configuration built once (a value its
family refuses, a plug-in factory that builds no problem); each estimator setting built at
each depth (a plug-in factory that builds no estimator); the memory an estimator says one call
holds at least (:meth:`~jfbbench.estimators.Estimator.state_memory_bound`) against the memory
available; and the table it would resume or add to (:func:`check_table`).

Each refusal is a one-line :class:`~jfbbench._validation.ArgumentError` naming the grid's
argument, the value and what is allowed (the command line spells the arguments as its
options)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .. import estimators
from .._journal import GridRecord
from .._validation import ArgumentError
from ..measure import available_memory
from ..tables import check_csv
from . import schema
from .grid import Grid, Point
from .task import build_problem


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _problem_error(point: Point, exc: Exception) -> ArgumentError:
    """The error of a problem configuration its factory refused, naming the setting the
    message names (else the problem)."""
    text = _first_line(exc)
    if not isinstance(exc, ValueError):
        text = f"{type(exc).__name__}: {text}"
    config = dict(point.config)
    named = [k for k in config if re.search(rf"(?<![\w.]){re.escape(k)}(?!\w)", text)]
    if named:
        key = named[0]
        return ArgumentError(
            f"{{configs}}{config[key]}: {text} (problem {point.problem!r})",
            keys={"configs": key},
            configs=f"configs[{key!r}]=",
        )
    settings = ", ".join(f"{k}={v}" for k, v in config.items())
    return ArgumentError(
        f"{{problem}} {point.problem}{f' with {settings}' if settings else ''}: {text}", problem="problems"
    )


def _size(nbytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if nbytes < 1000 or unit == "PB":
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1000
    raise AssertionError  # pragma: no cover


def _estimator(name: str, settings: dict[str, Any]) -> Any:
    try:
        return estimators.make(name, **settings)
    except Exception as exc:  # a plug-in factory may raise anything; a built-in raises ValueError
        text = _first_line(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {_first_line(exc)}"
        given = ", ".join(f"{k}={v}" for k, v in settings.items())
        raise ArgumentError(
            f"{{estimator}} {name}{f' with {given}' if given else ''} cannot be built: {text}", estimator="estimators"
        ) from None


def check_grid(grid: Grid, allow_large_memory: bool = False) -> None:
    """Check ``grid`` before anything is measured or written: its axes and settings, each
    problem configuration built once, each estimator setting built at each depth, and the
    memory bound of each point (refused where it passes the memory available on the grid's
    device, unless ``allow_large_memory``)."""
    grid.validate()
    seen: set[tuple] = set()
    available = available_memory(grid.device)
    for point in grid.points(timing=False):
        if (point.problem, point.config) in seen:
            continue
        seen.add((point.problem, point.config))
        try:
            problem = build_problem(point)
        except Exception as exc:  # a family's refusal, a plug-in's error, an allocation that fails
            raise _problem_error(point, exc) from None
        for name in grid.estimators:
            caps = estimators.capabilities(name)
            for settings in grid._settings_of(name):
                for depth in grid.depths if caps.uses_depth else [None]:
                    config = dict(settings) | ({} if depth is None else {"depth": depth})
                    est = _estimator(name, config)
                    bound = getattr(est, "state_memory_bound", lambda _: None)(problem)
                    if allow_large_memory or bound is None or available is None or bound <= available:
                        continue
                    state = bound // depth if depth else bound
                    raise ArgumentError(
                        f"{{depths}} {depth} with {{estimator}} {name} on {point.problem} keeps at least {depth} "
                        f"states of {_size(state)} = {_size(bound)} in memory, more than the {_size(available)} "
                        f"available on {grid.device}; pass {{allow}} to run it anyway",
                        depths="depths",
                        estimator="estimators",
                        allow="allow_large_memory=True",
                    )


def check_table(out: Path, journal: Path) -> None:
    """Refuse to resume or add to a table that is not a sweep's (its columns), whose rows do
    not have the header's field count, or whose keys do not parse, with the line; and a grid
    record (``<out>.grid.json``) that cannot be read. Reads only."""
    try:
        check_csv(journal, schema.REQUIRED_COLUMNS, "table", partial_last_line=True)
        GridRecord(out).grids()
    except ValueError as exc:
        raise ArgumentError(
            f"cannot resume or add to {{out}}: {_first_line(exc)}; nothing was measured or merged", out="out"
        ) from None
