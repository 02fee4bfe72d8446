"""A grid of (problem configuration x estimator x depth x restarts x seed) -> a tidy table, one
row per measurement, written as soon as it is measured.

Resumable: rows are appended to a CSV journal with flush + fsync, one complete line at a time;
a run killed at any moment (SIGKILL included) leaves at most a partial last line, which the
next run drops before skipping the rows already present. ``--out`` may be ``.parquet``: the
journal is then ``<out>.journal.csv`` and the Parquet file is rewritten from it at the end.

Every setting that changes a measurement is in a row's key (``KEY_COLUMNS``: problem and
estimator settings, timing, dtype, device), so a rerun with another setting measures new rows.
One process writes a table at a time (``<out>.lock``), and the table records the grid that
made it (``<out>.grid.json``): a different grid is refused unless ``append=True``.

Each grid point is one task (:func:`measure_task`: a pure function of its settings that
returns a row); :mod:`jfbbench.runner` runs the tasks in this process or on a Dask cluster
and this process alone writes the rows. ``shard=(i, n)`` keeps the points whose index is i
modulo n, for job arrays without Dask.
"""

from __future__ import annotations

import itertools
import json
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from . import estimators, problems
from ._journal import CsvJournal, GridRecord, TableLock
from ._registry import accepted_settings
from ._validation import (
    check_depth,
    check_device,
    check_dtype,
    check_lipschitz,
    check_nonnegative_int,
    default_tol,
)
from .measure import float64_reference, measure
from .runner import Cluster, run_tasks

#: The key of a row: every setting that changes what is measured. A rerun measures the rows
#: whose key is not in the table yet, so a changed setting is never answered by an old row.
KEY_COLUMNS = [
    "problem", "config", "lipschitz", "seed", "estimator", "depth", "restarts", "estimator_config",
    "timing", "min_run_time", "device", "dtype",
]  # fmt: skip
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
#: Estimator settings of the forward solve: a grid axis only for estimators that solve.
SOLVE_SETTINGS = ("tol", "max_iter", "solver")
#: Estimator settings with a column of their own in every row (others are in estimator_config).
SETTING_COLUMNS = ["tol", "warm_start", "extra_steps"]

DEFAULT_GRID = dict(
    problems=["affine", "tanh_layer", "tikhonov"],
    lipschitz=[0.5, 0.9, 0.99],
    estimators=["deq", "unrolled", "jfb", "restarted_jfb"],
    depths=[1, 2, 4, 8, 16, 32, 64],
    seeds=[0],
    restarts=[0, 8],
)


def _key_float(v: float | None) -> str:
    return "" if v is None else repr(float(v))


@dataclass(frozen=True)
class Point:
    """One grid point: everything needed to rebuild the problem and the estimator and to
    measure them. ``lipschitz`` is None for problems whose rho is estimated, not set."""

    problem: str
    config: tuple[tuple[str, Any], ...]
    lipschitz: float | None
    seed: int
    estimator: str
    depth: int | None
    restarts: int
    device: str
    dtype: str
    estimator_config: tuple[tuple[str, Any], ...] = ()
    timing: bool = True
    min_run_time: float = 0.1

    def config_json(self) -> str:
        return json.dumps(dict(self.config), sort_keys=True)

    def estimator_config_json(self) -> str:
        return json.dumps(dict(self.estimator_config), sort_keys=True)

    def key(self) -> tuple:
        """The row's key as the table stores it (strings, as read back from the CSV)."""
        return (
            self.problem,
            self.config_json(),
            _key_float(self.lipschitz),
            str(self.seed),
            self.estimator,
            "" if self.depth is None else str(self.depth),
            str(self.restarts),
            self.estimator_config_json(),
            str(bool(self.timing)),
            _key_float(self.min_run_time) if self.timing else "",
            self.device,
            self.dtype,
        )

    def problem_key(self) -> tuple:
        k = self.key()
        return k[:4] + k[-2:]

    def columns(self) -> dict[str, Any]:
        """The row's settings: its key and a column per problem and estimator setting."""
        settings = dict(self.estimator_config)
        tol = settings.get("tol")
        if tol is None and solves(self.estimator):
            tol = default_tol(getattr(torch, self.dtype))
        row = dict(
            problem=self.problem,
            config=self.config_json(),
            lipschitz=self.lipschitz,
            seed=self.seed,
            estimator=self.estimator,
            depth=self.depth,
            restarts=self.restarts,
            estimator_config=self.estimator_config_json(),
            timing=bool(self.timing),
            min_run_time=self.min_run_time if self.timing else None,
            device=self.device,
            dtype=self.dtype,
            **dict(self.config),
        )
        row.update(settings)
        row.update(
            tol=tol,
            warm_start=bool(settings.get("warm_start", False)) if can_warm_start(self.estimator) else None,
        )
        return row


def _settings(estimator: str) -> set[str]:
    return accepted_settings(estimators.factory(estimator)) or set()


def can_warm_start(estimator: str) -> bool:
    """Whether the estimator takes ``warm_start`` (a plug-in that accepts the keyword without
    declaring ``supports_warm_start`` counts as taking it)."""
    cls = estimators.factory(estimator)
    return "warm_start" in _settings(estimator) and getattr(cls, "supports_warm_start", True)


def solves(estimator: str) -> bool:
    """Whether the estimator solves the forward problem to a tolerance (``tol`` applies)."""
    return bool(getattr(estimators.factory(estimator), "solves", True))


def has_lipschitz_axis(problem: str) -> bool:
    """A problem takes the lipschitz axis when rho is a setting of its construction (not an
    estimate, as for the denoiser problems)."""
    factory = problems.factory(problem)
    accepted = accepted_settings(factory)
    return (accepted is None or "lipschitz" in accepted) and getattr(factory, "contraction_guaranteed", True)


def _defaults(estimator: str) -> dict[str, Any]:
    import inspect

    out: dict[str, Any] = {}
    factory = estimators.factory(estimator)  # a class, or a plug-in's factory function
    inits = [c.__dict__.get("__init__") for c in reversed(factory.__mro__)] if inspect.isclass(factory) else [factory]
    for init in inits:
        if init is None or init is object.__init__:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.default is not inspect.Parameter.empty:
                out[p.name] = p.default
    return out


@dataclass
class Grid:
    """The grid: problems x problem settings (``configs``) x lipschitz x seeds x estimators x
    estimator settings (``estimator_axes``, each applied to the estimators that accept it) x
    depths x restarts. ``estimator_config`` holds settings with one value."""

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
    estimator_axes: dict[str, Sequence[Any]] = field(default_factory=dict)

    def axes(self) -> dict[str, list[Any]]:
        """Every estimator setting with its values (single settings as one value)."""
        out = {k: [v] for k, v in self.estimator_config.items()}
        out.update({k: list(v) for k, v in self.estimator_axes.items()})
        return out

    def applies(self, estimator: str, key: str) -> bool:
        if key not in _settings(estimator) or key == "depth":
            return False
        if key == "warm_start" and not can_warm_start(estimator):
            return False
        return key not in SOLVE_SETTINGS or solves(estimator)

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
            for p in self.problems:
                accepted = accepted_settings(problems.factory(p))
                if key in ("lipschitz", "seed", "dtype", "device"):
                    raise ValueError(f"--set {key}= is not a problem setting: use --{key} instead")
                if accepted is not None and key not in accepted:
                    raise ValueError(
                        f"unknown --set key {key!r} for problem {p!r}; its settings: {', '.join(sorted(accepted - {'lipschitz', 'seed', 'dtype', 'device'}))}"
                    )
        for key, values in self.axes().items():
            if not values:
                raise ValueError(f"the grid is empty: estimator setting {key}= has no values")
            if key == "depth":
                raise ValueError("depth is a grid axis of its own: use --depth, not an estimator setting")
            if not any(self.applies(e, key) for e in self.estimators):
                takes = "; ".join(f"{e}: {', '.join(sorted(_settings(e) - {'depth'}))}" for e in self.estimators)
                raise ValueError(f"no estimator of the grid takes the setting {key!r} ({takes})")
        for e in self.estimators:  # each value is checked by the estimator itself, before any measurement
            for settings in self._settings_of(e):
                estimators.make(e, **dict(settings))

    def _settings_of(self, estimator: str) -> list[tuple[tuple[str, Any], ...]]:
        """The combinations of the settings that apply to ``estimator``, with the values equal
        to the estimator's defaults dropped (so they key the same rows as no setting)."""
        axes = {k: v for k, v in sorted(self.axes().items()) if self.applies(estimator, k)}
        defaults = _defaults(estimator)
        if "tol" in defaults and defaults["tol"] is None:  # None: the dtype's default tolerance
            defaults["tol"] = default_tol(getattr(torch, self.dtype))
        out = []
        for values in itertools.product(*axes.values()):
            combo = tuple((k, v) for k, v in zip(axes, values, strict=True) if not (k in defaults and defaults[k] == v))
            if combo not in out:
                out.append(combo)
        return out

    def points(self, timing: bool = True, min_run_time: float = 0.1) -> list[Point]:
        """Every grid point, in a fixed order. ``depth`` is None for estimators that take no
        depth (``deq``); ``restarts`` varies only for stateful or warm-started estimators;
        ``lipschitz`` only for problems whose rho is a setting."""
        keys = sorted(self.configs)
        out: list[Point] = []
        for prob, values in itertools.product(self.problems, itertools.product(*(self.configs[k] for k in keys))):
            config = tuple(zip(keys, values, strict=True))
            rhos = [float(r) for r in self.lipschitz] if has_lipschitz_axis(prob) else [None]
            for rho, seed in itertools.product(rhos, self.seeds):
                for name in self.estimators:
                    cls = estimators.factory(name)
                    uses_depth = getattr(cls, "uses_depth", True)
                    for settings in self._settings_of(name):
                        stateful = getattr(cls, "stateful", False) or bool(dict(settings).get("warm_start", False))
                        for depth in self.depths if uses_depth else [None]:
                            for m in self.restarts if stateful else [0]:
                                out.append(
                                    Point(
                                        prob, config, rho, int(seed), name, depth, int(m), self.device, self.dtype,
                                        settings, bool(timing), float(min_run_time),
                                    )
                                )  # fmt: skip
        return out

    def record(self, timing: bool, min_run_time: float) -> dict[str, Any]:
        """What the grid sidecar stores: the grid's settings and the table's columns (a
        version of jfbbench that measures other columns makes another table), JSON-ready."""
        spec = asdict(self)
        spec.update(
            timing=bool(timing), min_run_time=float(min_run_time) if timing else None, columns=table_columns(self)
        )
        return json.loads(json.dumps(spec, default=str))


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


def setting_columns(grid: Grid) -> list[str]:
    return SETTING_COLUMNS + sorted(set(grid.axes()) - set(SETTING_COLUMNS))


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
        "jvp_evals",
        "forward_residual",
        "converged",
        "reference_converged",
        "reference_dtype",
        "rho_loc",
        "spectral_radius",
        "contraction_method",
        "workspace_bytes",
        "state_bytes",
        "warning",
        "declared_lipschitz",
        "elapsed_s",
        "status",
        "workers",
        "threads_per_worker",
    ]
    return KEY_COLUMNS + config_columns(grid) + setting_columns(grid) + measured


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
    out = Path(out)
    check_writable(out)
    columns = table_columns(grid)
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
            kept = [r for r in rows if not (_is_error(r) and tuple(r.get(c, "") for c in KEY_COLUMNS) in mine)]
            if len(kept) < len(rows):
                journal.rewrite(kept)
                rows = kept
        done = {tuple(r.get(c, "") for c in KEY_COLUMNS) for r in rows}
        i, n = shard
        todo = [p for idx, p in enumerate(points) if idx % n == i and p.key() not in done]

        def write(row: dict[str, Any]) -> None:
            journal.append(row)
            if on_row is not None:
                on_row(row)

        summary = run_tasks(todo, measure_task, write, cluster, failed_row, progress=progress, desc="sweep")
        if journal.path.stat().st_size == 0:  # a shard with nothing to measure
            table = pd.DataFrame(columns=columns)
        else:
            table = pd.read_csv(journal.path, dtype={"config": str, "estimator_config": str})
        if out.suffix == ".parquet":
            table.to_parquet(out, index=False)
    table.attrs["summary"] = summary
    return table


#: The DEQ reference of the last problem configuration this process measured.
_REFERENCES: dict[tuple, Any] = {}


def measure_task(point: Point) -> dict[str, Any]:
    """One task of a sweep: the row of ``point`` (its settings and its measurements)."""
    row = measure_point(point, _REFERENCES, dict(point.estimator_config), point.timing, point.min_run_time)
    row.setdefault("status", "ok")
    return row


def _is_error(row: dict[str, str]) -> bool:
    return str(row.get("status", "")).startswith("error")


def failed_row(point: Point, error: str) -> dict[str, Any]:
    """The row of a point whose measurement raised: its settings and the error."""
    return {**point.columns(), "status": error}


def build_problem(point: Point) -> Any:
    rho = {} if point.lipschitz is None else {"lipschitz": point.lipschitz}
    return problems.make(
        point.problem,
        **rho,
        seed=point.seed,
        dtype=getattr(torch, point.dtype),
        device=point.device,
        **dict(point.config),
    )


def problem_dtype(problem: Any) -> torch.dtype:
    return problem.initial_point().dtype


def measure_point(
    point: Point,
    references: dict[tuple, Any],
    estimator_config: dict[str, Any],
    timing: bool,
    min_run_time: float,
) -> dict[str, Any]:
    """Build the problem and estimator of ``point``, run the ``restarts`` calls that precede
    the measured one (stateful estimators), and measure. The DEQ reference is computed once
    per problem configuration (cached in ``references``), in float64 whatever the measured
    dtype, with the contraction present at its x* (``rho_loc``, ``spectral_radius``)."""
    started = time.perf_counter()
    problem = build_problem(point)
    pkey = point.problem_key()
    if pkey not in references:
        references.clear()  # grid order keeps one configuration's rows together
        references[pkey] = float64_reference(
            lambda dtype: problem if problem_dtype(problem) == dtype else build_problem(replace(point, dtype="float64"))
        )
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
    row.update(point.columns())
    row.update(
        declared_lipschitz=float(problem.lipschitz),
        extra_steps=getattr(est, "extra_steps", None),
        elapsed_s=time.perf_counter() - started,
    )
    return row


def iter_config_values(pairs: Iterable[str], option: str = "--set") -> Iterator[tuple[str, list[Any]]]:
    """Parse ``key=v1,v2`` strings into (key, [values]) with ints, floats, booleans and strings."""
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"{option} takes key=value[,value...], got {pair!r}")
        key, _, raw = pair.partition("=")
        values = [parse_value(v) for v in raw.split(",") if v != ""]
        yield key.strip(), values


def parse_value(text: str) -> Any:
    if text in ("True", "False", "true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
