"""Reversible DEQ: the exact gradient of a finite, reversible coupled iteration at a memory that
does not grow with its length."""

from __future__ import annotations

import math
from typing import Any

import torch

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
    vector-Jacobian products backward.

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
        beta, keep = self.beta, 1.0 - self.beta
        x0 = problem.initial_point().detach()
        norm = torch.linalg.vector_norm
        with torch.no_grad():
            y, z = x0, x0
            z_max = y_max = norm(x0)
            steps, met = 0, False
            forward_residual = math.nan
            for n in range(self.depth):
                tz = op(z)
                if n == 0:
                    forward_residual = float(norm(tz - z))
                y = keep * y + beta * tz
                z_new = keep * z + beta * op(y)
                steps += 1
                step_size = norm(z_new - z) if self.tol is not None else None
                z = z_new
                z_max, y_max = torch.maximum(z_max, norm(z)), torch.maximum(y_max, norm(y))
                if step_size is not None and float(step_size) <= self.tol * float(norm(z)):
                    met = True
                    break
        z_out = z.detach().requires_grad_(True)
        loss_grads = torch.autograd.grad(problem.loss(z_out), [z_out, *params], allow_unused=True)
        gz, gy = loss_grads[0], torch.zeros_like(z)
        grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(loss_grads[1:], params, strict=True)]
        for _ in range(steps):
            # invert the second half-step with T(y_{n+1}); J(y_{n+1})^T gz updates gy
            y_leaf = y.detach().requires_grad_(True)
            f_y = op(y_leaf)
            z = torch.add(z, f_y.detach(), alpha=-beta).div_(keep)
            (j_y,) = torch.autograd.grad(f_y, y_leaf, gz, retain_graph=True)
            gy = torch.add(gy, j_y, alpha=beta)
            # invert the first half-step with T(z_n); one product gives J(z_n)^T gy and both
            # evaluations' B^T terms (theta's part of the graph, e.g. a normalised weight, is
            # back-propagated once per step)
            z_leaf = z.detach().requires_grad_(True)
            f_z = op(z_leaf)
            y = torch.add(y, f_z.detach(), alpha=-beta).div_(keep)
            out = torch.autograd.grad([f_y, f_z], [z_leaf, *params], [gz, gy], allow_unused=True)
            torch._foreach_add_(
                grads,
                [d if d is not None else torch.zeros_like(g) for d, g in zip(out[1:], grads, strict=True)],
                alpha=beta,
            )
            gz = torch.add(out[0], gz, alpha=keep / beta).mul_(beta)
            gy = gy.mul_(keep)
        z_max, y_max = float(z_max), float(y_max)
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
            # y, z and their adjoints: what the backward holds besides one graph of T
            workspace_bytes=4 * x0.numel() * x0.element_size(),
        )
        return Estimate(grad=grad.detach(), x=z_out.detach(), state=None, stats=stats)

    def __repr__(self) -> str:
        return f"RevDEQ(depth={self.depth}, beta={self.beta})"
