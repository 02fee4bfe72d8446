"""A sweep's grid and its points: :class:`Grid` (the axes, checked before anything is
measured) and :class:`Point` (one measurement's settings, its key and its columns)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .. import estimators, problems
from .._registry import accepted_settings
from .._validation import (
    ArgumentError,
    check_depth,
    check_device,
    check_dtype,
    check_lipschitz,
    check_nonnegative_int,
    default_tol,
)
from . import schema
from .schema import SOLVE_SETTINGS, key_float

DEFAULT_GRID = dict(
    problems=["affine", "tanh_layer", "tikhonov"],
    lipschitz=[0.5, 0.9, 0.99],
    estimators=["deq", "unrolled", "jfb", "restarted_jfb"],
    depths=[1, 2, 4, 8, 16, 32, 64],
    seeds=[0],
    restarts=[0, 8],
)
#: Problem settings that are grid arguments of their own (the Grid field that holds each).
OWN_AXES = dict(lipschitz="lipschitz", seed="seeds", dtype="dtype", device="device")


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
            key_float(self.lipschitz),
            str(self.seed),
            self.estimator,
            "" if self.depth is None else str(self.depth),
            str(self.restarts),
            self.estimator_config_json(),
            str(bool(self.timing)),
            key_float(self.min_run_time) if self.timing else "",
            self.device,
            self.dtype,
        )

    def problem_key(self) -> tuple:
        k = self.key()
        return k[:4] + k[-2:]

    def columns(self) -> dict[str, Any]:
        """The row's settings: its key and a column per problem and estimator setting."""
        caps = estimators.capabilities(self.estimator)
        settings = dict(self.estimator_config)
        tol = settings.get("tol")
        if tol is None and caps.solves:
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
            warm_start=bool(settings.get("warm_start", False)) if caps.supports_warm_start else None,
        )
        return row


def has_lipschitz_axis(problem: str) -> bool:
    """A problem takes the lipschitz axis when rho is a setting of its construction (not an
    estimate, as for the denoiser problems)."""
    factory = problems.factory(problem)
    accepted = accepted_settings(factory)
    return (accepted is None or "lipschitz" in accepted) and getattr(factory, "contraction_guaranteed", True)


def _offered(caps: estimators.Capabilities) -> set[str]:
    """The estimator settings a grid may set for an estimator (depth is an axis of its own)."""
    return set(caps.settings or ()) - {"depth"}


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
        """Whether the estimator setting ``key`` is set for ``estimator``: it accepts the key,
        and, for ``warm_start``, can warm-start, and, for the forward solve's settings, solves."""
        caps = estimators.capabilities(estimator)
        if key not in _offered(caps):
            return False
        if key == "warm_start" and not caps.supports_warm_start:
            return False
        return key not in SOLVE_SETTINGS or caps.solves

    def validate(self) -> None:
        """Check every axis and setting, each estimator setting by the estimator itself,
        before anything is measured; a one-line ValueError (an :class:`ArgumentError` naming
        the grid's arguments) otherwise."""
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
        for check, values, axis in [
            (check_lipschitz, self.lipschitz, "lipschitz"),
            (check_depth, self.depths, "depths"),
            (check_nonnegative_int, self.restarts, "restarts"),
        ]:
            for value in values:
                try:  # the message names the axis by its placeholder, spelled by the front end
                    check(value, "{" + axis + "}")
                except ValueError as exc:
                    raise ArgumentError(str(exc), **{axis: axis}) from None
        check_dtype(self.dtype)
        check_device(self.device)
        self._validate_configs()
        self._validate_estimator_settings()

    def _validate_configs(self) -> None:
        for key, values in self.configs.items():
            keyed = dict(keys={"configs": key}, configs=f"configs[{key!r}]")
            if not values:
                raise ArgumentError("the grid is empty: {configs} has no values", **keyed)
            if key in OWN_AXES:
                raise ArgumentError(
                    "{configs} is not a problem setting: use {own} instead",
                    keys={"configs": key, "own": key}, configs=f"configs[{key!r}]", own=OWN_AXES[key],
                )  # fmt: skip
            for p in self.problems:
                accepted = accepted_settings(problems.factory(p))
                if accepted is not None and key not in accepted:
                    raise ArgumentError(
                        f"unknown {{configs}} key {key!r} for problem {p!r}; its settings: "
                        f"{', '.join(sorted(accepted - set(OWN_AXES)))}",
                        configs="configs",
                    )

    def _validate_estimator_settings(self) -> None:
        for key, values in self.axes().items():
            if not values:
                raise ValueError(f"the grid is empty: estimator setting {key}= has no values")
            if key == "depth":
                raise ArgumentError(
                    "depth is a grid axis of its own: use {depths}, not an estimator setting", depths="depths"
                )
            if not any(self.applies(e, key) for e in self.estimators):
                takes = "; ".join(
                    f"{e}: {', '.join(sorted(_offered(estimators.capabilities(e))))}" for e in self.estimators
                )
                raise ValueError(f"no estimator of the grid takes the setting {key!r} ({takes})")
        for e in self.estimators:  # each value is checked by the estimator itself, before any measurement
            for settings in self._settings_of(e):
                try:
                    estimators.make(e, **dict(settings))
                except ValueError as exc:
                    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    named = [k for k, _ in settings if k in text] or [k for k, _ in settings]
                    if not named:
                        raise
                    raise ArgumentError(
                        f"{{settings}}{dict(settings)[named[0]]}: {text} (estimator {e!r})",
                        keys={"settings": named[0]},
                        settings=f"estimator_axes[{named[0]!r}]=",
                    ) from None

    def _settings_of(self, estimator: str) -> list[tuple[tuple[str, Any], ...]]:
        """The combinations of the settings that apply to ``estimator``, with the values equal
        to the estimator's defaults dropped (so they key the same rows as no setting)."""
        axes = {k: v for k, v in sorted(self.axes().items()) if self.applies(estimator, k)}
        defaults = dict(estimators.capabilities(estimator).defaults)
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
                    caps = estimators.capabilities(name)
                    for settings in self._settings_of(name):
                        stateful = caps.stateful or bool(dict(settings).get("warm_start", False))
                        for depth in self.depths if caps.uses_depth else [None]:
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
            timing=bool(timing),
            min_run_time=float(min_run_time) if timing else None,
            columns=schema.table_columns(self),
        )
        return json.loads(json.dumps(spec, default=str))
