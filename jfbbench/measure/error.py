"""Gradient error against the DEQ reference."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import estimators, linalg

#: Up to this many entries of x, the contraction at x* is measured with the dense Jacobian.
CONTRACTION_DENSE_MAX_DIM = 1024


@dataclass
class Reference:
    """The DEQ gradient at a tight tolerance, computed once per problem configuration and
    reused across estimators and depths."""

    grad: torch.Tensor
    x: torch.Tensor
    converged: bool
    stats: dict[str, Any]
    #: ``rho_loc``, ``spectral_radius`` and ``contraction_method`` at x*
    #: (:func:`jfbbench.linalg.contraction_at`), when measured
    contraction: dict[str, Any] = field(default_factory=dict)

    @property
    def dtype(self) -> str:
        return str(self.grad.dtype).removeprefix("torch.")


def reference_gradient(problem: Any, tol: float | None = None, max_iter: int = 100000) -> Reference:
    """DEQ gradient with Anderson forward solve and GMRES adjoint, tolerance 1e-13 in float64
    (1e-6 in float32) unless ``tol`` is given. ``converged`` says whether both solves met it."""
    x0 = problem.initial_point()
    if tol is None:
        tol = 1e-13 if x0.dtype == torch.float64 else 1e-6
    est = estimators.make(
        "deq", tol=tol, max_iter=max_iter, solver="anderson", adjoint="gmres", adjoint_max_iter=max_iter
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = est.gradient(problem)
    return Reference(grad=e.grad, x=e.x, converged=bool(e.stats["converged"]), stats=e.stats)


def float64_reference(build: Callable[[torch.dtype], Any], dense_max_dim: int = CONTRACTION_DENSE_MAX_DIM) -> Reference:
    """The reference for a problem measured in any dtype: ``build(torch.float64)`` makes the
    same problem (same seed and settings) in float64, its tight DEQ gradient is computed
    (:func:`reference_gradient`), and the contraction present at its x* is measured once
    (``reference.contraction``: ||J(x*)||_2, the spectral radius of J(x*), and the method,
    dense up to ``dense_max_dim`` entries of x, power iteration beyond)."""
    problem = build(torch.float64)
    ref = reference_gradient(problem)
    with torch.no_grad():
        ref.contraction = linalg.contraction_at(problem.operator, ref.x, dense_max_dim=dense_max_dim)
    return ref


def compare(grad: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """``rel_error`` ||g - g_ref|| / ||g_ref||, ``abs_error`` ||g - g_ref||, ``cosine`` similarity
    and ``ref_grad_norm``."""
    g, r = grad.detach().double().flatten(), reference.detach().double().flatten()
    if g.shape != r.shape:
        raise ValueError(f"gradient has {g.numel()} entries but the reference has {r.numel()}")
    diff = float(torch.linalg.vector_norm(g - r))
    rn = float(torch.linalg.vector_norm(r))
    gn = float(torch.linalg.vector_norm(g))
    cosine = float(g @ r) / (gn * rn) if gn > 0 and rn > 0 else float("nan")
    return dict(rel_error=diff / rn if rn > 0 else float("nan"), abs_error=diff, cosine=cosine, ref_grad_norm=rn)
