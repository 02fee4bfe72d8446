"""The solvers' common core: per-sample convergence bookkeeping kept on the device, the
statistics every solve returns, and the warning of a solve that stopped at ``max_iter``."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch

Tensor = torch.Tensor

#: iterations over which ``auto`` measures a rate (and a solve the rate that tells it how soon
#: to check again)
RATE_WINDOW = 8


class ConvergenceWarning(UserWarning):
    """A forward or adjoint solve stopped at max_iter before reaching its tolerance."""


def _norm(t: Tensor) -> float:
    return float(torch.linalg.vector_norm(t))


def sample_count(x: Tensor, per_sample: bool | None) -> int:
    """How many independent samples the solvers see in x: ``x.shape[0]`` with
    ``per_sample=True`` (dimension 0 declared a batch of independent samples), else 1 (the
    whole tensor; ``None`` too). Nothing is inferred from the shape: a state whose rows are
    coupled (a matrix-valued state, a graph's nodes, a sequence) would otherwise be stopped
    row by row, each row frozen against rows that still move."""
    if per_sample not in (None, True, False):
        raise ValueError(f"per_sample must be True, False or None, got {per_sample!r}")
    return x.shape[0] if per_sample and x.dim() >= 1 else 1


def _rows(op: Callable[[Tensor], Tensor], shape: torch.Size, samples: int) -> Callable[[Tensor], Tensor]:
    """``op``, which maps tensors of ``shape``, as a map of the solvers' rows: w of shape
    (samples, n) -> op(w as ``shape``) as (samples, n)."""

    def apply(w: Tensor) -> Tensor:
        return op(w.reshape(shape)).reshape(samples, -1)

    return apply


def _start(u0: Tensor, like: Tensor) -> Tensor:
    """A detached copy of the initial guess ``u0`` as rows of ``like`` (its dtype, device
    and number of rows), which the solver may update in place."""
    return u0.detach().to(dtype=like.dtype, device=like.device).reshape(like.shape[0], -1).clone()


class _Progress:
    """Per-sample convergence bookkeeping, kept on the device.

    ``check(diff, ref, evals)`` computes each sample's relative residual
    ||diff_i|| / ||ref_i||, marks the samples still above ``tol`` active, credits the
    samples that were active with ``evals`` iterations, and returns (any active, all finite)
    with one host synchronisation.
    """

    def __init__(self, samples: int, tol: float, like: Tensor) -> None:
        self.tol = tol
        self.tiny = torch.finfo(like.dtype).tiny
        self.active = torch.ones(samples, dtype=torch.bool, device=like.device)
        self.counts = torch.zeros(samples, dtype=torch.long, device=like.device)
        self.rel = torch.full((samples,), math.inf, dtype=like.dtype, device=like.device)
        self.res = torch.full((samples,), math.inf, dtype=like.dtype, device=like.device)
        self.all_active = True
        #: (evals, largest relative residual, norm of the whole residual)
        self.history: list[tuple[int, float, float]] = []

    def check(self, diff: Tensor, ref: Tensor, evals: int) -> tuple[bool, bool]:
        res = torch.linalg.vector_norm(diff, dim=1)
        rel = res / torch.linalg.vector_norm(ref, dim=1).clamp_min(self.tiny)
        return self.update(res, rel, evals)

    def update(self, res: Tensor, rel: Tensor, evals: int) -> tuple[bool, bool]:
        self.counts = torch.where(self.active, evals, self.counts)
        self.res, self.rel = res, rel
        self.active = ~((rel <= self.tol) | (res == 0))
        rels, ress = torch.stack([rel, res]).tolist()  # the one host synchronisation
        active = [not (r <= self.tol or q == 0) for r, q in zip(rels, ress, strict=True)]
        self.all_active = all(active)
        # divergence is read on the residual: a sample whose f(x) is exactly 0 (a relu layer's
        # equilibrium 0, reached from a warm start) has an infinite relative residual, not a
        # diverged solve
        finite = all(map(math.isfinite, ress))
        worst = max(r if math.isfinite(r) else math.inf for r in rels)
        self.history.append((evals, worst, math.hypot(*ress)))
        return any(active), finite

    def rate(self, since: int, window: int | None = None) -> float:
        """Measured contraction per iteration of the residual (its norm over the whole
        tensor: relative residuals move with ||x|| too), from the check at or after iteration
        ``since`` (or the last ``window`` iterations, if fewer) to the last check (nan if not
        measurable)."""
        if window is not None and self.history:
            since = max(since, self.history[-1][0] - window)
        pts = [(k, r) for k, _, r in self.history if k >= since and math.isfinite(r) and r > 0]
        if len(pts) < 2 or pts[-1][0] == pts[0][0]:
            return math.nan
        return (pts[-1][1] / pts[0][1]) ** (1.0 / (pts[-1][0] - pts[0][0]))

    def steps_to_next_check(self, check_every: int) -> int:
        """``check_every``, or fewer where the measured rate says the tolerance will be met
        sooner (so that a solve does not overshoot by up to ``check_every - 1`` steps)."""
        rate = self.rate(1, RATE_WINDOW)
        left = _predicted(self.worst, self.tol, rate)
        if not math.isfinite(left):
            return check_every
        return max(1, min(check_every, math.ceil(left)))

    @property
    def worst(self) -> float:
        return self.history[-1][1] if self.history else math.inf

    def stats(self) -> dict:
        return _count_stats(self.counts)


def _count_stats(counts: Tensor) -> dict:
    c = counts.tolist()
    return dict(iterations_mean=sum(c) / len(c), iterations_max=max(c), iterations_per_sample=c)


def _mask(active: Tensor, like: Tensor) -> Tensor:
    return active.reshape(-1, *([1] * (like.dim() - 1)))


def _freeze(new: Tensor, old: Tensor, progress: _Progress) -> Tensor:
    """new where the sample is still active, old where it has converged (rows views)."""
    return new if progress.all_active else torch.where(_mask(progress.active, new), new, old)


def _warn(what: str, max_iter: int, rel: float, tol: float) -> None:
    warnings.warn(
        f"{what} stopped at max_iter={max_iter} with relative residual {rel:.3e} > tol={tol:.1e}",
        ConvergenceWarning,
        stacklevel=4,
    )


def _predicted(rel: float, tol: float, rate: float) -> float:
    """Iterations left at ``rate`` to bring ``rel`` under ``tol``."""
    if not rel > tol:
        return 0.0
    if not (0 < rate < 1) or not tol > 0:
        return math.inf
    return math.log(tol / rel) / math.log(rate)
