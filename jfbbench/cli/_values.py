"""Command-line values: ``key=v1,v2`` settings, ``i/n`` shards, and the text of a value."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any


def parse_value(text: str) -> Any:
    """``True``/``False`` (any case of the first letter), an int, a float, or the text itself."""
    if text in ("True", "False", "true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def iter_config_values(pairs: Iterable[str], option: str = "--set") -> Iterator[tuple[str, list[Any]]]:
    """Parse ``key=v1,v2`` strings into (key, [values]) with ints, floats, booleans and strings."""
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"{option} takes key=value[,value...], got {pair!r}")
        key, _, raw = pair.partition("=")
        values = [parse_value(v) for v in raw.split(",") if v != ""]
        yield key.strip(), values


def parse_shard(text: str) -> tuple[int, int]:
    """``--shard i/n`` as (i, n)."""
    try:
        i, n = (int(s) for s in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard i/n needs n >= 1 and 0 <= i < n, got {text!r}")
    return i, n
