"""A training run's settings: :class:`TrainConfig` and the per-problem presets it falls back on."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import estimators, problems
from .._validation import check_choice, check_depth, check_nonnegative_int, check_seed, check_tol

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
    solver: str = "anderson"
    adjoint: str = "gmres"
    extra_steps: int = 0
    warm_start: bool = False
    reference_tol: float = 1e-8
    problem_kwargs: dict[str, Any] = field(default_factory=dict)

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
        c.reference_tol = check_tol(c.reference_tol, "reference_tol")
        if c.reference_tol > 1e-8:
            raise ValueError(f"reference_tol must be <= 1e-8 (the gap's reference DEQ), got {c.reference_tol!r}")
        if not (isinstance(c.lr, (int, float)) and math.isfinite(c.lr) and c.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {c.lr!r}")
        return c

    def identity(self) -> dict[str, Any]:
        """The columns that name a run (everything but ``steps``, which a rerun may extend)."""
        d = asdict(self)
        d.pop("steps")
        d["problem_kwargs"] = repr(sorted(d["problem_kwargs"].items()))
        return d
