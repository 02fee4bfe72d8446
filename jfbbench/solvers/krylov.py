"""Restarted GMRES, one Krylov basis per sample, and its Gram-Schmidt orthogonalisation."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .._validation import check_depth
from ._batched import _comb, _dots
from ._progress import _count_stats, _rows, _start, _warn, sample_count
from .auto import _krylov_does_not_pay

Tensor = torch.Tensor

#: the largest loss of orthogonality of the GMRES basis (max abs(<q_i, q_j>), in machine
#: epsilons: 2.3e-13 in float64) that Gram-Schmidt lets stand without a second pass
ORTHOGONALITY = 1024


def _orthogonalise(
    Q: Tensor, pair: Tensor, loss: float | None, floor: Tensor
) -> tuple[Tensor, Tensor, float | None, bool]:
    """Classical Gram-Schmidt of a new vector against the orthonormal basis Q (S, k + 1, n),
    per sample, with a second pass where one is not enough ("twice is enough": Giraud,
    Langou, Rozloznik, Comput. Math. Appl. 2005). ``pair`` (S, 2, n): the basis's last
    vector q_k and the new vector w, which is replaced in place by w' = w - Q^T h.

    ``loss``: the largest loss of orthogonality measured in the basis so far (max over its
    vectors of max_i abs(<q_i, q_j>)); None: always two passes, with no host synchronisation
    (as on a GPU). One batched product gives both h = Q w and q_k's inner products with the
    vectors before it, so that each vector's loss is measured, for free, at the next step.
    One pass leaves w' with |Q w'| <= loss ||h|| + eps ||w||, so its loss is at most
    (loss + eps) ||h|| / ||w'|| + eps (||w|| <= ||h|| + ||w'||; rounding constants taken as
    1); where that bound passes ``ORTHOGONALITY`` eps, a second pass brings it back to about
    eps. The numbers are read on the host (free on a CPU) over the samples whose w' is
    above ``floor`` (the others leave the basis). The classical rule (twice when
    ||w'|| < ||w|| / sqrt(2)) would fire at almost every step of GMRES on I - J^T, where w
    holds the previous basis vector: ||h|| ~ 1 >= ||w'||.

    Returns (h, ||w'||, the measured loss, whether it took two passes).
    """
    eps = torch.finfo(Q.dtype).eps
    k = Q.shape[1] - 1
    both = torch.bmm(pair, Q.transpose(1, 2))  # (S, 2, k + 1): <q_k, q_i>, <w, q_i>
    h = both[:, 1]
    new = pair[:, 1:]
    new.baddbmm_(h.unsqueeze(1), Q, alpha=-1)
    hn = torch.linalg.vector_norm(new.squeeze(1), dim=1)
    if loss is not None:
        ratio = torch.where(hn > floor, torch.linalg.vector_norm(h, dim=1) / hn, 0.0).max()
        last = both[:, 0, :k].abs().max() if k else torch.zeros_like(ratio)
        ratio, last = torch.stack([ratio, last]).tolist()
        loss = max(loss, last)
        if (loss + eps) * ratio + eps <= ORTHOGONALITY * eps:
            return h, hn, loss, False
    h2 = _dots(Q, new.squeeze(1))
    new.baddbmm_(h2.unsqueeze(1), Q, alpha=-1)
    return h + h2, torch.linalg.vector_norm(new.squeeze(1), dim=1), loss, True


def _host_reads_are_free(device: torch.device) -> bool:
    """Whether reading a number on the host costs no synchronisation (a CPU tensor)."""
    return device.type == "cpu"


def gmres(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    tol: float,
    max_iter: int,
    restart: int = 20,
    u0: Tensor | None = None,
    per_sample: bool | None = False,
    check_every: int = 4,
    relative_to: str = "rhs",
) -> tuple[Tensor, dict]:
    """Restarted GMRES (Saad and Schultz 1986) for A u = b with ``matvec(w) = A w`` (any
    tensor shape), from ``u0`` (default 0), one Krylov basis per sample with ``per_sample``.

    Classical Gram-Schmidt, with a second pass where a bound on the basis's loss of
    orthogonality asks for it (read on the host on a CPU, where that costs nothing; always
    on other devices: ``_orthogonalise``); the least-squares problem on the small Hessenberg
    matrix is kept triangular by Givens rotations, which give the residual norm at every step
    without a host synchronisation. Stops when ||b - A u|| <= tol ||b||
    (``relative_to="rhs"``) or <= tol ||u|| (``"solution"``: the criterion of the adjoint
    fixed-point iteration, whose step is the residual), per sample, read every
    ``check_every`` matvecs and confirmed by the true residual at the end of each cycle;
    ``max_iter`` bounds the number of matvecs.
    """
    samples = sample_count(b, per_sample)
    u, stats = _gmres(matvec, b, tol, max_iter, restart, u0, samples, check_every, relative_to)
    return u, stats


def _gmres(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    tol: float,
    max_iter: int,
    restart: int,
    u0: Tensor | None,
    samples: int,
    check_every: int,
    relative_to: str = "rhs",
    r0: Tensor | None = None,
    judge: bool = False,
) -> tuple[Tensor, dict]:
    """The loop of :func:`gmres`. ``r0``: the residual b - A u0 when the caller has it (no
    matvec spent on it). ``judge`` (A = I - J^T): after its first cycle GMRES stops
    (``stats["handover"] = True``) where its rate does not beat fixed-point iteration's,
    the spectral radius of J estimated by the Ritz values theta of that cycle's Hessenberg
    matrix (max |1 - theta|), by the power ``KRYLOV_GAIN``."""
    check_every = check_depth(check_every, "check_every")
    restart = check_depth(restart, "restart")
    if relative_to not in ("rhs", "solution"):
        raise ValueError(f"relative_to must be 'rhs' or 'solution', got {relative_to!r}")
    shape, dtype, device = b.shape, b.dtype, b.device
    tiny, eps = torch.finfo(dtype).tiny, torch.finfo(dtype).eps
    with torch.no_grad():
        B = b.detach().reshape(samples, -1)
        n = B.shape[1]
        bn = torch.linalg.vector_norm(B, dim=1)
        evals = 0

        mv = _rows(matvec, shape, samples)

        def scale(u: Tensor) -> Tensor:
            """What the residual is measured against, per sample."""
            return bn if relative_to == "rhs" else torch.linalg.vector_norm(u, dim=1)

        if u0 is None:
            u = torch.zeros_like(B)
            r = B.clone()
        else:
            u = _start(u0, B)
            if r0 is None:
                r = B - mv(u)
                evals += 1
            else:
                r = r0.detach().reshape(samples, -1)
        m_max = max(1, min(restart, max_iter))
        # the basis, one row of samples per vector (each vector contiguous: the matvec reads it
        # in place); Q[:k].transpose(0, 1) is the (S, k, n) batch of the Gram-Schmidt products.
        # Rows are written before they are read
        Q = torch.empty(m_max + 1, samples, n, dtype=dtype, device=device)
        R = torch.zeros(samples, m_max, m_max, dtype=dtype, device=device)
        Om = torch.zeros(samples, m_max + 1, m_max + 1, dtype=dtype, device=device)
        H = torch.zeros(samples, m_max + 1, m_max, dtype=dtype, device=device) if judge else None
        workspace = (Q.numel() + R.numel() + Om.numel() + (H.numel() if H is not None else 0)) * B.element_size()
        eye = torch.eye(m_max + 1, dtype=dtype, device=device)
        counts = torch.zeros(samples, dtype=torch.long, device=device)
        always_twice = not _host_reads_are_free(device)
        reorthogonalised = 0
        #: per step k: the basis so far as an (S, k + 1, n) batch, its row k, row k + 1, both
        #: as an (S, 2, n) batch, the block of Om that rotates the new column, Om's rows k
        #: and k + 1, R's column k
        views = [
            (
                Q[: k + 1].transpose(0, 1),
                Q[k],
                Q[k + 1],
                Q[k : k + 2].transpose(0, 1),
                Om[:, : k + 1, : k + 1],
                Om[:, k : k + 2, : k + 2],
                R[:, : k + 1, k],
            )
            for k in range(m_max)
        ]

        def solution(beta: Tensor, k: int) -> Tensor:
            """u + Q_k y with y = argmin ||beta e_1 - H_k y||, from the rotated triangle R_k.
            A zero pivot (a basis that ran out) gets a zero coefficient."""
            g = beta.unsqueeze(1) * Om[:, :k, 0]
            rk = R[:, :k, :k]
            diag = torch.diagonal(rk, dim1=1, dim2=2)
            bad = diag.abs() <= eps * diag.abs().amax(dim=1, keepdim=True).clamp_min(tiny)
            rk = rk + torch.diag_embed(torch.where(bad, 1.0 - diag, torch.zeros_like(diag)))
            g = torch.where(bad, torch.zeros_like(g), g)
            y = torch.linalg.solve_triangular(rk, g.unsqueeze(2), upper=True).squeeze(2)
            return u + _comb(y, Q[:k].transpose(0, 1))

        handover = False
        res = torch.linalg.vector_norm(r, dim=1)
        while True:
            ref = scale(u)
            active = (res > tol * ref) & (res > 0)
            flags = torch.stack([active.any().to(dtype), torch.isfinite(res).all().to(dtype)]).tolist()
            if not flags[0] or not flags[1] or evals >= max_iter or handover:
                break
            m = min(m_max, max_iter - evals)
            beta = res
            alive = active.clone()
            torch.mul(r, (alive / beta.clamp_min(tiny)).unsqueeze(1), out=Q[0])
            Om.copy_(eye)
            R.zero_()
            loss = None if always_twice else 0.0
            floor = eps * beta
            was_alive = []
            k_done = 0
            for k in range(m):
                Qk, q, q_next, pair, om_k, om_rows, r_col = views[k]
                q_next.copy_(mv(q))
                evals += 1
                was_alive.append(alive)
                # w' = w - Qk^T h in place in the next basis row, normalised there
                h, hn, loss, twice = _orthogonalise(Qk, pair, loss, floor)
                reorthogonalised += twice
                if H is not None:
                    H[:, : k + 1, k] = h
                    H[:, k + 1, k] = hn
                # rotate the new Hessenberg column by the rotations so far, then zero its last
                # entry with one more: rows k, k + 1 of Om (row k + 1 still e_{k+1}) turn by
                # [[c, s], [-s, c]]; a column that is all zero (a frozen sample) gets c = s = 0,
                # a zero pivot that ``solution`` discards
                col = torch.bmm(om_k, h.unsqueeze(2)).squeeze(2)
                a = col[:, k]
                rr = torch.hypot(a, hn)
                inv = rr.clamp_min(tiny).reciprocal_()
                c, s = a * inv, hn * inv
                a.copy_(rr)
                r_col.copy_(col)
                om_rows.copy_(torch.bmm(torch.stack([c, s, -s, c], dim=1).view(-1, 2, 2), om_rows))
                k_done = k + 1
                # a basis that ran out (lucky breakdown) or a frozen sample adds zero vectors
                alive = alive & (hn > floor)
                if (k + 1) % check_every == 0 or k + 1 == m:
                    estimate = beta * Om[:, k + 1, 0].abs()
                    ref = bn if relative_to == "rhs" else scale(solution(beta, k_done))
                    alive = alive & (estimate > tol * ref)
                    if not bool(alive.any()):
                        break
                q_next.mul_((alive / hn.clamp_min(tiny)).unsqueeze(1))
            counts += torch.stack(was_alive).sum(dim=0)
            u = solution(beta, k_done)
            r = B - mv(u)
            evals += 1
            res_new = torch.linalg.vector_norm(r, dim=1)
            if H is not None:
                handover = _krylov_does_not_pay(H[:, :k_done, :k_done], beta, res_new, k_done)
                H = None
            res = res_new
        ref = scale(u)
        rel_t = torch.where(ref > 0, res / ref.clamp_min(tiny), torch.where(res > 0, math.inf, 0.0))
        rel = float(rel_t.max())
        converged = bool(torch.isfinite(res).all()) and bool(((res <= tol * ref) | (res == 0)).all())
        if not converged and not handover:
            _warn("GMRES adjoint solve", max_iter, rel, tol)
        stats = dict(
            iterations=evals,
            relative_residual=rel,
            converged=converged,
            workspace_bytes=workspace,
            method="gmres",
            handover=handover,
            reorthogonalised=reorthogonalised,
            **_count_stats(counts),
        )
        return u.reshape(shape), stats
