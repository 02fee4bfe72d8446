"""A grid of training runs: the product of several values per setting, each run its own
table (``out`` template), and the task that trains one run wherever :mod:`jfbbench.runner`
sends it."""

from __future__ import annotations

import hashlib
import itertools
import json
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import estimators, problems
from .._journal import TableLock
from ..runner import Cluster, Summary, run_tasks
from .config import TrainConfig, carries_state
from .run import train

#: Settings that take several values (a grid axis each), by TrainConfig field, in the order the
#: runs are made (all of seed 0 first, so a partial grid covers every setting).
GRID_FIELDS = ("seed", "problem", "estimator", "depth", "warm_start", "steps", "lr", "optimizer", "batch_size",
               "tol", "solver", "adjoint", "extra_steps", "deep_supervision", "reset_state")  # fmt: skip


def settings_digest(config: TrainConfig) -> str:
    """Eight hex digits that tell apart runs whose settings differ (any of them, the problem's
    included, after the preset's defaults are filled in)."""
    try:
        config = config.resolved()
    except ValueError:
        pass
    text = json.dumps(asdict(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


#: ``out`` template fields besides GRID_FIELDS: ``{start}`` is ``warm`` or ``cold``, ``{state}``
#: ``reset`` or ``carry``, ``{settings}`` a digest of every setting (:func:`settings_digest`).
EXTRA_FIELDS = {
    "preset": lambda c: c.preset,
    "start": lambda c: "warm" if c.warm_start else "cold",
    "state": lambda c: "reset" if c.reset_state else "carry",
    "settings": settings_digest,
}
#: Where each run's table goes when no ``out`` is given: outside the committed results, one
#: table per run, named by its settings (so that a run with other settings never resumes it).
DEFAULT_OUT = "runs/train/{problem}/{estimator}-{start}-K{depth}-s{seed}-{settings}.csv"


@dataclass(frozen=True)
class Run:
    """One training run of a grid: its settings and its table (None: no table)."""

    config: TrainConfig
    out: Path | None
    progress: bool = False

    def key(self) -> str:
        return repr((sorted(asdict(self.config).items()), str(self.out)))


def run_training(run: Run) -> dict[str, Any]:
    """One task: train (or resume) the run; its rows go to its own table as they come (the
    task is that table's one writer). Returns what the summary line needs."""
    if run.out is None:
        rows = train(run.config, None, progress=run.progress)
    else:
        with TableLock(run.out):
            rows = train(run.config, run.out, progress=run.progress)
    first, last = rows[0], rows[-1]
    metric = primary_metric(run.config.problem)
    return dict(
        key=run.key(),
        metric=metric,
        first=float(first[f"test_{metric}"]),
        last=float(last[f"test_{metric}"]),
        baseline=float(first.get(f"input_{metric}", "nan")),
        **{k: last[k] for k in ("step", "wall_time", "operator_evals", "vjp_evals", "status")},
        jvp_evals=last.get("jvp_evals", 0),
    )


def primary_metric(problem: str) -> str:
    """The first of the problem's ``metric_names`` (imaging: ``psnr``): what a summary reports."""
    return tuple(getattr(problems.factory(problem), "metric_names", None) or ("psnr",))[0]


def train_grid(
    runs: Sequence[Run], cluster: Cluster | None = None, progress: bool | None = None
) -> tuple[dict[str, dict[str, Any]], Summary]:
    """Train every run where ``cluster`` says (this process by default; see
    :mod:`jfbbench.runner`, the one route for sweeps and training). Each task writes its own
    run's table; what comes back is each run's summary (:func:`run_training`, or
    ``{"key", "error"}`` for a run that raised), by :meth:`Run.key`, and the runner's
    :class:`~jfbbench.runner.Summary` (runs lost with their workers in ``lost``)."""
    if cluster is not None:
        cluster.check()  # a scheduler that does not answer is refused before any run starts
    results: dict[str, dict[str, Any]] = {}
    summary = run_tasks(
        runs,
        run_training,
        lambda res: results.__setitem__(res["key"], res),
        cluster,
        failed_result=lambda run, error: dict(key=run.key(), error=error),
        progress=progress,
        desc="train",
    )
    return results, summary


def _capabilities(name: str) -> estimators.Capabilities | None:
    """The estimator's capabilities; None for a name that does not resolve (its run's
    settings are then checked, and refused, by :meth:`TrainConfig.resolved`)."""
    try:
        return estimators.capabilities(name)
    except ValueError:
        return None


def grid_runs(values: dict[str, Any], **fixed: Any) -> list[TrainConfig]:
    """The TrainConfigs of the product of ``values`` (GRID_FIELDS -> a sequence of values; an
    empty or missing one takes the default); an estimator without a depth (``deq``) runs once,
    at depth 1, one that cannot warm-start runs cold only, and deep supervision (N_sup > 1)
    runs for the estimators that carry a state from one supervised step to the next (stateful,
    or warm-started) only, unless no run is left (then the run is made and refused with the
    reason). ``fixed``: settings shared by every run; its ``estimator_kwargs`` go to the
    estimators that accept each key."""
    axes = {f: list(values[f]) if values.get(f) else [None] for f in GRID_FIELDS}
    shared = dict(fixed.pop("estimator_kwargs", None) or {})
    configs, seen, refused = [], set(), []
    for combo in itertools.product(*axes.values()):
        settings = {k: v for k, v in zip(axes, combo, strict=True) if v is not None}
        caps = _capabilities(settings["estimator"])
        if caps is not None and not caps.uses_depth:
            settings["depth"] = 1
        if caps is not None and not caps.supports_warm_start:
            settings["warm_start"] = False
        if caps is not None and not carries_state(settings["estimator"], bool(settings.get("warm_start"))):
            settings["reset_state"] = False  # nothing carried, nothing to reset
        key = tuple(sorted(settings.items()))
        if key in seen:
            continue
        seen.add(key)
        kwargs = {k: v for k, v in shared.items() if caps is None or caps.accepts(k)}
        config = TrainConfig(**settings, **fixed, estimator_kwargs=kwargs)
        if caps is not None and settings.get("deep_supervision", 1) != 1:
            if not carries_state(config.estimator, bool(settings.get("warm_start", False))):
                refused.append(config)
                continue
        configs.append(config)
    for key in shared:
        if not any(key in c.estimator_kwargs for c in configs + refused):
            names = ", ".join(sorted({c.estimator for c in configs + refused}))
            raise ValueError(f"no estimator of the grid ({names}) takes the setting {key!r}")
    return configs or refused[:1]


def out_paths(template: Path | str | None, configs: list[TrainConfig]) -> list[Path | None]:
    """Each run's table: ``template`` with its ``{field}`` placeholders filled in. Several runs
    need placeholders for every setting that varies (or ``{settings}``), so no two runs share a
    table. None: :data:`DEFAULT_OUT`."""
    if template is None:
        template = DEFAULT_OUT
    fields = {name for _, name, _, _ in string.Formatter().parse(str(template)) if name}
    allowed = [*GRID_FIELDS, *EXTRA_FIELDS]
    unknown = sorted(fields - set(allowed))
    if unknown:
        raise ValueError(f"out {str(template)!r} names unknown fields {unknown}; allowed: {', '.join(allowed)}")
    varying = [f for f in GRID_FIELDS if len({getattr(c, f) for c in configs}) > 1]
    aliases = {"warm_start": "start", "reset_state": "state"}
    missing = [] if "settings" in fields else varying
    missing = [f for f in missing if f not in fields and aliases.get(f) not in fields]
    if missing:
        raise ValueError(
            f"out {str(template)!r} must tell the runs apart: add {', '.join('{' + f + '}' for f in missing)} "
            f"(e.g. 'runs/{{problem}}/{{estimator}}-K{{depth}}-s{{seed}}.csv')"
        )

    def value(c: TrainConfig, f: str) -> Any:
        return EXTRA_FIELDS[f](c) if f in EXTRA_FIELDS else getattr(c, f)

    return [Path(str(template).format(**{f: value(c, f) for f in fields})) for c in configs]
