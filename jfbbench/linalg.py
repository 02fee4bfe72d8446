"""Spectral quantities of an operator's Jacobian, from Jacobian-vector products only."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import jvp, vjp

Tensor = torch.Tensor


def jacobian_spectral_norm(
    f: Callable[[Tensor], Tensor], x: Tensor, iters: int = 100, tol: float = 1e-10, seed: int = 0
) -> float:
    """||df/dx (x)||_2 by power iteration on J^T J (one JVP and one VJP per iteration).

    The estimate approaches the norm from below; ``tol`` stops on the relative change.
    """
    x = x.detach()
    g = torch.Generator(device="cpu").manual_seed(seed)
    w = torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)
    w = w / torch.linalg.vector_norm(w)
    _, pullback = vjp(f, x)
    sigma = 0.0
    for _ in range(iters):
        _, jw = jvp(f, (x,), (w,))
        jw = jw.detach()
        (jtjw,) = pullback(jw)
        jtjw = jtjw.detach()
        new = float(torch.linalg.vector_norm(jtjw)) ** 0.5
        if new == 0.0:
            return 0.0
        w = jtjw / torch.linalg.vector_norm(jtjw)
        if abs(new - sigma) <= tol * new:
            sigma = new
            break
        sigma = new
    return sigma


def jacobian_spectral_radius(
    f: Callable[[Tensor], Tensor], x: Tensor, iters: int = 200, dense_max_dim: int = 2048, seed: int = 0
) -> float:
    """Spectral radius of df/dx(x): exact eigenvalues of the dense Jacobian for small n,
    otherwise the power-iteration estimate lim ||J^k w||^{1/k}."""
    x = x.detach()
    n = x.numel()
    if n <= dense_max_dim:
        jac = torch.func.jacrev(lambda z: f(z.reshape(x.shape)).reshape(-1))(x.reshape(-1))
        return float(torch.linalg.eigvals(jac).abs().max())
    g = torch.Generator(device="cpu").manual_seed(seed)
    w = torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)
    w = w / torch.linalg.vector_norm(w)
    log_growth = 0.0
    for _ in range(iters):
        _, w = jvp(f, (x,), (w,))
        w = w.detach()
        nrm = float(torch.linalg.vector_norm(w))
        if nrm == 0.0:
            return 0.0
        log_growth += torch.log(torch.tensor(nrm)).item()
        w = w / nrm
    return float(torch.exp(torch.tensor(log_growth / iters)))


def dense_jacobian(out: Tensor, inp: Tensor) -> Tensor:
    """The dense Jacobian d out / d inp (numel(out) x numel(inp)) by one VJP per row."""
    n = out.numel()
    eye = torch.eye(n, dtype=out.dtype, device=out.device).reshape(n, *out.shape)
    try:
        (rows,) = torch.autograd.grad(out, inp, eye, retain_graph=True, is_grads_batched=True)
    except RuntimeError:
        rows = torch.stack([torch.autograd.grad(out, inp, e, retain_graph=True)[0] for e in eye])
    return rows.reshape(n, inp.numel())


def flat_params_grad(out: Tensor, params: list[Tensor], grad_out: Tensor, create_graph: bool = False) -> Tensor:
    """B^T w = (d out / d params)^T w, flattened over every parameter (zeros for unused ones)."""
    grads = torch.autograd.grad(out, params, grad_out, retain_graph=True, create_graph=create_graph, allow_unused=True)
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params, strict=True)]
    )


def parameter_jacobian_norm(
    f: Callable[[Tensor], Tensor],
    x: Tensor,
    params: list[Tensor],
    iters: int = 500,
    tol: float = 1e-12,
    seed: int = 0,
    dense_max_dim: int = 2048,
) -> float:
    """||B||_2 with B = d f(x) / d theta (n x p, theta = ``params`` flattened and concatenated).

    For n <= ``dense_max_dim`` B is formed with one batched vector-Jacobian product per row
    and its exact 2-norm returned. Otherwise power iteration on B^T B: B^T u is a VJP, B w a
    Jacobian-vector product in theta obtained by double backward (the derivative in u of
    <B^T u, w>); the estimate approaches the norm from below and stops when its relative
    change falls under ``tol``.
    """
    x = x.detach()
    with torch.enable_grad():
        fx = f(x)
        if fx.numel() <= dense_max_dim:
            return float(torch.linalg.matrix_norm(dense_parameter_jacobian(fx, params), 2))
        p = sum(t.numel() for t in params)
        g = torch.Generator(device="cpu").manual_seed(seed)
        w = torch.randn(p, generator=g, dtype=fx.dtype).to(fx.device)
        w = w / torch.linalg.vector_norm(w)
        sigma = 0.0
        for _ in range(iters):
            u = torch.zeros_like(fx, requires_grad=True)
            btu = flat_params_grad(fx, params, u, create_graph=True)
            (bw,) = torch.autograd.grad(btu @ w, u, retain_graph=True)
            btbw = flat_params_grad(fx, params, bw.detach()).detach()
            new = float(torch.linalg.vector_norm(btbw)) ** 0.5
            if new == 0.0:
                return 0.0
            w = btbw / torch.linalg.vector_norm(btbw)
            if abs(new - sigma) <= tol * new:
                return new
            sigma = new
        return sigma


def dense_parameter_jacobian(fx: Tensor, params: list[Tensor]) -> Tensor:
    """The dense B = d fx / d params (numel(fx) x p) from a graph ``fx`` that depends on
    ``params``, one (batched) vector-Jacobian product per row."""
    n = fx.numel()
    eye = torch.eye(n, dtype=fx.dtype, device=fx.device).reshape(n, *fx.shape)
    try:
        grads = torch.autograd.grad(fx, params, eye, retain_graph=True, allow_unused=True, is_grads_batched=True)
        rows = torch.cat(
            [
                (g if g is not None else torch.zeros(n, *p.shape, dtype=p.dtype, device=p.device)).reshape(n, -1)
                for g, p in zip(grads, params, strict=True)
            ],
            dim=1,
        )
    except RuntimeError:
        rows = torch.stack([flat_params_grad(fx, params, e) for e in eye])
    return rows.detach()


def newton_fixed_point(f: Callable[[Tensor], Tensor], x0: Tensor, iters: int = 50) -> Tensor:
    """x* = f(x*) to machine precision by Newton's method on x - f(x) with the dense Jacobian
    (small n only): independent of the library's fixed-point and adjoint solvers."""
    x = x0.detach()
    eye = torch.eye(x.numel(), dtype=x.dtype, device=x.device)
    for _ in range(iters):
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            fx = f(xr)
            r = (xr - fx).detach().reshape(-1)
            if float(r.norm()) <= 1e-15 * max(1.0, float(fx.detach().norm())):
                break
            jac = dense_jacobian(fx, xr)
        x = (x.reshape(-1) - torch.linalg.solve(eye - jac, r)).reshape(x.shape).detach()
    return x


def contraction_at(
    f: Callable[[Tensor], Tensor], x: Tensor, dense_max_dim: int = 2048, seed: int = 0
) -> dict[str, float | str]:
    """The contraction present at x (docs/theory.md, "Reading rho"): ``rho_loc`` = ||df/dx (x)||_2,
    ``spectral_radius`` of df/dx (x) and ``contraction_method``: ``"dense"`` (the Jacobian
    formed, exact norm and eigenvalues) for numel(x) <= ``dense_max_dim``, otherwise
    ``"power_iteration"`` (:func:`jacobian_spectral_norm` on J^T J with JVPs and VJPs, and
    :func:`jacobian_spectral_radius`'s estimate lim ||J^k w||^{1/k}, both from below)."""
    x = x.detach()
    if x.numel() <= dense_max_dim:
        jac = torch.func.jacrev(lambda z: f(z.reshape(x.shape)).reshape(-1))(x.reshape(-1)).detach()
        return dict(
            rho_loc=float(torch.linalg.matrix_norm(jac, 2)),
            spectral_radius=float(torch.linalg.eigvals(jac).abs().max()),
            contraction_method="dense",
        )
    return dict(
        rho_loc=jacobian_spectral_norm(f, x, iters=300, seed=seed),
        spectral_radius=jacobian_spectral_radius(f, x, dense_max_dim=dense_max_dim, seed=seed),
        contraction_method="power_iteration",
    )
