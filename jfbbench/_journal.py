"""An append-only CSV table that survives being killed at any moment.

Each row is written as one complete line, flushed and fsync'ed, so a run killed mid-write
(SIGKILL included) leaves at most a partial last line; readers ignore it and the next append
drops it first. Sweeps and training runs both keep their rows this way.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


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

    def rewrite(self, rows: list[dict[str, Any]]) -> None:
        """Replace the table by ``rows`` atomically (temporary file + rename)."""
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with open(tmp, "w", newline="") as f:
            if self.columns is not None:
                writer = csv.DictWriter(f, self.columns, lineterminator="\n", extrasaction="ignore")
                writer.writeheader()
                writer.writerows({c: csv_value(r.get(c)) for c in self.columns} for r in rows)
        os.replace(tmp, self.path)
