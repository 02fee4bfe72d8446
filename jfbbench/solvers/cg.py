"""Conjugate gradients for the adjoint system, one recurrence per sample: ``cg`` on
A u = b for a symmetric positive definite A, ``cg_normal`` (CGLS) on the normal equations
A^T A u = A^T b for any nonsingular A, and ``symmetry_gap``, a two-product probe of whether
a linear map given by its transpose products is symmetric."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .._validation import check_depth
from ._progress import _Progress, _rows, _start, _warn, sample_count

Tensor = torch.Tensor


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample inner products of rows, (S, 1)."""
    return (a * b).sum(dim=1, keepdim=True)


def _safe_div(num: Tensor, den: Tensor, ok: Tensor) -> Tensor:
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def _krylov(
    apply: Callable[[Tensor], Tensor],
    normal: Callable[[Tensor], Tensor] | None,
    b: Tensor,
    tol: float,
    max_iter: int,
    u0: Tensor | None,
    per_sample: bool | None,
    check_every: int,
    what: str,
) -> tuple[Tensor, dict]:
    """The loop of :func:`cg` (``normal`` None) and :func:`cg_normal` (``normal`` = A^T):
    Hestenes-Stiefel CG on A, or CGLS (CG on A^T A with the residual r = b - A u kept), on rows
    of samples; a sample stops once ||b - A u|| <= tol ||u||, checked every ``check_every``
    iterations and once more at the end on the residual recomputed from u (one more product
    of A; the recurrence's residual drifts, and means nothing where A is not what CG needs)."""
    check_every = check_depth(check_every, "check_every")
    max_iter = check_depth(max_iter, "max_iter")
    shape = b.shape
    samples = sample_count(b, per_sample)
    with torch.no_grad():
        br = b.detach().reshape(samples, -1)
        a = _rows(apply, shape, samples)
        at = None if normal is None else _rows(normal, shape, samples)
        if u0 is None:
            u, r, products = torch.zeros_like(br), br.clone(), 0
        else:
            u = _start(u0, br)
            r, products = br - a(u), 1
        s = r if at is None else at(r)  # the residual CG minimises along: r, or A^T r for CGLS
        transposes = 0 if normal is None else 1
        p = s.clone()
        gamma = _dot(s, s)
        progress = _Progress(samples, tol, br)
        broke = torch.zeros(samples, 1, dtype=torch.bool, device=br.device)
        iterations = 0
        while iterations < max_iter:
            q = a(p)
            products += 1
            iterations += 1
            curvature = _dot(p, q) if normal is None else _dot(q, q)
            # a sample with gamma = 0 is solved (r = 0, or A^T r = 0 for CGLS); otherwise A
            # must be positive definite along p (CG) or nonsingular (CGLS)
            live = progress.active.unsqueeze(1) & ~broke & (gamma > 0)
            broke |= live & ~(curvature > 0)
            step = live & (curvature > 0)
            alpha = _safe_div(gamma, curvature, step)
            u = u + alpha * p
            r = r - alpha * q
            if at is None:
                s = r
            else:
                s = at(r)
                transposes += 1
            new_gamma = _dot(s, s)
            beta = _safe_div(new_gamma, gamma, step)
            p = torch.where(step, s + beta * p, p)
            gamma = torch.where(step, new_gamma, gamma)
            if iterations % check_every == 0 or iterations >= max_iter:
                active, finite = progress.check(r, u, iterations)
                if not finite or not bool((progress.active.unsqueeze(1) & ~broke).any()):
                    break
        true_r = br - a(u)
        products += 1
        res = torch.linalg.vector_norm(true_r, dim=1)
        rel = res / torch.linalg.vector_norm(u, dim=1).clamp_min(progress.tiny)
        progress.update(res, rel, iterations)
        indefinite = bool(broke.any())
        converged = not indefinite and not bool(progress.active.any()) and bool(torch.isfinite(rel).all())
        if not converged:
            _warn(f"adjoint {what} solve", max_iter, progress.worst, tol)
        vectors = 3 if normal is None else 4  # r, p, A p (and A^T r)
        stats = dict(
            iterations=iterations,
            products=products,
            transposed_products=transposes,
            relative_residual=progress.worst,
            converged=converged,
            breakdown=indefinite,
            workspace_bytes=vectors * br.numel() * br.element_size(),
            method=what,
            **progress.stats(),
        )
        return u.reshape(shape), stats


def cg(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    tol: float,
    max_iter: int,
    u0: Tensor | None = None,
    per_sample: bool | None = False,
    check_every: int = 4,
) -> tuple[Tensor, dict]:
    """Solve A u = b by conjugate gradients (Hestenes and Stiefel, J. Res. NBS 1952) with
    ``matvec(w) = A w``, A symmetric positive definite (each sample's block, with
    ``per_sample``), from ``u0`` (default 0). One product of A per iteration; its error
    falls at least as 2 ((sqrt(k) - 1) / (sqrt(k) + 1))^i in A's norm, k = cond(A).

    The criterion is ``adjoint_solve``'s, ||b - A u|| <= tol ||u||, tested at the end on the
    residual recomputed from u. Where A is not symmetric positive definite nothing is passed
    off: a direction of non-positive curvature stops the sample (``breakdown``), and a
    recurrence that wandered off fails the final test; both leave ``converged`` False.
    Stats: ``iterations``, ``products`` (of A, the final check and a start u0 included),
    ``relative_residual``, ``converged``, ``breakdown``, ``workspace_bytes`` (r, p, A p).
    """
    return _krylov(matvec, None, b, tol, max_iter, u0, per_sample, check_every, "cg")


def cg_normal(
    matvec: Callable[[Tensor], Tensor],
    rmatvec: Callable[[Tensor], Tensor],
    b: Tensor,
    tol: float,
    max_iter: int,
    u0: Tensor | None = None,
    per_sample: bool | None = False,
    check_every: int = 4,
) -> tuple[Tensor, dict]:
    """Solve A u = b for any nonsingular A by CG on the normal equations A^T A u = A^T b, in
    the CGLS form that keeps r = b - A u (Hestenes and Stiefel 1952; Paige and Saunders,
    ACM TOMS 1982), with ``matvec(w) = A w`` and ``rmatvec(w) = A^T w``: one product of each
    per iteration, at the rate of CG on cond(A)^2. Same criterion and stats as :func:`cg`,
    plus ``transposed_products`` (of A^T)."""
    return _krylov(matvec, rmatvec, b, tol, max_iter, u0, per_sample, check_every, "cg_normal")


def symmetry_gap(matvec: Callable[[Tensor], Tensor], like: Tensor, seed: int = 0) -> float:
    """``|<A a, c> - <A c, a>| / (||A a|| ||c|| + ||A c|| ||a||)`` for two random a, c of the shape
    of ``like``: 0 (to round-off) when A is symmetric, and almost surely not otherwise. Two
    products of A, whichever of A or A^T ``matvec`` applies."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    a = torch.randn(like.shape, generator=g, dtype=like.dtype).to(like.device)
    c = torch.randn(like.shape, generator=g, dtype=like.dtype).to(like.device)
    with torch.no_grad():
        aa, ac = matvec(a), matvec(c)
        num = (aa * c).sum() - (ac * a).sum()
        den = torch.linalg.vector_norm(aa) * torch.linalg.vector_norm(c) + torch.linalg.vector_norm(ac) * (
            torch.linalg.vector_norm(a)
        )
    den = float(den)
    return abs(float(num)) / den if den > 0 else 0.0
