"""Reading results tables: a sweep, training or validation table as a pandas DataFrame, with
one check that it holds the columns a reader needs. Every figure and the front read their
tables through here, never from live objects.

A CSV table is checked line by line before it is read (:func:`check_csv`): every row has the
header's field count, and the columns that name a row (problem, seed, depth, the settings'
JSON, ...) parse, so a foreign or damaged file is refused with its line number instead of
being read into NaNs and shifted columns."""

from __future__ import annotations

import csv
import gzip
import json
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pandas as pd


def _integer(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value) and value.is_integer()


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


#: The columns that name a row of each kind of table (a sweep's row key; a training run's
#: settings and step). A table whose header holds every key of a kind has them checked.
TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "sweep": ("problem", "config", "lipschitz", "seed", "estimator", "depth", "restarts", "estimator_config",
              "timing", "min_run_time", "device", "dtype"),
    "training": ("problem", "estimator", "depth", "warm_start", "seed", "step"),
}  # fmt: skip

#: What a field of a key column must hold (``""`` is allowed where the column may be empty):
#: the check, whether it may be empty, and what it allows, for the message.
COLUMN_CHECKS: dict[str, tuple[Callable[[str], bool], bool, str]] = {
    "problem": (bool, False, "a problem name"),
    "estimator": (bool, False, "an estimator name"),
    "seed": (_integer, False, "an integer"),
    "restarts": (_integer, False, "an integer"),
    "depth": (_integer, True, "an integer or empty"),
    "lipschitz": (_number, True, "a number or empty"),
    "min_run_time": (_number, True, "a number or empty"),
    "tol": (_number, True, "a number or empty"),
    "config": (_json_object, False, "a JSON object of settings"),
    "estimator_config": (_json_object, False, "a JSON object of settings"),
    "timing": (lambda t: t in ("True", "False"), False, "True or False"),
    "warm_start": (lambda t: t in ("True", "False"), True, "True, False or empty"),
    "step": (_integer, False, "an integer"),
    "device": (bool, False, "a device name"),
    "dtype": (bool, False, "a dtype name"),
}


def _lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        yield from f


def check_csv(
    path: str | Path, required: Sequence[str] = (), what: str = "table", partial_last_line: bool = False
) -> list[str] | None:
    """Refuse a CSV table a reader would misread, with a one-line ValueError naming the file
    and the line: a header with an empty or repeated column, or without the ``required``
    columns; a row with another field count than the header; a key column
    of the table's kind (:data:`TABLE_KEYS`, :data:`COLUMN_CHECKS`) whose field does not parse. ``partial_last_line``: a last line
    without its newline (left by a killed writer, dropped on resume) is not checked. Returns
    the header (None for an empty file)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return None
    lines = _lines(path)
    if partial_last_line:
        lines = (line for line in lines if line.endswith("\n"))
    rows = csv.reader(lines)
    try:
        header = next(rows, None)
    except (csv.Error, UnicodeDecodeError, OSError) as exc:
        raise ValueError(f"{what} {str(path)!r} line 1: not a CSV table ({exc})") from None
    if header is None:
        return None
    bad = [c for c in header if not c.strip()] or sorted({c for c in header if header.count(c) > 1})
    missing = [c for c in required if c not in header]
    if bad or missing:
        why = f"repeated or empty column names {bad}" if bad else f"lacks the columns {', '.join(missing)}"
        raise ValueError(f"{what} {str(path)!r} line 1: not a jfbbench table's header ({why})")
    keys = next((k for k in TABLE_KEYS.values() if set(k) <= set(header)), ())
    checks = [(i, c, *COLUMN_CHECKS[c]) for i, c in enumerate(header) if c in keys and c in COLUMN_CHECKS]
    try:
        for fields in rows:
            line = rows.line_num
            if len(fields) != len(header):
                raise ValueError(
                    f"{what} {str(path)!r} line {line}: {len(fields)} fields, the header has {len(header)}"
                )
            for i, column, ok, may_be_empty, allowed in checks:
                text = fields[i]
                if not ((may_be_empty and text == "") or ok(text)):
                    raise ValueError(f"{what} {str(path)!r} line {line}: {column} {text!r} is not {allowed}")
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} {str(path)!r} line {rows.line_num}: not CSV ({exc})") from None
    return header


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a results table (.csv, .csv.gz or .parquet); a CSV is checked first
    (:func:`check_csv`), and a CSV without rows is refused (nothing to read from it)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"table {str(path)!r} does not exist")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv" or path.name.endswith(".csv.gz"):
        check_csv(path)
        try:
            df = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise ValueError(f"table {str(path)!r} is empty") from None
        if df.empty:
            raise ValueError(f"table {str(path)!r} has no rows (only its header)")
        return df
    raise ValueError(f"table must be a .csv, .csv.gz or .parquet file, got {str(path)!r}")


def require_columns(df: pd.DataFrame, columns: Sequence[str], what: str = "table") -> None:
    """Raise a ValueError naming the missing columns (and those present) unless ``df`` has
    every one of ``columns`` and at least one row."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks the columns {', '.join(missing)} (has: {', '.join(map(str, df.columns))})")
    if df.empty:
        raise ValueError(f"{what} has no rows")
