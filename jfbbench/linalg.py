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
