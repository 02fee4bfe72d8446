"""A training run's settings: :class:`TrainConfig` and the per-problem presets it falls back on."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import estimators, problems
from .._validation import (
    check_choice,
    check_depth,
    check_nonnegative_int,
    check_positive_int,
    check_seed,
    check_tol,
)
from ..estimators.capabilities import SOLVE_SETTINGS

OPTIMIZERS = ("adam", "sgd")

#: Presets of the imaging problems: ``default`` (32 x 32 patches; minutes on 2 cores), ``large``
#: (the committed results: the grey image set, 128 x 128 crops for weighted_tv, 64 x 64 for the
#: DRUNet problems) and ``quick`` (seconds; the tests). Problem settings go under ``problem``.
#: Any other family declares its own as the class attribute ``train_presets`` (same layout),
#: read by :func:`presets_for`.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "weighted_tv": {
        "default": dict(
            steps=40, lr=0.15, batch_size=4, gap_every=5, tol=1e-4,
            problem=dict(patch=32, train_per_image=1, test_per_image=3, noise=0.03, weights="per_direction",
                         weight=0.05, mu=0.05, smoothing=0.05),
        ),
        "large": dict(
            steps=40, lr=0.1, batch_size=4, gap_every=5, tol=1e-4,
            problem=dict(images="grey", patch=128, train_per_image=1, test_per_image=2, noise=0.03,
                         weights="per_direction", weight=0.05, mu=0.05, smoothing=0.05),
        ),
        "quick": dict(
            steps=6, lr=0.3, batch_size=2, gap_every=3, tol=1e-4,
            problem=dict(patch=16, kernel_size=5, noise=0.03, weight=0.05, mu=0.1, smoothing=0.1),
        ),
    },
    "pnp_fb": {
        "default": dict(
            steps=40, lr=0.25, batch_size=4, gap_every=5, tol=1e-4,
            problem=dict(patch=32, test_per_image=3, noise=0.03, tau=0.3, sigma=0.005),
        ),
        "large": dict(
            steps=40, lr=0.25, batch_size=4, gap_every=10, tol=1e-4,
            problem=dict(images="grey", patch=64, train_per_image=2, test_per_image=2, noise=0.03, tau=0.3,
                         sigma=0.005),
        ),
        "quick": dict(
            steps=4, lr=0.3, batch_size=2, gap_every=2, tol=1e-3,
            problem=dict(patch=16, kernel_size=5, noise=0.03, pretrain_steps=600, pretrain_lr=3e-3, pretrain_patch=16,
                         lipschitz_iters=3, tau=1.0, sigma=0.01),
        ),
    },
    "drunet_fb": {
        "default": dict(
            steps=30, lr=3e-4, batch_size=4, gap_every=5, tol=1e-4,
            problem=dict(patch=32, test_per_image=3, noise=0.03, tau=1.0, sigma=0.03),
        ),
        "large": dict(
            steps=40, lr=1e-4, batch_size=4, gap_every=10, tol=1e-4,
            problem=dict(images="grey", patch=64, train_per_image=2, test_per_image=2, noise=0.03, tau=1.0,
                         sigma=0.03),
        ),
        "quick": dict(
            steps=4, lr=3e-5, batch_size=4, gap_every=2, tol=1e-3,
            problem=dict(patch=16, kernel_size=5, noise=0.03, pretrain_steps=600, pretrain_lr=3e-3, pretrain_patch=16,
                         lipschitz_iters=3, tau=1.0, sigma=0.03),
        ),
    },
}  # fmt: skip


def presets_for(problem: str) -> dict[str, dict[str, Any]]:
    """The training presets of ``problem``: its factory's ``train_presets`` attribute (a dict
    preset name -> ``steps``, ``lr``, ``batch_size``, ``gap_every``, ``tol`` and ``problem``
    settings), else those of :data:`PRESETS`."""
    declared = getattr(problems.factory(problem), "train_presets", None)
    if declared:
        return declared
    if problem in PRESETS:
        return PRESETS[problem]
    raise ValueError(
        f"problem must declare train_presets (a class attribute) or be one of {', '.join(map(repr, PRESETS))} "
        f"for training; got {problem!r}"
    )


@dataclass
class TrainConfig:
    """One training run. ``None`` fields take the preset's value for the problem."""

    problem: str
    estimator: str
    depth: int = 1
    seed: int = 0
    preset: str = "default"
    steps: int | None = None
    lr: float | None = None
    optimizer: str = "adam"
    batch_size: int | None = None
    gap_every: int | None = None
    tol: float | None = None
    max_iter: int = 2000
    #: the forward solver; None: the estimator's required one (``shine``: broyden), else anderson
    solver: str | None = None
    adjoint: str = "gmres"
    extra_steps: int = 0
    warm_start: bool = False
    reference_tol: float = 1e-8
    problem_kwargs: dict[str, Any] = field(default_factory=dict)
    #: N_sup: supervised steps per outer step, each an optimiser step on the same batch from
    #: the state the previous one left (see :mod:`jfbbench.training`)
    deep_supervision: int = 1
    #: start each outer step's batch from the cold start (the state is carried between its
    #: supervised steps only, as the published recursive models reset an example's state when
    #: it enters); False: each sample's state goes on from its last visit, as restarted JFB
    reset_state: bool = False
    #: settings of the estimator beyond those above (e.g. ``cycles`` of ``trm``)
    estimator_kwargs: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> TrainConfig:
        """Fill the ``None`` fields from the preset and check every value."""
        preset = presets_for(self.problem)
        estimators.factory(self.estimator)  # a registered name or package.module:factory
        check_choice(self.preset, "preset", tuple(preset))
        p = preset[self.preset]
        c = copy.deepcopy(self)
        for name in ("steps", "lr", "batch_size", "gap_every", "tol"):
            if getattr(c, name) is None:
                setattr(c, name, p[name])
        c.problem_kwargs = {**p["problem"], **self.problem_kwargs}
        required = estimators.capabilities(c.estimator).required_solver
        if c.solver is None:
            c.solver = required or "anderson"
        elif required is not None and c.solver != required:
            raise ValueError(
                f"solver must be {required!r} for {c.estimator!r} (or left out: it is then {required!r}), got {c.solver!r}"
            )
        c.depth = check_depth(c.depth)
        c.seed = check_seed(c.seed)
        c.steps = check_nonnegative_int(c.steps, "steps")
        c.batch_size = check_depth(c.batch_size, "batch_size")
        c.gap_every = check_nonnegative_int(c.gap_every, "gap_every")
        c.tol = check_tol(c.tol)
        c.max_iter = check_depth(c.max_iter, "max_iter")
        c.optimizer = check_choice(c.optimizer, "optimizer", OPTIMIZERS)
        c.adjoint = check_choice(c.adjoint, "adjoint", ("fixed_point", "gmres", "auto"))
        c.extra_steps = check_nonnegative_int(c.extra_steps, "extra_steps")
        if not isinstance(c.warm_start, bool):
            raise ValueError(f"warm_start must be True or False, got {c.warm_start!r}")
        if c.warm_start and not estimators.capabilities(c.estimator).supports_warm_start:
            raise ValueError(
                f"warm_start applies to estimators that solve for x* (deq, jfb, phantom, neumann), not {c.estimator!r}"
            )
        c.deep_supervision = check_positive_int(c.deep_supervision, "deep_supervision")
        check_deep_supervision(c.estimator, c.deep_supervision, c.warm_start)
        if not isinstance(c.reset_state, bool):
            raise ValueError(f"reset_state must be True or False, got {c.reset_state!r}")
        if c.reset_state and not carries_state(c.estimator, c.warm_start):
            raise ValueError(
                f"reset_state applies to estimators that carry a state (restarted_jfb, trm, hrm_one_step, or a "
                f"warm-started solve), not {c.estimator!r}"
            )
        check_estimator_kwargs(c.estimator, c.estimator_kwargs)
        c.reference_tol = check_tol(c.reference_tol, "reference_tol")
        if c.reference_tol > 1e-8:
            raise ValueError(f"reference_tol must be <= 1e-8 (the gap's reference DEQ), got {c.reference_tol!r}")
        if not (isinstance(c.lr, (int, float)) and math.isfinite(c.lr) and c.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {c.lr!r}")
        return c

    def identity(self) -> dict[str, Any]:
        """The columns that name a run (everything but ``steps``, which a rerun may extend;
        ``deep_supervision``, ``reset_state`` and ``estimator_kwargs`` only where they are not their defaults,
        so that the runs made before them keep their identity)."""
        d = asdict(self)
        d.pop("steps")
        d["problem_kwargs"] = repr(sorted(d["problem_kwargs"].items()))
        if d["deep_supervision"] == 1:
            d.pop("deep_supervision")
        if not d["reset_state"]:
            d.pop("reset_state")
        if d["estimator_kwargs"]:
            d["estimator_kwargs"] = repr(sorted(d["estimator_kwargs"].items()))
        else:
            d.pop("estimator_kwargs")
        return d

    def estimator_settings(self) -> dict[str, Any]:
        """What the estimator is built with: ``depth``, the forward solve's settings (``tol``,
        ``max_iter``, ``solver``: for an estimator that solves, as in sweeps; ``revdeq``, which
        does not, runs its N steps rather than stop at the run's tolerance) and the adjoint's
        where it accepts them, ``warm_start`` when set, and ``estimator_kwargs``."""
        caps = estimators.capabilities(self.estimator)
        offered = dict(
            depth=self.depth, tol=self.tol, max_iter=self.max_iter, solver=self.solver, extra_steps=self.extra_steps,
            adjoint=self.adjoint, adjoint_max_iter=self.max_iter,
        )  # fmt: skip
        if not caps.solves:
            for key in SOLVE_SETTINGS:
                offered.pop(key)
        if caps.settings is None:  # a factory whose keywords cannot be read: the settings every estimator has
            out = dict(depth=self.depth, tol=self.tol, max_iter=self.max_iter, solver=self.solver)
        else:
            out = {k: v for k, v in offered.items() if caps.accepts(k)}
        if self.warm_start:
            out["warm_start"] = True
        return {**out, **self.estimator_kwargs}


def carries_state(estimator: str, warm_start: bool) -> bool:
    """Whether ``estimator`` hands a state from one call to the next: it is stateful
    (``restarted_jfb``, ``trm``, ``hrm_one_step``) or warm-starts its forward solve."""
    caps = estimators.capabilities(estimator)
    return caps.stateful or (warm_start and caps.supports_warm_start)


def check_deep_supervision(estimator: str, n: int, warm_start: bool) -> None:
    """Refuse N_sup > 1 for an estimator that carries no state from one supervised step to
    the next (deep supervision restarts each step where the previous one ended)."""
    if n == 1 or carries_state(estimator, warm_start):
        return
    if estimators.capabilities(estimator).supports_warm_start:
        raise ValueError(
            f"deep_supervision={n} with {estimator!r} needs warm_start=True: the state carried from one "
            "supervised step to the next is where its forward solve starts"
        )
    raise ValueError(
        f"deep_supervision={n} needs an estimator that carries a state (restarted_jfb, trm, hrm_one_step) or "
        f"warm-starts its solve (deq, jfb, phantom, neumann); {estimator!r} does neither (unrolling from the "
        "carried state is restarted_jfb with extra_steps=0)"
    )


#: Settings with a field of their own in :class:`TrainConfig`, not taken in ``estimator_kwargs``.
OWN_FIELDS = ("depth", "tol", "max_iter", "solver", "extra_steps", "adjoint", "adjoint_max_iter", "warm_start")


def check_estimator_kwargs(estimator: str, kwargs: Any) -> None:
    """Every key of ``kwargs`` is a setting the estimator declares, with no field of its own."""
    if not isinstance(kwargs, dict):
        raise ValueError(f"estimator_kwargs must be a dict of estimator settings, got {kwargs!r}")
    caps = estimators.capabilities(estimator)
    for key in kwargs:
        if key in OWN_FIELDS:
            raise ValueError(f"estimator_kwargs key {key!r} is a training setting of its own: set {key} instead")
        if caps.settings is not None and not caps.accepts(key):
            takes = ", ".join(sorted(set(caps.settings or ()) - set(OWN_FIELDS))) or "none"
            raise ValueError(f"estimator {estimator!r} takes no setting {key!r} (its other settings: {takes})")
