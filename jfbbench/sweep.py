"""A grid of (problem configuration x estimator x depth x restarts x seed) -> a tidy table, one
row per measurement, written as soon as it is measured.

Resumable: rows are appended to a CSV journal with flush + fsync, one complete line at a time;
a run killed at any moment (SIGKILL included) leaves at most a partial last line, which the
next run drops before skipping the rows already present. ``--out`` may be ``.parquet``: the
journal is then ``<out>.journal.csv`` and the Parquet file is rewritten from it at the end.

Shardable: ``shard=(i, n)`` keeps the grid points whose index is i modulo n, so shards can be
run independently (by hand or by a distributed engine) and their tables concatenated.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from . import estimators, problems
from ._journal import CsvJournal
from ._validation import check_depth, check_device, check_dtype, check_lipschitz, check_nonnegative_int
from .measure import measure, reference_gradient

#: The key of a row: the settings that identify one measurement.
KEY_COLUMNS = ["problem", "config", "lipschitz", "seed", "estimator", "depth", "restarts", "device", "dtype"]
#: Columns every sweep table has (plots and validation rely on them).
REQUIRED_COLUMNS = KEY_COLUMNS + [
    "rel_error",
    "cosine",
    "time_s",
    "time_iqr_s",
    "memory_bytes",
    "peak_memory_bytes",
    "operator_evals",
    "vjp_evals",
    "converged",
]

DEFAULT_GRID = dict(
    problems=["affine", "tanh_layer", "tikhonov"],
    lipschitz=[0.5, 0.9, 0.99],
    estimators=["deq", "unrolled", "jfb", "restarted_jfb"],
    depths=[1, 2, 4, 8, 16, 32, 64],
    seeds=[0],
    restarts=[0, 8],
)


@dataclass(frozen=True)
class Point:
    """One grid point: everything needed to rebuild the problem and the estimator."""

    problem: str
    config: tuple[tuple[str, Any], ...]
    lipschitz: float
    seed: int
    estimator: str
    depth: int | None
    restarts: int
    device: str
    dtype: str

    def config_json(self) -> str:
        return json.dumps(dict(self.config), sort_keys=True)

    def key(self) -> tuple:
        return (
            self.problem,
            self.config_json(),
            repr(float(self.lipschitz)),
            str(self.seed),
            self.estimator,
            "" if self.depth is None else str(self.depth),
            str(self.restarts),
            self.device,
            self.dtype,
        )

    def problem_key(self) -> tuple:
        return self.key()[:4] + self.key()[7:]


@dataclass
class Grid:
    problems: Sequence[str]
    lipschitz: Sequence[float]
    estimators: Sequence[str]
    depths: Sequence[int]
    seeds: Sequence[int] = (0,)
    restarts: Sequence[int] = (0,)
    configs: dict[str, Sequence[Any]] = field(default_factory=dict)
    device: str = "cpu"
    dtype: str = "float64"
    estimator_config: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        for what, values in [
            ("problem", self.problems),
            ("lipschitz", self.lipschitz),
            ("estimator", self.estimators),
            ("depth", self.depths),
            ("seed", self.seeds),
            ("restarts", self.restarts),
        ]:
            if not values:
                raise ValueError(f"the grid is empty: give at least one {what}")
        for p in self.problems:
            problems.factory(p)  # registered, entry point or package.module:factory; else a one-line error
        for e in self.estimators:
            estimators.factory(e)
        for r in self.lipschitz:
            check_lipschitz(r)
        for k in self.depths:
            check_depth(k)
        for m in self.restarts:
            check_nonnegative_int(m, "restarts")
        check_dtype(self.dtype)
        check_device(self.device)
        for key, values in self.configs.items():
            if not values:
                raise ValueError(f"the grid is empty: --set {key}= has no values")

    def points(self) -> list[Point]:
        """Every grid point, in a fixed order. ``depth`` is None for estimators that take no
        depth (``deq``); ``restarts`` varies only for stateful estimators."""
        keys = sorted(self.configs)
        out: list[Point] = []
        for prob, values, rho, seed in itertools.product(
            self.problems, itertools.product(*(self.configs[k] for k in keys)), self.lipschitz, self.seeds
        ):
            config = tuple(zip(keys, values, strict=True))
            for name in self.estimators:
                cls = estimators.factory(name)
                uses_depth = getattr(cls, "uses_depth", True)
                stateful = getattr(cls, "stateful", False)
                for depth in self.depths if uses_depth else [None]:
                    for m in self.restarts if stateful else [0]:
                        out.append(
                            Point(prob, config, float(rho), int(seed), name, depth, int(m), self.device, self.dtype)
                        )
        return out


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(s) for s in text.split("/"))
    except ValueError:
        raise ValueError(f"shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard i/n needs n >= 1 and 0 <= i < n, got {text!r}")
    return i, n


def check_writable(out: Path) -> None:
    """Refuse an --out that cannot be written, before any measurement is made."""
    if out.suffix not in (".csv", ".parquet"):
        raise ValueError(f"--out must end in .csv or .parquet, got {str(out)!r}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out if out.suffix == ".csv" else journal_path(out), "a"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot write --out {str(out)!r}: {exc.strerror}") from None


def journal_path(out: Path) -> Path:
    return out if out.suffix == ".csv" else out.with_name(out.name + ".journal.csv")


def config_columns(grid: Grid) -> list[str]:
    return sorted(grid.configs)


def table_columns(grid: Grid) -> list[str]:
    measured = [
        "rel_error",
        "abs_error",
        "cosine",
        "ref_grad_norm",
        "time_s",
        "time_iqr_s",
        "time_repeats",
        "memory_bytes",
        "peak_memory_bytes",
        "rss_growth_bytes",
        "operator_evals",
        "vjp_evals",
        "forward_residual",
        "converged",
        "reference_converged",
        "warning",
        "declared_lipschitz",
        "extra_steps",
        "elapsed_s",
    ]
    return KEY_COLUMNS + config_columns(grid) + measured


def run(
    grid: Grid,
    out: Path,
    shard: tuple[int, int] = (0, 1),
    timing: bool = True,
    min_run_time: float = 0.1,
    progress: bool | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> pd.DataFrame:
    """Run the grid (or one shard of it), appending each row to ``out`` as soon as it is
    measured and skipping rows already present. Returns the whole table."""
    grid.validate()
    out = Path(out)
    check_writable(out)
    columns = table_columns(grid)
    journal = CsvJournal(journal_path(out), columns)
    journal.repair()
    done = {tuple(r[c] for c in KEY_COLUMNS) for r in journal.rows()}
    i, n = shard
    todo = [p for idx, p in enumerate(grid.points()) if idx % n == i and p.key() not in done]
    if progress is None:
        progress = sys.stderr.isatty()
    from tqdm.auto import tqdm

    references: dict[tuple, Any] = {}
    bar = tqdm(total=len(todo), disable=not progress, unit="row", desc="sweep")
    try:
        for point in todo:
            row = measure_point(point, references, grid.estimator_config, timing, min_run_time)
            journal.append(row)
            if on_row is not None:
                on_row(row)
            bar.update(1)
    finally:
        bar.close()
    if journal.path.stat().st_size == 0:  # a shard with nothing to measure
        table = pd.DataFrame(columns=columns)
    else:
        table = pd.read_csv(journal.path, dtype={"config": str})
    if out.suffix == ".parquet":
        table.to_parquet(out, index=False)
    return table


def build_problem(point: Point) -> Any:
    return problems.make(
        point.problem,
        lipschitz=point.lipschitz,
        seed=point.seed,
        dtype=getattr(torch, point.dtype),
        device=point.device,
        **dict(point.config),
    )


def measure_point(
    point: Point,
    references: dict[tuple, Any],
    estimator_config: dict[str, Any],
    timing: bool,
    min_run_time: float,
) -> dict[str, Any]:
    """Build the problem and estimator of ``point``, run the ``restarts`` calls that precede
    the measured one (stateful estimators), and measure. The DEQ reference is computed once
    per problem configuration (cached in ``references``)."""
    started = time.perf_counter()
    problem = build_problem(point)
    pkey = point.problem_key()
    if pkey not in references:
        references.clear()  # grid order keeps one configuration's rows together
        references[pkey] = reference_gradient(problem)
    ref = references[pkey]
    config = dict(estimator_config)
    if point.depth is not None:
        config["depth"] = point.depth
    est = estimators.make(point.estimator, **config)
    state = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(point.restarts):
            state = est.gradient(problem, state=state).state
    row = measure(problem, est, ref, state=state, timing=timing, min_run_time=min_run_time)
    row.update(
        problem=point.problem,
        config=point.config_json(),
        lipschitz=point.lipschitz,
        seed=point.seed,
        estimator=point.estimator,
        depth=point.depth,
        restarts=point.restarts,
        device=point.device,
        dtype=point.dtype,
        declared_lipschitz=float(problem.lipschitz),
        extra_steps=getattr(est, "extra_steps", None),
        elapsed_s=time.perf_counter() - started,
        **dict(point.config),
    )
    return row


def iter_config_values(pairs: Iterable[str]) -> Iterator[tuple[str, list[Any]]]:
    """Parse ``key=v1,v2`` strings into (key, [values]) with ints, floats and strings."""
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set takes key=value[,value...], got {pair!r}")
        key, _, raw = pair.partition("=")
        values = [parse_value(v) for v in raw.split(",") if v != ""]
        yield key.strip(), values


def parse_value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
