"""Forward fixed-point and adjoint linear solvers.

The fixed-point loop lives here once; estimators call these functions. Each solver returns
its result and a dict of statistics (iterations, residual, converged), in the manner of
TorchDEQ's solvers. A solve that stops at ``max_iter`` says ``converged=False`` and warns.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

Tensor = torch.Tensor


class ConvergenceWarning(UserWarning):
    """A forward or adjoint solve stopped at max_iter before reaching its tolerance."""


def _norm(t: Tensor) -> float:
    return float(torch.linalg.vector_norm(t))


def fixed_point(
    f: Callable[[Tensor], Tensor],
    x0: Tensor,
    tol: float,
    max_iter: int,
    method: str = "picard",
    memory: int = 5,
) -> tuple[Tensor, dict]:
    """Solve x = f(x) from x0 without building a graph.

    Stops when ||f(x) - x|| <= tol ||f(x)||. ``method="picard"`` is x <- f(x) (rate rho);
    ``"anderson"`` is Anderson acceleration (type II, ``memory`` past iterates).
    Returns (x, stats) with stats ``iterations`` (evaluations of f), ``residual``
    (the last ||f(x) - x||), ``relative_residual``, ``converged`` and ``workspace_bytes``:
    the most bytes the solver held beyond x and f(x) (Anderson: its m + 1 past iterates and
    residuals and the two n x m difference matrices; Picard: 0).
    """
    with torch.no_grad():
        x = x0.detach()
        fx = f(x)
        evals = 1
        res = _norm(fx - x)
        rel = res / max(_norm(fx), torch.finfo(x.dtype).tiny)
        xs: list[Tensor] = []
        gs: list[Tensor] = []
        workspace = 0
        while not (rel <= tol or res == 0.0) and evals < max_iter:
            if method == "anderson":
                xs.append(x.reshape(-1))
                gs.append((fx - x).reshape(-1))
                if len(xs) > memory + 1:
                    xs.pop(0)
                    gs.pop(0)
                if len(xs) >= 2:
                    dg = torch.stack([gs[i + 1] - gs[i] for i in range(len(gs) - 1)], 1)
                    dx = torch.stack([xs[i + 1] - xs[i] for i in range(len(xs) - 1)], 1)
                    held = sum(t.numel() for t in xs + gs) + dg.numel() + dx.numel()
                    workspace = max(workspace, held * x.element_size())
                    gamma = torch.linalg.lstsq(dg, gs[-1].unsqueeze(1)).solution
                    x = (xs[-1] + gs[-1] - ((dx + dg) @ gamma).squeeze(1)).reshape(x.shape)
                else:
                    x = fx
            else:
                x = fx
            fx = f(x)
            evals += 1
            res = _norm(fx - x)
            rel = res / max(_norm(fx), torch.finfo(x.dtype).tiny)
        converged = rel <= tol or res == 0.0
        if not converged:
            warnings.warn(
                f"forward fixed-point solve stopped at max_iter={max_iter} with relative residual "
                f"{rel:.3e} > tol={tol:.1e}",
                ConvergenceWarning,
                stacklevel=3,
            )
        # return f(x): one more contraction step, and the point whose residual was measured
        stats = dict(
            iterations=evals, residual=res, relative_residual=rel, converged=converged, workspace_bytes=workspace
        )
        return fx, stats


def adjoint_fixed_point(
    vjp: Callable[[Tensor], Tensor], v: Tensor, tol: float, max_iter: int, u0: Tensor | None = None
) -> tuple[Tensor, dict]:
    """Solve (I - J^T) u = v by u <- J^T u + v, with ``vjp(w) = J^T w``, from ``u0`` (None:
    from v, the first step from 0; a warm start passes the previous solution).

    Stops when ||J^T u + v - u|| <= tol ||J^T u + v||: the step relative to the new iterate,
    as the forward solve's residual is relative to f(x) (and as TorchDEQ's backward
    ``stop_mode="rel"``). The relative error of u is then at most tol rho / (1 - rho).
    """
    u = v.clone() if u0 is None else u0.detach().to(dtype=v.dtype, device=v.device).reshape(v.shape)
    tiny = torch.finfo(v.dtype).tiny
    evals = 0
    rel = float("inf")
    while evals < max_iter:
        un = vjp(u) + v
        evals += 1
        rel = _norm(un - u) / max(_norm(un), tiny)
        u = un
        if rel <= tol:
            break
    converged = rel <= tol
    if not converged:
        warnings.warn(
            f"adjoint fixed-point solve stopped at max_iter={max_iter} with relative residual {rel:.3e} > tol={tol:.1e}",
            ConvergenceWarning,
            stacklevel=3,
        )
    return u, dict(iterations=evals, relative_residual=rel, converged=converged, workspace_bytes=0)


def gmres(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    tol: float,
    max_iter: int,
    restart: int = 40,
    u0: Tensor | None = None,
) -> tuple[Tensor, dict]:
    """Restarted GMRES for A u = b with ``matvec(w) = A w`` (any tensor shape), from ``u0``
    (None: from 0; a warm start costs one matvec for its residual).

    Stops when ||b - A u|| <= tol ||b||; ``max_iter`` bounds the number of matvecs.
    ``workspace_bytes`` in the stats: the Krylov basis (n x (m + 1)) and the Hessenberg
    matrix ((m + 1) x m) of the largest cycle, m <= ``restart``.
    """
    shape, dtype = b.shape, b.dtype
    bf = b.reshape(-1)
    bn = max(_norm(bf), torch.finfo(dtype).tiny)
    evals = 0
    workspace = 0
    if u0 is None:
        u = torch.zeros_like(bf)
        r = bf.clone()
    else:
        u = u0.detach().to(dtype=dtype, device=b.device).reshape(-1).clone()
        r = bf - matvec(u.reshape(shape)).reshape(-1)
        evals += 1
    rel = _norm(r) / bn
    while rel > tol and evals < max_iter:
        m = min(restart, max_iter - evals)
        beta = _norm(r)
        Q = torch.zeros(bf.numel(), m + 1, dtype=dtype, device=b.device)
        H = torch.zeros(m + 1, m, dtype=dtype, device=b.device)
        workspace = max(workspace, (Q.numel() + H.numel()) * Q.element_size())
        Q[:, 0] = r / beta
        k_done = 0
        for k in range(m):
            w = matvec(Q[:, k].reshape(shape)).reshape(-1)
            evals += 1
            for _ in range(2):  # modified Gram-Schmidt, twice for stability
                h = Q[:, : k + 1].T @ w
                w = w - Q[:, : k + 1] @ h
                H[: k + 1, k] += h
            H[k + 1, k] = torch.linalg.vector_norm(w)
            k_done = k + 1
            e1 = torch.zeros(k + 2, dtype=dtype, device=b.device)
            e1[0] = beta
            y = torch.linalg.lstsq(H[: k + 2, : k + 1], e1.unsqueeze(1)).solution.squeeze(1)
            res_k = _norm(e1 - H[: k + 2, : k + 1] @ y) / bn
            if float(H[k + 1, k]) <= torch.finfo(dtype).eps * beta or res_k <= tol:
                break
            Q[:, k + 1] = w / H[k + 1, k]
        u = u + Q[:, :k_done] @ y
        r = bf - matvec(u.reshape(shape)).reshape(-1)
        evals += 1
        rel = _norm(r) / bn
    converged = rel <= tol
    if not converged:
        warnings.warn(
            f"GMRES adjoint solve stopped at max_iter={max_iter} matvecs with relative residual {rel:.3e} > tol={tol:.1e}",
            ConvergenceWarning,
            stacklevel=3,
        )
    return u.reshape(shape), dict(
        iterations=evals, relative_residual=rel, converged=converged, workspace_bytes=workspace
    )


def dense_jacobian(out: Tensor, inp: Tensor) -> Tensor:
    """The dense Jacobian d out / d inp (numel(out) x numel(inp)) by one VJP per row."""
    n = out.numel()
    eye = torch.eye(n, dtype=out.dtype, device=out.device).reshape(n, *out.shape)
    try:
        (rows,) = torch.autograd.grad(out, inp, eye, retain_graph=True, is_grads_batched=True)
    except RuntimeError:
        rows = torch.stack([torch.autograd.grad(out, inp, e, retain_graph=True)[0] for e in eye])
    return rows.reshape(n, inp.numel())
