"""Run a grid into its table: one writer (a lock beside the table), the grid the table records
(a sidecar), the journal a killed run resumes from, and the tasks handed to
:mod:`jfbbench.runner`, whose rows come back to this process to be written."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from .. import environment
from .._journal import CsvJournal, GridRecord, TableLock
from .._validation import ArgumentError, check_nonnegative_int, check_positive_int
from ..runner import Cluster, run_tasks
from . import schema
from .grid import Grid
from .preflight import check_grid, check_table
from .task import failed_row, measure_task


def check_writable(out: Path) -> None:
    """Refuse an ``out`` that cannot be written, before any measurement is made (nothing is
    created: the folder that would hold it, or the nearest one that exists, must be writable,
    and so must the table where it exists)."""
    out = Path(out)
    if out.suffix not in (".csv", ".parquet"):
        raise ArgumentError(f"{{out}} must end in .csv or .parquet, got {str(out)!r}", out="out")
    for target in {out, journal_path(out)}:
        if target.is_dir():
            raise ArgumentError(f"{{out}} {str(out)!r} is a folder, not a table", out="out")
        if target.exists() and not os.access(target, os.W_OK):
            raise ArgumentError(f"cannot write {{out}} {str(out)!r}: {target} is not writable", out="out")
    folder = out.absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ArgumentError(f"cannot write {{out}} {str(out)!r}: {folder} is not a writable folder", out="out")


def check_shard(shard: Any) -> tuple[int, int]:
    """``shard`` as (i, n): the points whose index is i modulo n."""
    if not (isinstance(shard, tuple) and len(shard) == 2):
        raise ValueError(f"shard must be a pair (i, n), got {shard!r}")
    i, n = check_nonnegative_int(shard[0], "shard[0]"), check_positive_int(shard[1], "shard[1]")
    if i >= n:
        raise ValueError(f"shard (i, n) needs 0 <= i < n, got {shard!r}")
    return i, n


def journal_path(out: Path) -> Path:
    return out if out.suffix == ".csv" else out.with_name(out.name + ".journal.csv")


def _is_error(row: dict[str, str]) -> bool:
    return str(row.get("status", "")).startswith("error")


def run(
    grid: Grid,
    out: Path,
    shard: tuple[int, int] = (0, 1),
    timing: bool = True,
    min_run_time: float = 0.1,
    progress: bool | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    append: bool = False,
    cluster: Cluster | None = None,
    retry_errors: bool = False,
    allow_large_memory: bool = False,
) -> pd.DataFrame:
    """Run the grid (or one shard of it), appending each row to ``out`` as soon as it is
    measured and skipping rows already present. Returns the whole table. ``cluster`` says
    where the points are measured (default: this process; see :mod:`jfbbench.runner`).

    One process writes a table at a time (a lock beside it; a second one is refused). The
    table records its grid in ``<out>.grid.json``; a different grid is refused unless
    ``append``, which adds its rows (and records it beside the first). A point whose
    measurement raised keeps its row (``status`` = ``error: ...``) and is not measured again,
    unless ``retry_errors``: then the error rows of this grid's points are dropped and
    measured again.

    Before the table is opened, everything is checked and nothing is written until it all
    passes (:mod:`.preflight`): the grid's settings, each problem configuration and estimator
    built once, each point's memory bound against the memory available (unless
    ``allow_large_memory``), ``out`` and the table already there (a foreign or damaged one is
    refused with its line), and the cluster's scheduler. The returned table's ``attrs`` hold
    the runner's ``summary`` and how many of this shard's rows were ``measured`` and
    ``reused``."""
    check_grid(grid, allow_large_memory)
    i, n = check_shard(shard)
    out = Path(out)
    check_writable(out)
    check_table(out, journal_path(out))
    if cluster is not None:
        cluster.check()
    columns = schema.table_columns(grid)
    try:  # the first write: everything above only reads
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArgumentError(f"cannot write {{out}} {str(out)!r}: {exc.strerror}", out="out") from None
    with TableLock(out):
        journal = CsvJournal(journal_path(out), columns)
        points = grid.points(timing, min_run_time)
        record = GridRecord(out)
        spec = grid.record(timing, min_run_time)
        record.admit(spec, [p.key() for p in points] + spec["columns"], bool(journal.rows()), append)
        journal.repair()
        journal.widen()
        rows = journal.rows()
        if retry_errors:
            keys = {p.key() for p in points}
            kept = [r for r in rows if not (_is_error(r) and schema.row_key(r) in keys)]
            if len(kept) < len(rows):
                journal.rewrite(kept)
                rows = kept
        done = {schema.row_key(r) for r in rows}
        mine = [p for idx, p in enumerate(points) if idx % n == i]
        todo = [p for p in mine if p.key() not in done]

        def write(row: dict[str, Any]) -> None:
            journal.append(row)
            if on_row is not None:
                on_row(row)

        summary = run_tasks(todo, measure_task, write, cluster, failed_row, progress=progress, desc="sweep")
        environment.record_run(out, cluster, summary)
        if journal.path.stat().st_size == 0:  # a shard with nothing to measure
            table = pd.DataFrame(columns=columns)
        else:
            table = pd.read_csv(journal.path, dtype={"config": str, "estimator_config": str})
        if out.suffix == ".parquet":
            table.to_parquet(out, index=False)
    table.attrs.update(summary=summary, measured=len(todo), reused=len(mine) - len(todo))
    return table
