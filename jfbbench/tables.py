"""Reading results tables: a sweep, training or validation table as a pandas DataFrame, with
one check that it holds the columns a reader needs. Every figure and the front read their
tables through here, never from live objects."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a results table (.csv, .csv.gz or .parquet)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"table {str(path)!r} does not exist")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv" or path.name.endswith(".csv.gz"):
        try:
            return pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise ValueError(f"table {str(path)!r} is empty") from None
    raise ValueError(f"table must be a .csv, .csv.gz or .parquet file, got {str(path)!r}")


def require_columns(df: pd.DataFrame, columns: Sequence[str], what: str = "table") -> None:
    """Raise a ValueError naming the missing columns (and those present) unless ``df`` has
    every one of ``columns`` and at least one row."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks the columns {', '.join(missing)} (has: {', '.join(map(str, df.columns))})")
    if df.empty:
        raise ValueError(f"{what} has no rows")
