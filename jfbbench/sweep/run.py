"""Run a grid into its table: one writer (a lock beside the table), the grid the table records
(a sidecar), the journal a killed run resumes from, and the tasks handed to
:mod:`jfbbench.runner`, whose rows come back to this process to be written."""

from __future__ import annotations

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
from .task import failed_row, measure_task


def check_writable(out: Path) -> None:
    """Refuse an ``out`` that cannot be written, before any measurement is made."""
    if out.suffix not in (".csv", ".parquet"):
        raise ArgumentError(f"{{out}} must end in .csv or .parquet, got {str(out)!r}", out="out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out if out.suffix == ".csv" else journal_path(out), "a"):
            pass
    except OSError as exc:
        raise ArgumentError(f"cannot write {{out}} {str(out)!r}: {exc.strerror}", out="out") from None


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
) -> pd.DataFrame:
    """Run the grid (or one shard of it), appending each row to ``out`` as soon as it is
    measured and skipping rows already present. Returns the whole table. ``cluster`` says
    where the points are measured (default: this process; see :mod:`jfbbench.runner`).

    One process writes a table at a time (a lock beside it; a second one is refused). The
    table records its grid in ``<out>.grid.json``; a different grid is refused unless
    ``append``, which adds its rows (and records it beside the first). A point whose
    measurement raised keeps its row (``status`` = ``error: ...``) and is not measured again,
    unless ``retry_errors``: then the error rows of this grid's points are dropped and
    measured again."""
    grid.validate()
    i, n = check_shard(shard)
    out = Path(out)
    check_writable(out)
    columns = schema.table_columns(grid)
    with TableLock(out):
        journal = CsvJournal(journal_path(out), columns)
        journal.repair()
        points = grid.points(timing, min_run_time)
        record = GridRecord(out)
        spec = grid.record(timing, min_run_time)
        record.admit(spec, [p.key() for p in points] + spec["columns"], bool(journal.rows()), append)
        journal.widen()
        rows = journal.rows()
        if retry_errors:
            mine = {p.key() for p in points}
            kept = [r for r in rows if not (_is_error(r) and schema.row_key(r) in mine)]
            if len(kept) < len(rows):
                journal.rewrite(kept)
                rows = kept
        done = {schema.row_key(r) for r in rows}
        todo = [p for idx, p in enumerate(points) if idx % n == i and p.key() not in done]

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
    table.attrs["summary"] = summary
    return table
