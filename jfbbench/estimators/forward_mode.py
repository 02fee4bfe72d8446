"""Forward-mode unrolling: the exact K-step gradient carried forward with Jacobian-vector
products, at a memory that does not grow with K."""

from __future__ import annotations

from typing import Any

import torch

from .base import CountingOperator, Estimate, Estimator, flat_sum

Tensor = torch.Tensor

#: The most numbers (columns x entries of x and theta) one batched JVP call may hold at once.
CHUNK_NUMBERS = 1 << 24


def check_max_params(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_params must be an integer >= 1, got {value!r}")
    return value


def step_tangents(f: Tensor, x: Tensor, params: list[Tensor], tangents: Tensor, first: int) -> Tensor:
    """J X + B E for the columns ``first`` ... ``first + count - 1``: X = ``tangents`` ``(count, *x.shape)``
    the tangents of x, E the matching columns of the identity in theta (flattened and
    concatenated ``params``), J = df/dx, B = df/dtheta at the graph ``f``
    built from the leaf ``x``. By double backward: the gradient in w of
    <J^T w, X_j> + <B^T w, e_j>, one batched call over the columns (``is_grads_batched``).
    Returns ``(count, *f.shape)``."""
    count = tangents.shape[0]
    w = torch.zeros_like(f, requires_grad=True)
    firsts = torch.autograd.grad(f, [x, *params], w, create_graph=True, allow_unused=True)
    outputs, directions = [], []
    offset = 0
    columns = torch.arange(count, device=x.device)
    for g, p in zip(firsts, [x, *params], strict=True):
        if p is x:
            direction = tangents
        else:
            n = p.numel()
            direction = torch.zeros(count, n, dtype=p.dtype, device=p.device)
            inside = (columns + first >= offset) & (columns + first < offset + n)
            direction[columns[inside], columns[inside] + first - offset] = 1.0
            direction = direction.reshape(count, *p.shape)
            offset += n
        if g is not None and g.requires_grad and bool(direction.any()):
            outputs.append(g)
            directions.append(direction)
    if not outputs:
        return torch.zeros(count, *f.shape, dtype=f.dtype, device=f.device)
    (out,) = torch.autograd.grad(outputs, w, directions, is_grads_batched=True, allow_unused=True)
    return out if out is not None else torch.zeros(count, *f.shape, dtype=f.dtype, device=f.device)


class ForwardMode(Estimator):
    r"""Forward-mode differentiation of K = ``depth`` steps from the cold start (Franceschi,
    Donini, Frasconi, Pontil, *Forward and Reverse Gradient-Based Hyperparameter
    Optimization*, ICML 2017, arXiv 1703.01785; real-time recurrent learning).

    x_{k+1} = T(x_k) and its tangents X_k = dx_k/dtheta (one column per entry of theta) are
    carried together:

        X_0 = 0,   X_{k+1} = J(x_k) X_k + B(x_k),   dL/dtheta = X_K^T grad_x L(x_K) + dL/dtheta|_x,

    the exact gradient of L(x_K) through the K steps, equal to ``unrolled``'s at the same K.
    Its memory (x and X: (p + 1) states for p parameters) does not grow with K; its cost does
    grow with p: p Jacobian-vector products per step. This is the tool for a few parameters
    (a step size, a regularisation weight); a problem with more than ``max_params``
    parameters is refused at once rather than run for hours.

    Each step's p JVPs are taken by batched double backward through one vector-Jacobian
    product of T (counted in ``vjp_evals``: K, or K times the number of chunks of columns
    when p (d + p) numbers pass ``CHUNK_NUMBERS``); ``jvp_evals`` counts the columns carried
    through the steps (K p).
    """

    name = "forward_mode"
    solves = False

    def __init__(self, depth: int = 1, max_params: int = 10_000, **settings: Any) -> None:
        super().__init__(depth, **settings)
        self.max_params = check_max_params(max_params)

    def _gradient(self, problem: Any, params: list[Tensor], state: Tensor | None) -> Estimate:
        total = sum(p.numel() for p in params)
        if total > self.max_params:
            raise ValueError(
                f"forward_mode carries one tangent per parameter entry: the problem has {total} parameters, "
                f"above max_params={self.max_params} (raise max_params, or use a reverse-mode estimator such as unrolled)"
            )
        op = CountingOperator(problem)
        x = problem.initial_point().detach()
        tangents = torch.zeros(total, *x.shape, dtype=x.dtype, device=x.device)
        chunk = max(1, min(total, CHUNK_NUMBERS // (x.numel() + total)))
        forward_residual = float("nan")
        for k in range(self.depth):
            leaf = x.requires_grad_(True)
            f = op(leaf)
            if k == 0:
                forward_residual = float(torch.linalg.vector_norm((f - leaf).detach()))
            tangents = torch.cat(
                [step_tangents(f, leaf, params, tangents[i : i + chunk], i) for i in range(0, total, chunk)]
            )
            x = f.detach()
        leaf = x.requires_grad_(True)
        loss_grads = torch.autograd.grad(problem.loss(leaf), [leaf, *params], allow_unused=True)
        grad = tangents.reshape(total, -1) @ loss_grads[0].reshape(-1) + flat_sum(params, loss_grads[1:])
        stats = dict(
            operator_evals=op.evals,
            vjp_evals=self.depth * -(-total // chunk),
            jvp_evals=self.depth * total,
            forward_residual=forward_residual,
            converged=None,
            workspace_bytes=tangents.numel() * tangents.element_size(),
        )
        return Estimate(grad=grad.detach(), x=x.detach(), state=None, stats=stats)

    def __repr__(self) -> str:
        return f"ForwardMode(depth={self.depth}, max_params={self.max_params})"
