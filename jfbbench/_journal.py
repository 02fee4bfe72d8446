"""An append-only CSV table that survives being killed at any moment.

Each row is written as one complete line, flushed and fsync'ed, so a run killed mid-write
(SIGKILL included) leaves at most a partial last line; readers ignore it and the next append
drops it first. Sweeps and training runs both keep their rows this way.

:class:`TableLock` keeps a second process off a table (``<table>.lock``, filelock), and
:class:`GridRecord` remembers which grids wrote a table (``<table>.grid.json``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._validation import ArgumentError


def csv_value(v: Any) -> Any:
    """None as an empty field, floats with every digit (repr)."""
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return v


class CsvJournal:
    """Rows appended to ``path``. ``columns`` fixes the header (an existing file with another
    header is refused); without it the header is the existing file's, or the first row's keys."""

    def __init__(self, path: str | Path, columns: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self.fixed = columns is not None
        self.columns: list[str] | None = list(columns) if columns is not None else self.header()

    def header(self) -> list[str] | None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        with open(self.path, newline="") as f:
            return next(csv.reader(f), None)

    def repair(self) -> None:
        """Drop a partial last line left by a killed run."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def rows(self) -> list[dict[str, str]]:
        """The complete rows (a partial last line is ignored), as strings."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        text = data[: data.rfind(b"\n") + 1].decode()
        return list(csv.DictReader(io.StringIO(text, newline="")))

    def append(self, row: dict[str, Any]) -> None:
        self.repair()
        header = self.header()
        if header is None:
            if self.columns is None:
                self.columns = list(row)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif self.fixed and header != self.columns:
            raise ValueError(f"{self.path} has columns {header}, this run writes {self.columns}")
        else:
            self.columns = header
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n", extrasaction="ignore")
        if header is None:
            writer.writeheader()
        writer.writerow({c: csv_value(row.get(c)) for c in self.columns})
        with open(self.path, "a", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())

    def widen(self) -> None:
        """Give an existing table the columns this run writes that it lacks (its rows keep
        theirs, empty in the new columns)."""
        header = self.header()
        if header is None or self.columns is None or header == self.columns:
            return
        rows = self.rows()
        self.columns = header + [c for c in self.columns if c not in header]
        if self.columns != header:
            self.rewrite(rows)

    def rewrite(self, rows: list[dict[str, Any]]) -> None:
        """Replace the table by ``rows`` atomically (temporary file + rename)."""
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with open(tmp, "w", newline="") as f:
            if self.columns is not None:
                writer = csv.DictWriter(f, self.columns, lineterminator="\n", extrasaction="ignore")
                writer.writeheader()
                writer.writerows({c: csv_value(r.get(c)) for c in self.columns} for r in rows)
        os.replace(tmp, self.path)


class TableBusy(ValueError):
    """Another process holds a table's lock."""


class TableLock:
    """``with TableLock(table):`` holds ``<table>.lock`` (filelock) or refuses at once with a
    one-line :class:`TableBusy` naming the table: one writer per table."""

    def __init__(self, table: str | Path) -> None:
        from filelock import FileLock

        self.table = Path(table)
        self.lock = FileLock(str(self.table) + ".lock")

    def __enter__(self) -> TableLock:
        from filelock import Timeout

        try:
            self.lock.acquire(timeout=0)
        except Timeout:
            raise TableBusy(
                f"another process is writing {self.table} (it holds {self.table}.lock); "
                "wait for it to finish or write another table"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


class GridRecord:
    """The grids that wrote a table, in ``<table>.grid.json``: each grid's settings and a
    digest of its points' keys. :meth:`admit` lets a grid write when the table is empty or
    was made by a grid with the same points; another grid only with ``append`` (then
    recorded beside the first)."""

    def __init__(self, table: str | Path) -> None:
        self.table = Path(table)
        self.path = self.table.with_name(self.table.name + ".grid.json")

    def grids(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        try:
            grids = json.loads(self.path.read_text())["grids"]
            if not isinstance(grids, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                f"{self.path} is not a grid record (JSON with a list of grids); remove it to keep the table's rows "
                "without their grid's record"
            ) from None
        return list(grids)

    def write(self, grids: list[dict[str, Any]]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"grids": grids}, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.path)

    def admit(self, settings: dict[str, Any], keys: Sequence[Any], has_rows: bool, append: bool = False) -> None:
        """``keys``: what identifies the grid's table (its points' keys, its columns)."""
        digest = hashlib.sha256(json.dumps(sorted(map(str, keys))).encode()).hexdigest()
        entry = {"settings": settings, "points": len(keys), "digest": digest}
        grids = self.grids()
        if any(g.get("digest") == digest for g in grids):
            return
        if not has_rows:
            self.write([entry])
            return
        if not append:
            if not grids:
                raise ArgumentError(
                    f"{self.table} holds rows of a grid it does not record (no {self.path.name}); "
                    "pass {append} to add this grid's rows to it, or write another table",
                    append="append=True",
                )
            last = grids[-1].get("settings", {})
            differ = sorted(k for k in set(settings) | set(last) if settings.get(k) != last.get(k)) or ["its points"]
            raise ArgumentError(
                f"{self.table} was made by another grid (differs in {', '.join(differ)}); "
                "pass {append} to add this grid's rows to it, or write another table",
                append="append=True",
            )
        self.write([*grids, entry])
