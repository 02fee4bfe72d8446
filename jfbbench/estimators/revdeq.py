"""Reversible DEQ: the exact gradient of a finite, reversible coupled iteration at a memory that
does not grow with its length."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.overrides import has_torch_function

from .base import CountingOperator, Estimate, Estimator

Tensor = torch.Tensor


def check_beta(value: Any) -> float:
    """beta in (0, 2) without 1: the coupled step is a contraction mixing for beta in (0, 2) and
    its inverse divides by 1 - beta."""
    try:
        beta = float(value)
    except (TypeError, ValueError):
        beta = math.nan
    if isinstance(value, bool) or not 0.0 < beta < 2.0:
        raise ValueError(f"beta must be a number in (0, 2) other than 1, got {value!r}")
    if beta == 1.0:
        raise ValueError(
            "beta must be a number in (0, 2) other than 1, got 1: the inverse step divides by 1 - beta, "
            "so at beta = 1 the iteration is not reversible"
        )
    return beta


try:  # the entry point torch.autograd.grad calls once its argument checks are done
    from torch.autograd.graph import _engine_run_backward
except ImportError:  # pragma: no cover - older or newer torch: torch.autograd.grad throughout
    _engine_run_backward = None

_direct_engine: bool | None = None


def _direct_engine_works() -> bool:
    """Whether autograd's engine can be called without :func:`torch.autograd.grad`'s Python
    argument checks (found once: a product on a two-element graph compared with its known
    value). Those checks cost about as much as back-propagating through a small T, and revdeq
    makes 2N products where unrolling makes one."""
    global _direct_engine
    if _direct_engine is None:
        try:
            with torch.enable_grad():
                x = torch.ones(2, dtype=torch.float64, requires_grad=True)
                (g,) = _engine_run_backward(  # type: ignore[misc]
                    (3.0 * x,), (torch.ones(2, dtype=torch.float64),), False, False, (x,), True, accumulate_grad=False
                )
            _direct_engine = bool(torch.equal(g, torch.full((2,), 3.0, dtype=torch.float64)))
        except Exception:  # noqa: BLE001 - any failure: use the public API
            _direct_engine = False
    return _direct_engine


def _vjp(
    outputs: tuple[Tensor, ...], cotangents: tuple[Tensor, ...], inputs: tuple[Tensor, ...], direct: bool, keep: bool
):
    """sum_i cotangents_i^T d outputs_i / d inputs (None for an input no output depends on).
    ``keep``: the graph is kept (freed with its last reference) rather than freed as the pass
    walks it."""
    if direct:
        return _engine_run_backward(outputs, cotangents, keep, False, inputs, True, accumulate_grad=False)  # type: ignore[misc]
    return torch.autograd.grad(outputs, inputs, cotangents, retain_graph=keep, allow_unused=True)


def _nodes(t: Tensor) -> Iterator[Any]:
    """The nodes of the graph behind ``t``, leaves' (AccumulateGrad) left out."""
    seen: set[Any] = set()
    stack = [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen or type(node).__name__ == "AccumulateGrad":
            continue
        seen.add(node)
        yield node
        stack.extend(f for f, _ in node.next_functions)


def shares_graph(a: Tensor, b: Tensor) -> bool:
    """Whether the graphs of two applications of T share a node other than a leaf's: a
    theta-only quantity the problem caches (a normalised weight, a step size) and reuses."""
    first = set(_nodes(a))
    return any(node in first for node in _nodes(b))


def _accumulate(grads: list[Tensor], parts: Sequence[Tensor | None]) -> None:
    if all(d is not None for d in parts):
        torch._foreach_add_(grads, list(parts))
    else:
        used = [i for i, d in enumerate(parts) if d is not None]
        if used:
            torch._foreach_add_([grads[i] for i in used], [parts[i] for i in used])  # type: ignore[misc]


def _backward(
    op: Callable[[Tensor], Tensor],
    params: list[Tensor],
    beta: float,
    carried: list[Tensor],
    steps: int,
    grads: list[Tensor],
    grouping: str | None,
) -> tuple[Tensor, Tensor]:
    """Walk ``steps`` coupled steps back from ``carried`` = [y_N, z_N, dL/dz_N] (emptied: the
    caller holds no reference to states that are replaced), adding each step's B^T terms to
    ``grads`` in place; returns the rebuilt (y_0, z_0).

    The adjoints are carried scaled by beta, a = beta gz and b = beta gy, so that each update
    is one lerp and the parameters' terms need no scaling: b <- (1 - beta) b + beta J(y_{n+1})^T a,
    theta_bar += B(y_{n+1})^T a + B(z_n)^T b, a <- (1 - beta) a + beta J(z_n)^T b.

    Two products per step, J(z_n)^T b needing the b that J(y_{n+1})^T a gives. ``grouping``
    says where the B^T terms of the first are taken: "split", each product with its own B^T
    term (every node of T's graph walked once per evaluation); "joint", the first product
    to y_{n+1} only and the second through both graphs to z_n and theta (the part of the
    first graph that leads to both y_{n+1} and theta is walked twice, but a theta-only
    subgraph both evaluations share, a cached weight, once per step). None: "joint" where
    the two evaluations share such a subgraph (:func:`shares_graph`, looked at once), else
    "split".
    """
    if grouping not in (None, "split", "joint"):
        raise ValueError(f"vjp_grouping must be None, 'split' or 'joint', got {grouping!r}")
    inverse = 1.0 / (1.0 - beta)
    direct = _engine_run_backward is not None and _direct_engine_works()
    y, z, a = carried
    carried.clear()
    a, b = a * beta, None
    keep = True
    for n in range(steps):
        y_leaf = y.detach().requires_grad_(True)
        f_y = op(y_leaf)
        z = torch.lerp(f_y.detach(), z, inverse)  # z_n = (z_{n+1} - beta T(y_{n+1})) / (1 - beta)
        z_leaf = z.detach().requires_grad_(True)
        f_z = op(z_leaf)
        y = torch.lerp(f_z.detach(), y, inverse)  # y_n = (y_{n+1} - beta T(z_n)) / (1 - beta)
        if n == 0:  # tensor subclasses go through torch.autograd.grad, which dispatches them
            direct = direct and not has_torch_function((f_y, f_z, *params))
            # a shared subgraph (a GraphCache'd weight) is kept valid for the next products and
            # steps; graphs that share nothing are freed as the products walk them
            keep = shares_graph(f_y, f_z)
            grouping = grouping or ("joint" if keep else "split")
        if grouping == "split":
            j_y, *parts = _vjp((f_y,), (a,), (y_leaf, *params), direct, keep)
            _accumulate(grads, parts)
        else:
            (j_y,) = _vjp((f_y,), (a,), (y_leaf,), direct, True)
        if j_y is None:  # T does not read x
            j_y = torch.zeros_like(y)
        b = j_y * beta if b is None else b.lerp_(j_y, beta)
        if grouping == "split":
            j_z, *parts = _vjp((f_z,), (b,), (z_leaf, *params), direct, keep)
        else:
            j_z, *parts = _vjp((f_y, f_z), (a, b), (z_leaf, *params), direct, keep)
        _accumulate(grads, parts)
        if j_z is not None:
            a.lerp_(j_z, beta)
        else:
            a.mul_(1.0 - beta)
        del f_y, f_z  # kept graphs go now: two at most at a time
    return y, z


class RevDEQ(Estimator):
    r"""Reversible DEQ (McCallum, Arora, Foster, *Reversible Deep Equilibrium Models*,
    arXiv 2509.12917, 2025).

    From the cold start y_0 = z_0 = x_0, N = ``depth`` coupled steps

        y_{n+1} = (1 - beta) y_n + beta T(z_n),
        z_{n+1} = (1 - beta) z_n + beta T(y_{n+1}),

    are run without a graph; the loss is taken at z_N. The backward pass walks the steps
    back, rebuilding each state from the next by the exact inverse

        z_n = (z_{n+1} - beta T(y_{n+1})) / (1 - beta),
        y_n = (y_{n+1} - beta T(z_n)) / (1 - beta),

    and back-propagates through the step with the two evaluations of T it made to invert it:
    from (gz, gy) = (dL/dz_N, 0), for n = N-1 ... 0,

        gy += beta J(y_{n+1})^T gz,           theta_bar += beta B(y_{n+1})^T gz,
        gz <- (1 - beta) gz + beta J(z_n)^T gy, theta_bar += beta B(z_n)^T gy,  gy <- (1 - beta) gy,

    then adds dL/dtheta (a loss with a trainable head): the total derivative of L(z_N)
    through the N coupled steps, which is not the implicit gradient at x* (its error to it
    decays with N as the iteration converges). Nothing of the trajectory is stored: what is
    held does not grow with N. Cost: 2N evaluations of T forward, 2N evaluations and 2N
    vector-Jacobian products backward, against unrolling's N and N: in time about three
    unrolled steps per coupled step where T's own work dominates, up to five on the smallest
    problems, where each of the 2N products pays the fixed cost of a backward call that
    unrolling pays once (``results/revdeq/speed.csv``). The products are grouped to walk
    what the two evaluations of a step share once (:func:`_backward`).

    ``beta`` in (0, 2) (1 refused: the inverse divides by 1 - beta). Every inverted step
    divides by 1 - beta, so round-off can grow geometrically along the way back. The
    reconstructed start is compared with the true one: ``reconstruction_error`` =
    ||z_0^rec - z_0|| / max_n ||z_n|| (the largest norm of the forward trajectory, tracked as
    it runs; the built-in cold starts are 0), ``reconstruction_error_y`` the same for y_0. When
    either passes ``reconstruction_tol`` (None: sqrt of the dtype's machine epsilon, 1.5e-8 in
    float64, 3.5e-4 in float32) or is not finite, ``reconstruction_ok`` and ``converged`` are
    False: the gradient is not to be trusted.

    ``tol`` (None by default: run all N steps) stops the forward iteration once
    ||z_{n+1} - z_n|| <= tol ||z_{n+1}||; N is then a cap, ``steps`` says how many were run and
    ``converged`` whether the tolerance was met (None without ``tol``).
    """

    name = "revdeq"
    solves = False
    #: where the backward takes each step's B^T terms: None (by the problem's graph), "split"
    #: or "joint" (see :func:`_backward`); the gradient is the same
    vjp_grouping: str | None = None

    def __init__(
        self,
        depth: int = 1,
        beta: float = 0.8,
        tol: float | None = None,
        reconstruction_tol: float | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(depth, tol, **settings)
        self.beta = check_beta(beta)
        if reconstruction_tol is not None:
            try:
                rt = float(reconstruction_tol)
            except (TypeError, ValueError):
                rt = math.nan
            if not 0.0 < rt < math.inf:
                raise ValueError(
                    f"reconstruction_tol must be a positive finite number or None, got {reconstruction_tol!r}"
                )
            reconstruction_tol = rt
        self.reconstruction_tol = reconstruction_tol

    def config(self) -> dict[str, Any]:
        return dict(depth=self.depth, beta=self.beta)

    def _gradient(self, problem: Any, params: list[Tensor], state: Tensor | None) -> Estimate:
        op = CountingOperator(problem)
        beta = self.beta
        x0 = problem.initial_point().detach()
        norm = torch.linalg.vector_norm
        with torch.no_grad():
            y, z = x0, x0
            peaks = list(torch._foreach_norm([x0, x0]))  # max_n ||z_n||, max_n ||y_n||
            steps, met = 0, False
            forward_residual = math.nan
            for n in range(self.depth):
                tz = op(z)
                if n == 0:
                    forward_residual = float(norm(tz - z))
                y = torch.lerp(y, tz, beta)  # (1 - beta) y + beta T(z)
                z_new = torch.lerp(z, op(y), beta)
                steps += 1
                step_size = norm(z_new - z) if self.tol is not None else None
                z = z_new
                torch._foreach_maximum_(peaks, torch._foreach_norm([z, y]))
                if step_size is not None and float(step_size) <= self.tol * float(norm(z)):
                    met = True
                    break
        z_out = z.detach().requires_grad_(True)
        gz, *direct = torch.autograd.grad(problem.loss(z_out), [z_out, *params], allow_unused=True)
        grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(direct, params, strict=True)]
        carried = [y, z, gz if gz is not None else torch.zeros_like(z)]
        del y, z, gz, z_new, tz  # y_N, z_N (but for z_out) and dL/dz_N are freed as the backward replaces them
        y, z = _backward(op, params, beta, carried, steps, grads, self.vjp_grouping)
        z_max, y_max = float(peaks[0]), float(peaks[1])
        err_z = float(torch.linalg.vector_norm(z - x0)) / max(z_max, torch.finfo(x0.dtype).tiny)
        err_y = float(torch.linalg.vector_norm(y - x0)) / max(y_max, torch.finfo(x0.dtype).tiny)
        tol = self.reconstruction_tol if self.reconstruction_tol is not None else torch.finfo(x0.dtype).eps ** 0.5
        ok = math.isfinite(err_z) and math.isfinite(err_y) and max(err_z, err_y) <= tol
        converged = (met if self.tol is not None else None) if ok else False
        grad = torch.cat([g.reshape(-1) for g in grads])
        stats = dict(
            operator_evals=op.evals,
            vjp_evals=2 * steps,
            forward_residual=forward_residual,
            converged=converged,
            steps=steps,
            reconstruction_error=err_z,
            reconstruction_error_y=err_y,
            reconstruction_ok=ok,
            # y, z and their adjoints: what the backward holds besides the graphs of T
            workspace_bytes=4 * x0.numel() * x0.element_size(),
        )
        return Estimate(grad=grad.detach(), x=z_out.detach(), state=None, stats=stats)

    def __repr__(self) -> str:
        return f"RevDEQ(depth={self.depth}, beta={self.beta})"
