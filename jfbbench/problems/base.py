"""The problem protocol: an operator T_theta(x) that is a rho-contraction in x, an outer loss
L(x) and a cold start x_0.

The loss may depend on theta as well as on x (a trainable read-out head, a regulariser on
theta): ``parameters()`` lists every tensor to differentiate, those of T and those of L, and
every estimator returns the total derivative of theta -> L(x*(theta), theta),

    dL/dtheta = dL/dtheta|_x + (dT/dtheta)^T u,    (I - dT/dx^T) u = dL/dx,

or its approximation of the second term; the first is exact in all of them.

Estimators use nothing but this protocol, so a user's own model works everywhere a built-in
family does once it is registered with :func:`jfbbench.problems.register`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from .._validation import check_device, check_dtype, check_lipschitz, check_positive_int, check_seed


@runtime_checkable
class ProblemProtocol(Protocol):
    """What an estimator asks of a problem: ``lipschitz`` (the contraction factor rho of T in
    x), ``parameters()`` (theta), ``operator(x)`` (T_theta(x)), ``loss(x)`` (the outer loss L)
    and ``initial_point()`` (the cold start x_0).

    Optional: ``batched`` (a bool, absent means False) declares that dimension 0 of the state
    holds independent samples, x = (x_1, ..., x_B) with T acting on each x_i alone (the i-th
    row of T(x) depends on x_i only) and L a sum over the samples. Then J = dT/dx is block
    diagonal and the solvers may hold each sample to the tolerance on its own and stop it when
    it meets it (``per_sample``: fewer iterations where the samples converge at different
    rates). Where the rows are coupled (a matrix-valued state z <- f(P z Q), a graph's nodes, a
    sequence), freezing a row that has met the tolerance while the others still move stops the
    solve at a point that is no fixed point at all; such problems leave ``batched`` False and
    are solved as one vector, which is always correct.
    """

    lipschitz: float

    def parameters(self) -> list[torch.Tensor]: ...

    def operator(self, x: torch.Tensor) -> torch.Tensor: ...

    def loss(self, x: torch.Tensor) -> torch.Tensor: ...

    def initial_point(self) -> torch.Tensor: ...


class Problem:
    """Base class of the built-in families.

    Subclasses set ``self.lipschitz`` (the contraction factor rho in x that holds at the
    parameters as created) and implement :meth:`operator`, :meth:`loss`,
    :meth:`initial_point` and :meth:`parameters`. ``config`` holds the settings the problem
    was made with, so that result tables can carry them as columns.
    """

    name: str = "problem"
    #: Whether dimension 0 of the state holds independent samples (see
    #: :class:`ProblemProtocol`): False, the safe default, solves the state as one vector.
    batched: bool = False
    #: True where the contraction factor is guaranteed (analytic families); False where it
    #: is only estimated (learned denoisers), which puts the problem outside the theory.
    contraction_guaranteed: bool = True
    #: True where T has a Jacobian that does not jump (tanh, gradient steps); False where T is
    #: only piecewise smooth (relu): the checks that assume a smooth T (B4, B5) are then
    #: reported out of scope by ``jfbbench validate`` (:mod:`jfbbench.theory.scope`).
    smooth: bool = True

    def __init__(self, lipschitz: float, seed: int = 0, dtype: Any = torch.float64, device: Any = "cpu") -> None:
        self.lipschitz = check_lipschitz(lipschitz)
        self.seed = check_seed(seed)
        self.dtype = check_dtype(dtype)
        self.device = check_device(device)
        self.config: dict[str, Any] = {}

    def generator(self) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(self.seed)

    def _to(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype=self.dtype, device=self.device)

    def _param(self, t: torch.Tensor) -> torch.Tensor:
        return self._to(t).detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def operator(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def initial_point(self) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({settings})"


class PiecewiseLinear:
    """Mixin of the families whose T is a relu of an affine map of the state: T is piecewise
    linear in the state, differentiable at the equilibrium (no pre-activation sits at 0
    there), but its Jacobian jumps where a pre-activation crosses 0, so the checks that
    assume a smooth T (B4, B5) are out of scope (``smooth = False``, said in ``theory_note``)."""

    smooth = False
    theory_note = "relu: dT/dz jumps where a pre-activation crosses 0"


class VectorBatch(Problem):
    """Base of the families whose state is a batch of vectors x of shape (``batch``, ``dim``),
    each row an independent sample (``batched``), started cold at x_0 = 0, with the outer
    loss L(x) = 1/2 ||x - x_target||^2 (``self.target``, of x's shape, set by the subclass).

    ``dim`` and ``batch`` are checked (integers >= 1) and kept as ``self.dim`` and
    ``self.batch``; the subclass checks its other settings and fills ``config``."""

    batched = True

    def __init__(self, lipschitz: float, seed: int, dtype: Any, device: Any, *, dim: int, batch: int) -> None:
        super().__init__(lipschitz, seed, dtype, device)
        self.dim = check_positive_int(dim, "dim")
        self.batch = check_positive_int(batch, "batch")
        self.x0 = self._to(torch.zeros(self.batch, self.dim))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x - self.target).pow(2).sum()

    def initial_point(self) -> torch.Tensor:
        return self.x0.clone()


def is_batched(problem: Any) -> bool:
    """The problem's declaration ``batched`` (False where it has none): whether dimension 0
    of its state holds independent samples that the solvers may stop one by one."""
    batched = getattr(problem, "batched", False)
    if not isinstance(batched, bool):
        raise ValueError(f"problem.batched must be True or False, got {batched!r} (on {type(problem).__name__})")
    return batched


def orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-random n x n orthogonal matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)
