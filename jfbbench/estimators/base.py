"""The estimator protocol and what every estimator shares: argument checks, operator and VJP
counting, and the assembly of a flat gradient from autograd."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .._validation import check_choice, check_depth, check_tol, default_tol
from ..problems.base import is_batched
from ..solvers import FORWARD_METHODS, fixed_point

Tensor = torch.Tensor


@dataclass
class Estimate:
    """What one gradient call returns.

    Attributes
    ----------
    grad
        The flattened total derivative of the loss at the estimate,
        dL/dtheta = dL/dtheta|_x + (dT/dtheta)^T u (or the estimator's approximation of the
        second term), for ``problem.parameters()`` concatenated in order.
    x
        The (detached) iterate the loss was evaluated at.
    state
        What to pass to the next call: for ``restarted_jfb`` the detached last iterate; for an
        estimator built with ``warm_start=True`` the equilibrium x it solved for (``deq``: the
        pair (x, u) with u the adjoint solution); None otherwise.
    stats
        At least ``operator_evals`` (applications of T), ``vjp_evals`` (derivative products with
        J^T or B^T, i.e. backward passes through T; the one backward pass through L is not
        counted), ``forward_residual`` (||T(x) - x|| where the graph starts) and ``converged``
        (of the forward solve; None for estimators that make none); ``jvp_evals``, products
        with J (forward-mode, or the transpose of a VJP), where an estimator takes any
        (absent: none); the built-in estimators add ``workspace_bytes``, the most bytes their
        solvers held at once (Anderson's history, the GMRES basis; 0 without a solver).
    """

    grad: Tensor
    x: Tensor
    state: Tensor | tuple[Tensor, ...] | None = None
    stats: dict[str, Any] = field(default_factory=dict)


class CountingOperator:
    """Wraps ``problem.operator`` and counts its evaluations."""

    def __init__(self, problem: Any) -> None:
        self.problem = problem
        self.evals = 0

    def __call__(self, x: Tensor) -> Tensor:
        self.evals += 1
        return self.problem.operator(x)


def check_parameters(problem: Any) -> list[Tensor]:
    params = list(problem.parameters())
    if not params:
        raise ValueError(f"problem {problem!r} has no parameters to differentiate")
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor) or not p.requires_grad:
            raise ValueError(
                f"problem.parameters()[{i}] must be a tensor with requires_grad=True, got {type(p).__name__}"
            )
        if not torch.isfinite(p).all():
            raise ValueError(f"problem.parameters()[{i}] (shape {tuple(p.shape)}) holds NaN or infinite values")
    return params


def flat_grad(output: Tensor, params: list[Tensor], grad_outputs: Tensor | None = None) -> Tensor:
    """d output / d params, flattened and concatenated; zeros for unused parameters.
    Uses ``torch.autograd.grad``, so no ``.grad`` attribute is ever set."""
    return _flatten(torch.autograd.grad(output, params, grad_outputs, allow_unused=True), params)


def _flatten(grads: Sequence[Tensor | None], params: list[Tensor]) -> Tensor:
    """Gradients of ``params`` flattened and concatenated, zeros for the unused (None)."""
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params, strict=True)]
    )


def loss_gradients(loss: Tensor, x: Tensor, params: list[Tensor]) -> tuple[Tensor, Tensor]:
    """(v, d) from one backward pass through the loss: v = dL/dx at x, and d = dL/dtheta at
    fixed x, the loss's direct dependence on theta (a trainable read-out head, a regulariser
    on theta), flattened as :func:`flat_grad` (zeros where the loss does not use a
    parameter). The total derivative an implicit estimator returns is B^T u + d."""
    v, *direct = torch.autograd.grad(loss, [x, *params], allow_unused=True)
    v = torch.zeros_like(x) if v is None else v
    return v, _flatten(direct, params)


def flat_sum(params: list[Tensor], *grads: Sequence[Tensor | None]) -> Tensor:
    """The sum of several lists of per-parameter gradients (None: zero, as
    ``torch.autograd.grad(..., allow_unused=True)`` gives for an unused parameter), flattened
    and concatenated in the order of ``params``."""
    out = []
    for i, p in enumerate(params):
        parts = [g[i] for g in grads if g[i] is not None]
        out.append((sum(parts[1:], parts[0]) if parts else torch.zeros_like(p)).reshape(-1))
    return torch.cat(out)


def start_point(problem: Any, state: Tensor | None) -> Tensor:
    """The iterate a call starts from: ``state`` (checked against the problem's x) or, when
    None, the problem's cold start. Detached."""
    x0 = problem.initial_point().detach()
    if state is None:
        return x0
    if not isinstance(state, torch.Tensor) or state.shape != x0.shape:
        got = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
        raise ValueError(f"state must be a tensor of shape {tuple(x0.shape)} (the problem's x), got {got}")
    return state.detach().to(dtype=x0.dtype, device=x0.device)


def unroll(op: Callable[[Tensor], Tensor], x: Tensor, steps: int) -> tuple[Tensor, float]:
    """Apply ``op`` ``steps`` times from x (graph kept if grad mode is on); returns the last
    iterate and ||T(x) - x|| at the first step (where the graph starts)."""
    first_residual = float("nan")
    for k in range(steps):
        nxt = op(x)
        if k == 0:
            first_residual = float(torch.linalg.vector_norm((nxt - x).detach()))
        x = nxt
    return x, first_residual


class Estimator:
    """Base of the estimators. ``gradient(problem, state=None) -> Estimate``.

    Subclasses implement :meth:`_gradient`. The forward solve's settings are ``tol`` (None:
    1e-12 in float64, 1e-5 in float32), ``max_iter``, ``solver`` (``picard``, ``anderson``,
    ``broyden`` or ``auto``: see :func:`jfbbench.solvers.fixed_point`), ``memory`` (of
    Anderson and Broyden), ``mix_every`` (Anderson mixes every this many steps; None:
    ``jfbbench.solvers.ANDERSON_MIX_EVERY``, 1: classical Anderson) and ``per_sample`` (True:
    each sample of the state, dimension 0, stops at its own tolerance; False: the state is
    one vector; None: as the problem declares with its ``batched`` attribute, whole-tensor
    where it declares nothing; see :meth:`per_sample_on`).

    ``warm_start=True`` (estimators that solve for x*: ``supports_warm_start``) starts the
    forward solve from the ``state`` passed in (the cold start when None) and returns the
    solution as ``Estimate.state``, so that a training loop (or m calls at a fixed theta)
    restarts each solve where the previous one ended, as restarted JFB does. The instance
    is then ``stateful``.
    """

    #: the forward solver when none is given
    default_solver = "picard"
    #: the one forward solver the estimator runs with (None: any), and why: any other is
    #: refused, and it is the default
    required_solver: str | None = None
    required_solver_reason = ""

    name = "estimator"
    uses_depth = True
    stateful = False
    supports_warm_start = False
    #: Whether it solves the forward problem to ``tol`` (the settings tol, max_iter, solver).
    solves = True
    #: Whether one call keeps the graph of ``depth`` applications of T for its backward pass
    #: (unrolling, JFB-K, phantom, restarted JFB), so that its memory grows as ``depth`` states.
    keeps_depth_graph = False

    def __init__(
        self,
        depth: int = 1,
        tol: float | None = None,
        max_iter: int = 20000,
        solver: str | None = None,
        memory: int | None = None,
        per_sample: bool | None = None,
        warm_start: bool = False,
        mix_every: int | None = None,
    ) -> None:
        self.depth = check_depth(depth)
        self.tol = check_tol(tol)
        self.max_iter = check_depth(max_iter, "max_iter")
        required = self.required_solver
        if required is not None and solver not in (None, required):
            raise ValueError(
                f"solver must be {required!r} for {self.name} ({self.required_solver_reason}), got {solver!r}"
            )
        default = required or self.default_solver
        self.solver = check_choice(default if solver is None else solver, "solver", FORWARD_METHODS)
        self.memory = None if memory is None else check_depth(memory, "memory")
        self.mix_every = None if mix_every is None else check_depth(mix_every, "mix_every")
        if per_sample not in (None, True, False):
            raise ValueError(f"per_sample must be True, False or None, got {per_sample!r}")
        self.per_sample = per_sample
        if not isinstance(warm_start, bool):
            raise ValueError(f"warm_start must be True or False, got {warm_start!r}")
        if warm_start and not self.supports_warm_start:
            raise ValueError(
                f"estimator {self.name!r} has no forward solve to warm-start; warm_start=True is allowed for "
                "deq, jfb, phantom and neumann"
            )
        self.warm_start = warm_start
        self.stateful = type(self).stateful or warm_start

    def config(self) -> dict[str, Any]:
        return dict(depth=self.depth if self.uses_depth else None)

    def cold_state(self, problem: Any) -> Tensor | tuple[Tensor, ...]:
        """The state that stands for "no state" (the cold start), for filling the rows of a
        batch whose samples have none yet (:class:`StateBank`)."""
        return problem.initial_point().detach()

    def forward_start(self, problem: Any, state: Tensor | None) -> Tensor:
        """Where the forward solve starts: the state passed in when warm-starting, else the
        cold start."""
        return start_point(problem, state if self.warm_start else None)

    def forward_tol(self, x: Tensor) -> float:
        return self.tol if self.tol is not None else default_tol(x.dtype)

    def per_sample_on(self, problem: Any) -> bool:
        """Whether the solves stop sample by sample on ``problem``: ``per_sample`` when it was
        given, else the problem's declaration ``batched`` (False where it has none: the state is
        solved as one vector, which is right whatever its rows couple)."""
        return is_batched(problem) if self.per_sample is None else self.per_sample

    def solve(self, op: Callable[[Tensor], Tensor], x0: Tensor) -> tuple[Tensor, dict]:
        """The forward solve of ``op`` from ``x0`` to ``forward_tol``. ``op`` is the
        :class:`CountingOperator` of the problem, whose declaration decides per-sample
        stopping (:meth:`per_sample_on`); any other callable is solved as one vector unless
        ``per_sample=True``."""
        problem = op.problem if isinstance(op, CountingOperator) else None
        return fixed_point(
            op,
            x0,
            self.forward_tol(x0),
            self.max_iter,
            method=self.solver,
            memory=self.memory,
            per_sample=self.per_sample_on(problem),
            mix_every=self.mix_every,
        )

    def gradient(self, problem: Any, state: Tensor | None = None) -> Estimate:
        params = check_parameters(problem)
        if state is not None and not self.stateful:
            raise ValueError(f"estimator {self.name!r} keeps no state; state must be None, got a tensor")
        with torch.enable_grad():
            return self._gradient(problem, params, state)

    def _gradient(self, problem: Any, params: list[Tensor], state: Tensor | None) -> Estimate:
        raise NotImplementedError

    def state_memory_bound(self, problem: Any) -> int | None:
        """A lower bound on the bytes one call on ``problem`` holds at once: where the estimator
        keeps the graph of ``depth`` steps (:attr:`keeps_depth_graph`), autograd keeps at
        least the input of each application of T, ``depth`` states of ``problem``'s size;
        None where it bounds nothing. A sweep refuses, before measuring, a point whose bound
        passes the memory available."""
        if not self.keeps_depth_graph:
            return None
        x = problem.initial_point()
        return self.depth * x.numel() * x.element_size() if isinstance(x, torch.Tensor) else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(depth={self.depth})"
