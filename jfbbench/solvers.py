"""Forward fixed-point and adjoint linear solvers.

The fixed-point loop lives here once; estimators call these functions. Each solver returns
its result and a dict of statistics, in the manner of TorchDEQ's solvers:

- ``iterations``: evaluations of f (forward) or matrix-vector products (adjoint);
- ``relative_residual`` (the largest over the samples when they stop one by one),
  ``residual`` (forward: ||f(x) - x|| of the whole tensor), ``converged``;
- ``iterations_mean``, ``iterations_max``: per-sample iteration counts;
- ``workspace_bytes``: the bytes of the solver's own buffers (Anderson's history, the
  GMRES basis and Hessenberg, Broyden's low-rank factors), not counting x itself;
- ``method``: the method that finished the solve (``auto`` switches between them) and
  ``switches``: the methods in the order they ran;
- ``reorthogonalised`` (GMRES): the steps whose Gram-Schmidt took a second pass.

A solve that stops at ``max_iter`` says ``converged=False`` and warns.

**Samples.** With ``per_sample=True`` dimension 0 of the state is a batch of independent
samples (as TorchDEQ assumes): each sample is held to the tolerance on its own
(||f(x_i) - x_i|| <= tol ||f(x_i)||), is frozen once it meets it, and Anderson, Broyden and
GMRES keep one history / one Krylov basis per sample (batched linear algebra: ``bmm`` over
the samples). ``per_sample=False`` treats the state as one vector. ``None`` means per sample
whenever the state has a batch dimension (``ndim >= 2``) of more than one sample.

**Overhead.** No Python loop runs over basis vectors or history entries: Gram-Schmidt is
classical (one pair of batched matmuls), with a second pass only where a bound from the
basis's measured loss of orthogonality asks for it (on a CPU; always on other devices, which
keeps them free of host synchronisations), the Hessenberg's QR is updated with Givens
rotations held as one small orthogonal matrix per sample, Anderson writes f(x) - x straight
into its history at every step and, once the history is full, mixes only every
``ANDERSON_MIX_EVERY`` steps (fixed-point steps between), adding the Gram rows of the steps
since the last mixing in one batched product. Convergence is read on the host every
``check_every`` iterations only (the per-sample masks and residual estimates stay on the
device in between), so a CUDA solve synchronises once per ``check_every`` steps; the
fixed-point loops check sooner where the measured rate says the tolerance is that close
(GMRES may make up to ``check_every - 1`` more steps than it needed).

**Robustness.** No least-squares solve assumes full rank: Anderson's weights solve a
regularised (scaled) Gram system and fall back to a plain fixed-point step where that system
is singular or its solution is not finite; GMRES's triangular factor has its zero pivots
(a basis that ran out: converged or zero samples) replaced so that the corresponding
coefficients are zero. Every buffer takes the dtype and device of the state.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch

Tensor = torch.Tensor

FORWARD_METHODS = ("picard", "anderson", "broyden", "auto")
ADJOINT_METHODS = ("fixed_point", "gmres", "auto")
#: GMRES is kept by ``auto`` only where its measured rate is at least this power of
#: fixed-point iteration's, the spectral radius of J read from the Ritz values of its first
#: cycle (it must save about 10% of the matvecs to pay for its own work)
KRYLOV_GAIN = 1.1
#: Anderson is kept by ``auto`` only where its measured rate is at least this power of the
#: rate of the fixed-point steps just before it: it must cut the steps by a third, to pay for
#: its own work per step (0.1-0.5 of one T at n x batch >= 1e4, memory 10, mixing every
#: ``ANDERSON_MIX_EVERY`` steps: ``results/benchmarks/solver_overhead.csv``) against a
#: fixed-point rate that is optimistic (measured early, when the fast components die first).
#: On a spectrum near a circle (a tight tanh layer) it saves a few per cent of the steps:
#: given up there
ANDERSON_GAIN = 1.5
#: iterations over which ``auto`` measures a rate
RATE_WINDOW = 8
#: ``auto`` stays with fixed-point iteration where it will converge within this many more
#: iterations at its measured rate
FIXED_POINT_ENOUGH = 30


class ConvergenceWarning(UserWarning):
    """A forward or adjoint solve stopped at max_iter before reaching its tolerance."""


def _norm(t: Tensor) -> float:
    return float(torch.linalg.vector_norm(t))


def sample_count(x: Tensor, per_sample: bool | None) -> int:
    """How many independent samples the solvers see in x (1: the whole tensor)."""
    if per_sample is None:
        per_sample = x.dim() >= 2 and x.shape[0] > 1
    return x.shape[0] if per_sample and x.dim() >= 1 else 1


def _check_int(value: object, name: str) -> int:
    """``value`` if it is an int >= 1 (bools and floats refused), else a ValueError naming
    ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class _Progress:
    """Per-sample convergence bookkeeping, kept on the device.

    ``check(diff, ref, evals)`` computes each sample's relative residual
    ||diff_i|| / ||ref_i||, marks the samples still above ``tol`` active, credits the
    samples that were active with ``evals`` iterations, and returns (any active, all finite)
    with one host synchronisation.
    """

    def __init__(self, samples: int, tol: float, like: Tensor) -> None:
        self.tol = tol
        self.tiny = torch.finfo(like.dtype).tiny
        self.active = torch.ones(samples, dtype=torch.bool, device=like.device)
        self.counts = torch.zeros(samples, dtype=torch.long, device=like.device)
        self.rel = torch.full((samples,), math.inf, dtype=like.dtype, device=like.device)
        self.res = torch.full((samples,), math.inf, dtype=like.dtype, device=like.device)
        self.all_active = True
        #: (evals, largest relative residual, norm of the whole residual)
        self.history: list[tuple[int, float, float]] = []

    def check(self, diff: Tensor, ref: Tensor, evals: int) -> tuple[bool, bool]:
        res = torch.linalg.vector_norm(diff, dim=1)
        rel = res / torch.linalg.vector_norm(ref, dim=1).clamp_min(self.tiny)
        return self.update(res, rel, evals)

    def update(self, res: Tensor, rel: Tensor, evals: int) -> tuple[bool, bool]:
        self.counts = torch.where(self.active, evals, self.counts)
        self.res, self.rel = res, rel
        self.active = ~((rel <= self.tol) | (res == 0))
        rels, ress = torch.stack([rel, res]).tolist()  # the one host synchronisation
        active = [not (r <= self.tol or q == 0) for r, q in zip(rels, ress, strict=True)]
        self.all_active = all(active)
        finite = all(map(math.isfinite, rels))
        worst = max(r if math.isfinite(r) else math.inf for r in rels)
        self.history.append((evals, worst, math.hypot(*ress)))
        return any(active), finite

    def rate(self, since: int, window: int | None = None) -> float:
        """Measured contraction per iteration of the residual (its norm over the whole
        tensor: relative residuals move with ||x|| too), from the check at or after iteration
        ``since`` (or the last ``window`` iterations, if fewer) to the last check (nan if not
        measurable)."""
        if window is not None and self.history:
            since = max(since, self.history[-1][0] - window)
        pts = [(k, r) for k, _, r in self.history if k >= since and math.isfinite(r) and r > 0]
        if len(pts) < 2 or pts[-1][0] == pts[0][0]:
            return math.nan
        return (pts[-1][1] / pts[0][1]) ** (1.0 / (pts[-1][0] - pts[0][0]))

    def steps_to_next_check(self, check_every: int) -> int:
        """``check_every``, or fewer where the measured rate says the tolerance will be met
        sooner (so that a solve does not overshoot by up to ``check_every - 1`` steps)."""
        rate = self.rate(1, RATE_WINDOW)
        left = _predicted(self.worst, self.tol, rate)
        if not math.isfinite(left):
            return check_every
        return max(1, min(check_every, math.ceil(left)))

    @property
    def worst(self) -> float:
        return self.history[-1][1] if self.history else math.inf

    def stats(self) -> dict:
        return _count_stats(self.counts)


def _dots(Q: Tensor, w: Tensor) -> Tensor:
    """(S, k): <Q[s, j], w[s]> for each sample s (the batched-GEMM layout that is fast on
    CPU as on GPU; the gemv layout bmm(Q, w) is several times slower on CPU)."""
    return torch.bmm(w.unsqueeze(1), Q.transpose(1, 2)).squeeze(1)


def _comb(c: Tensor, Q: Tensor) -> Tensor:
    """(S, n): sum_j c[s, j] Q[s, j] for each sample s."""
    return torch.bmm(c.unsqueeze(1), Q).squeeze(1)


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
    vectors of max_i |<q_i, q_j>|); None: always two passes, with no host synchronisation
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


def _count_stats(counts: Tensor) -> dict:
    c = counts.tolist()
    return dict(iterations_mean=sum(c) / len(c), iterations_max=max(c), iterations_per_sample=c)


def _mask(active: Tensor, like: Tensor) -> Tensor:
    return active.reshape(-1, *([1] * (like.dim() - 1)))


def _freeze(new: Tensor, old: Tensor, progress: _Progress) -> Tensor:
    """new where the sample is still active, old where it has converged (rows views)."""
    return new if progress.all_active else torch.where(_mask(progress.active, new), new, old)


def _warn(what: str, max_iter: int, rel: float, tol: float) -> None:
    warnings.warn(
        f"{what} stopped at max_iter={max_iter} with relative residual {rel:.3e} > tol={tol:.1e}",
        ConvergenceWarning,
        stacklevel=4,
    )


def _predicted(rel: float, tol: float, rate: float) -> float:
    """Iterations left at ``rate`` to bring ``rel`` under ``tol``."""
    if not rel > tol:
        return 0.0
    if not (0 < rate < 1) or not tol > 0:
        return math.inf
    return math.log(tol / rel) / math.log(rate)


# ---------------------------------------------------------------------------------------
# forward solvers: one step function each, one loop
# ---------------------------------------------------------------------------------------


class _Picard:
    """x <- f(x)."""

    name = "picard"
    workspace_bytes = 0

    def __init__(self, x: Tensor, memory: int) -> None:
        pass

    def step(self, x: Tensor, fx: Tensor) -> Tensor:
        return fx


class _Anderson:
    r"""Anderson acceleration, type II (Anderson 1965; Walker and Ni, SIAM J. Numer. Anal.
    2011), ``memory`` past iterates, one history per sample, applied at every step while
    the history fills (the first ``memory`` steps), then every ``mix_every`` steps with
    plain fixed-point steps between (periodic Pulay mixing: Banerjee, Suryanarayana and
    Pask, Chem. Phys. Lett. 2016; Pratapa, Suryanarayana and Pask, J. Comput. Phys. 2016).
    Every step enters the history; a mixing step sets

        x_{k+1} = sum_j alpha_j f(x_j),  alpha = argmin ||sum_j alpha_j g_j||, sum_j alpha_j = 1,

    g_j = f(x_j) - x_j, and the others x_{k+1} = f(x_k). ``mix_every=1`` is classical
    Anderson. alpha solves (C + lam I) z = d^{-1}, alpha = d^{-1} z / sum(...) with C the
    Gram matrix of the g_j scaled to a unit diagonal (d = its diagonal's root) and
    lam = ``reg``; the rows of the Gram matrix that the steps since the last mixing added are
    computed at the mixing step, in one batched product. Where the system is singular or its
    solution not finite, the step is x <- f(x).

    Why periodic: a step's own work is two passes over the history (the Gram row, the
    combination), 2 ``memory`` state-sized reads, which a mixing only every ``mix_every``
    steps divides by ``mix_every``; and on every long solve measured (``ANDERSON_MIX_EVERY``)
    the solve takes fewer steps, not more (the history then holds fixed-point steps, which
    leave the slowest directions of the error dominant for the mixing to remove). Mixing at
    every step while the history fills keeps short solves (a loose tolerance, a warm start:
    a few steps in all) as short as classical Anderson's.
    """

    name = "anderson"

    def __init__(self, x: Tensor, memory: int, reg: float | None = None, mix_every: int = 1) -> None:
        s, n = x.shape
        self.m = memory
        self.mix_every = mix_every
        # only the slots written so far are read: no need to fill F and G
        self.F = torch.empty(s, memory, n, dtype=x.dtype, device=x.device)
        self.G = torch.empty_like(self.F)
        self.H = torch.zeros(s, memory, memory, dtype=x.dtype, device=x.device)
        self.k = 0
        #: how many slots were written since the last mixing (their rows of H are stale)
        self.fresh = 0
        self.reg = reg if reg is not None else (1e-10 if x.dtype == torch.float64 else 1e-5)
        eye = torch.eye(memory, dtype=x.dtype, device=x.device)
        #: lam I, and the weights of a plain fixed-point step (row j: the step from slot j)
        self.ridge, self.onehot = self.reg * eye, eye
        self.tiny = torch.finfo(x.dtype).tiny
        self.Gt = self.G.transpose(1, 2)
        self.workspace_bytes = (self.F.numel() + self.G.numel() + self.H.numel()) * x.element_size()

    def step(self, x: Tensor, fx: Tensor) -> Tensor:
        slot = self.k % self.m
        self.k += 1
        n = min(self.k, self.m)
        torch.sub(fx, x, out=self.G[:, slot])  # g = f(x) - x, written into its slot of the history
        self.F[:, slot].copy_(fx)
        self.fresh = min(self.fresh + 1, self.m)
        if n == 1 or (self.k > self.m and self.k % self.mix_every):
            return fx
        fresh, self.fresh = self.fresh, 0
        full = n == self.m
        gt = self.Gt if full else self.Gt[:, :, :n]
        # the Gram rows of the slots written since the last mixing, <g_i, g_j>: the slots
        # before this one in the ring, one contiguous run (or two where the ring wraps)
        first = slot - fresh + 1
        runs = [(first, slot + 1)] if first >= 0 else [(first % self.m, self.m), (0, slot + 1)]
        for lo, hi in runs:
            rows = torch.bmm(self.G[:, lo:hi], gt)  # (S, hi - lo, n): one batched product
            self.H[:, lo:hi, :n] = rows
            self.H[:, :n, lo:hi] = rows.transpose(1, 2)
        h = self.H if full else self.H[:, :n, :n]
        dinv = torch.diagonal(h, dim1=1, dim2=2).clamp_min(self.tiny).rsqrt().unsqueeze(2)  # (S, n, 1)
        c = torch.addcmul(self.ridge if full else self.ridge[:n, :n], h, dinv * dinv.transpose(1, 2))
        z, info = torch.linalg.solve_ex(c, dinv)
        alpha = z.mul_(dinv).squeeze(2)
        alpha = alpha / alpha.sum(dim=1, keepdim=True)
        ok = (info == 0) & torch.isfinite(alpha.sum(dim=1))  # any entry inf or nan makes the sum so
        alpha = torch.where(ok.unsqueeze(1), alpha, self.onehot[slot, :n])
        return _comb(alpha, self.F if full else self.F[:, :n])


class _Broyden:
    r"""Broyden's ("good") method on g(x) = f(x) - x (Broyden 1965; the limited-memory
    form of TorchDEQ's ``broyden_solver``): an approximation H of (dg/dx)^{-1} kept as
    H = -I + sum_j u_j v_j^T (``memory`` pairs per sample; back to H = -I when full), the
    step x <- x - H g(x), and the rank-one update

        H <- H + (dx - H dg) (dx^T H) / (dx^T H dg).

    Starting from H = -I the first step is x <- f(x). An update whose denominator vanishes
    is skipped.
    """

    name = "broyden"

    def __init__(self, x: Tensor, memory: int) -> None:
        s, n = x.shape
        self.m = memory
        self.U = torch.zeros(s, memory, n, dtype=x.dtype, device=x.device)
        self.V = torch.zeros_like(self.U)
        self.filled = 0
        self.prev: tuple[Tensor, Tensor] | None = None  # (x, g) of the last step
        self.workspace_bytes = 2 * self.U.numel() * x.element_size()

    def _h(self, z: Tensor) -> Tensor:
        """H z."""
        n = self.filled
        return _comb(_dots(self.V[:, :n], z), self.U[:, :n]) - z if n else -z

    def _ht(self, z: Tensor) -> Tensor:
        """H^T z (the row z^T H)."""
        n = self.filled
        return _comb(_dots(self.U[:, :n], z), self.V[:, :n]) - z if n else -z

    def step(self, x: Tensor, fx: Tensor) -> Tensor:
        g = fx - x
        if self.prev is not None:
            if self.filled == self.m:  # memory full: start again from H = -I
                self.filled = 0
            dx, dg = x - self.prev[0], g - self.prev[1]
            vt = self._ht(dx)
            den = (vt * dg).sum(dim=1, keepdim=True)
            ok = den.abs() > torch.finfo(x.dtype).tiny ** 0.5
            u = torch.where(ok, (dx - self._h(dg)) / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(dx))
            self.U[:, self.filled] = u
            self.V[:, self.filled] = torch.where(ok, vt, torch.zeros_like(vt))
            self.filled += 1
        self.prev = (x, g)
        return x - self._h(g)


#: the forward solvers made from (x, memory) alone (Anderson also takes its mixing period)
_FORWARD = {"picard": _Picard, "broyden": _Broyden}
#: default memories: Anderson's past iterates, Broyden's rank-one pairs
ANDERSON_MEMORY = 10
BROYDEN_MEMORY = 40
#: Anderson mixes every this many steps once its history is full (fixed-point steps between;
#: at every step before). Measured at tolerance 1e-8, memory 10, steps to converge with
#: mixing at every step / this rule: affine 1000 x 32 rho = 0.99 272 / 116, rho = 0.999
#: (300 x 16) 1945 / 178, tikhonov 1000 x 32 rho = 0.99 193 / 103, weighted_tv 128^2
#: rho = 0.99 82 / 68, the tight tanh layer 193 / 193; a short solve, weighted_tv 128^2 in
#: float32 to 1e-4, 19 / 20 (22 mixing every third step from the first). In time to
#: tolerance, mixing every 3rd step (from the first) was within 6 % of the best of 1, 2, 3,
#: 4, 6, 8 on each long case (results/README.md, "Per-iteration overhead of the solvers")
ANDERSON_MIX_EVERY = 3


def _make(method: str, x: Tensor, memory: int | None, mix_every: int) -> _Picard | _Anderson | _Broyden:
    if memory is None:
        memory = BROYDEN_MEMORY if method == "broyden" else ANDERSON_MEMORY
    memory = _check_int(memory, "memory")
    if method == "anderson":
        return _Anderson(x, memory, mix_every=mix_every)
    return _FORWARD[method](x, memory)


def fixed_point(
    f: Callable[[Tensor], Tensor],
    x0: Tensor,
    tol: float,
    max_iter: int,
    method: str = "picard",
    memory: int | None = None,
    per_sample: bool | None = False,
    check_every: int = 4,
    mix_every: int | None = None,
) -> tuple[Tensor, dict]:
    """Solve x = f(x) from x0 (an initial guess: a warm start is welcome) without a graph.

    Stops when ||f(x) - x|| <= tol ||f(x)|| (per sample with ``per_sample``; see the
    module's docstring). ``method``: ``"picard"`` x <- f(x) (rate rho), ``"anderson"``
    (Anderson acceleration, ``memory`` past iterates, default ``ANDERSON_MEMORY``, mixing
    at every step until its history is full, then every ``mix_every`` steps, default
    ``ANDERSON_MIX_EVERY``, with fixed-point steps between; 1 is classical Anderson), ``"broyden"`` (limited-memory Broyden, ``memory``
    rank-one pairs, default ``BROYDEN_MEMORY``), ``"auto"``: fixed-point steps while they
    are enough (they converge within ``FIXED_POINT_ENOUGH`` more steps at their measured
    rate), else Anderson, kept only while its measured rate beats the fixed-point rate by
    ``ANDERSON_GAIN`` (back to fixed-point steps otherwise). Returns (f(x), stats): one more
    step than the last x, the point whose residual was measured.
    """
    if method not in FORWARD_METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, FORWARD_METHODS))}; got {method!r}")
    check_every = _check_int(check_every, "check_every")
    mix_every = _check_int(ANDERSON_MIX_EVERY if mix_every is None else mix_every, "mix_every")
    shape = x0.shape
    samples = sample_count(x0, per_sample)
    with torch.no_grad():
        x = x0.detach().reshape(samples, -1)

        def fr(z: Tensor) -> Tensor:
            return f(z.reshape(shape)).reshape(samples, -1)

        fx = fr(x)
        evals = 1
        progress = _Progress(samples, tol, x)
        current = "picard" if method == "auto" else method
        solver = _make(current, x, memory, mix_every)
        switches = [current]
        workspace = solver.workspace_bytes
        picard_rate = math.nan
        switched_at = 1
        finite = True
        next_check = 1
        while True:
            if evals >= next_check or evals >= max_iter:
                active, finite = progress.check(fx - x, fx, evals)
                if not active or not finite or evals >= max_iter:
                    break
                next_check = evals + progress.steps_to_next_check(check_every)
                if method == "auto":
                    new = _auto_forward(current, progress, switched_at, picard_rate, evals, switches, memory)
                    if new is not None:
                        if current == "picard":
                            picard_rate = progress.rate(switched_at, RATE_WINDOW)
                        current, switched_at = new, evals
                        solver = _make(current, x, memory, mix_every)
                        workspace = max(workspace, solver.workspace_bytes)
                        switches.append(current)
            x = _freeze(solver.step(x, fx), x, progress)
            fx = fr(x)
            evals += 1
        rel = progress.worst
        converged = finite and not bool(progress.active.any())
        if not converged:
            _warn("forward fixed-point solve", max_iter, rel, tol)
        stats = dict(
            iterations=evals,
            residual=_norm(fx - x),
            relative_residual=rel,
            converged=converged,
            workspace_bytes=workspace,
            method=current,
            switches=switches,
            mix_every=mix_every,
            samples=samples,
            **progress.stats(),
        )
        if method == "auto":
            stats["fixed_point_rate"] = picard_rate if current != "picard" else progress.rate(switched_at, RATE_WINDOW)
        return fx.reshape(shape), stats


def _auto_forward(
    current: str,
    progress: _Progress,
    since: int,
    picard_rate: float,
    evals: int,
    switches: list[str],
    memory: int | None,
) -> str | None:
    """The method ``auto`` should switch to now, or None to go on. Anderson is judged once,
    ``2 * probe`` iterations after it started, against the rate of the fixed-point steps just
    before it (``ANDERSON_GAIN``); a method given up is not tried again. Iteration counts
    only, never wall time: the same call takes the same path on a loaded machine."""
    probe = max(RATE_WINDOW, (memory or ANDERSON_MEMORY) + 1)
    if evals - since < probe or len(switches) > 2:
        return None
    if current == "picard":
        rate = progress.rate(since, RATE_WINDOW)
        if math.isnan(rate) or _predicted(progress.worst, progress.tol, rate) <= FIXED_POINT_ENOUGH:
            return None
        return "anderson"
    judged = progress.history[-2][0] - since >= 2 * probe if len(progress.history) > 1 else True
    if current == "anderson" and evals - since >= 2 * probe and not judged:
        rate = progress.rate(since)
        if not (rate < picard_rate**ANDERSON_GAIN):
            return "picard"
    return None


# ---------------------------------------------------------------------------------------
# adjoint (linear) solvers
# ---------------------------------------------------------------------------------------


def adjoint_fixed_point(
    vjp: Callable[[Tensor], Tensor],
    v: Tensor,
    tol: float,
    max_iter: int,
    u0: Tensor | None = None,
    per_sample: bool | None = False,
    check_every: int = 4,
) -> tuple[Tensor, dict]:
    """Solve (I - J^T) u = v by u <- J^T u + v, with ``vjp(w) = J^T w``, from ``u0``
    (default v, one step from 0).

    Stops when ||J^T u + v - u|| <= tol ||J^T u + v|| (per sample with ``per_sample``): the
    step relative to the new iterate, as the forward solve's residual is relative to f(x)
    (and as TorchDEQ's backward ``stop_mode="rel"``). The relative error of u is then at most
    tol rho / (1 - rho).
    """
    u, stats, _ = _adjoint_fixed_point(vjp, v, tol, max_iter, u0, sample_count(v, per_sample), check_every)
    return u, stats


def _adjoint_fixed_point(
    vjp: Callable[[Tensor], Tensor],
    v: Tensor,
    tol: float,
    max_iter: int,
    u0: Tensor | None,
    samples: int,
    check_every: int,
    auto: bool = False,
) -> tuple[Tensor, dict, Tensor | None]:
    """The loop of :func:`adjoint_fixed_point`. With ``auto``, it stops early (returning
    the residual v - (I - J^T) u as third value) where GMRES should take over."""
    check_every = _check_int(check_every, "check_every")
    shape = v.shape
    with torch.no_grad():
        vr = v.detach().reshape(samples, -1)
        u = vr.clone() if u0 is None else u0.detach().to(dtype=vr.dtype, device=vr.device).reshape(samples, -1).clone()
        progress = _Progress(samples, tol, vr)
        evals = 0
        finite = True
        handover = None
        next_check = 1
        while evals < max_iter:
            un = vjp(u.reshape(shape)).reshape(samples, -1) + vr
            evals += 1
            if evals >= next_check or evals >= max_iter:
                active, finite = progress.check(un - u, un, evals)
                if not active or not finite:
                    u = un
                    break
                next_check = evals + progress.steps_to_next_check(check_every)
                if auto and evals >= RATE_WINDOW:
                    rate = progress.rate(1, RATE_WINDOW)
                    if not math.isnan(rate) and _predicted(progress.worst, tol, rate) > FIXED_POINT_ENOUGH:
                        handover = un - u  # = v - (I - J^T) u: GMRES's first residual
                        break
            u = _freeze(un, u, progress)
        rel = progress.worst
        converged = finite and not bool(progress.active.any())
        if not converged and handover is None:
            _warn("adjoint fixed-point solve", max_iter, rel, tol)
        stats = dict(
            iterations=evals,
            relative_residual=rel,
            converged=converged,
            workspace_bytes=0,
            method="fixed_point",
            rate=progress.rate(1, RATE_WINDOW),
            **progress.stats(),
        )
        return u.reshape(shape), stats, handover


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
    check_every = _check_int(check_every, "check_every")
    restart = _check_int(restart, "restart")
    if relative_to not in ("rhs", "solution"):
        raise ValueError(f"relative_to must be 'rhs' or 'solution', got {relative_to!r}")
    shape, dtype, device = b.shape, b.dtype, b.device
    tiny, eps = torch.finfo(dtype).tiny, torch.finfo(dtype).eps
    with torch.no_grad():
        B = b.detach().reshape(samples, -1)
        n = B.shape[1]
        bn = torch.linalg.vector_norm(B, dim=1)
        evals = 0

        def mv(z: Tensor) -> Tensor:
            return matvec(z.reshape(shape)).reshape(samples, -1)

        def scale(u: Tensor) -> Tensor:
            """What the residual is measured against, per sample."""
            return bn if relative_to == "rhs" else torch.linalg.vector_norm(u, dim=1)

        if u0 is None:
            u = torch.zeros_like(B)
            r = B.clone()
        else:
            u = u0.detach().to(dtype=dtype, device=device).reshape(samples, -1).clone()
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


def _krylov_does_not_pay(hessenberg: Tensor, before: Tensor, after: Tensor, k: int) -> bool:
    """Whether one GMRES cycle of k steps on A = I - J^T reduced the residual (from
    ``before`` to ``after``, per sample) by less than fixed-point iteration would, at the
    rate max |1 - theta| over the Ritz values theta of A (the spectral radius of J), to the
    power ``KRYLOV_GAIN``."""
    b, a = float(torch.linalg.vector_norm(before)), float(torch.linalg.vector_norm(after))
    if not (b > 0 and a > 0 and k >= 2):
        return False
    theta = torch.linalg.eigvals(hessenberg.cpu())
    radius = float((1 - theta).abs().max())
    if not (0 < radius < 1):
        return False
    return (a / b) ** (1.0 / k) >= radius**KRYLOV_GAIN


def adjoint_solve(
    vjp: Callable[[Tensor], Tensor],
    v: Tensor,
    tol: float,
    max_iter: int,
    method: str = "auto",
    u0: Tensor | None = None,
    per_sample: bool | None = False,
    check_every: int = 4,
    restart: int = 20,
) -> tuple[Tensor, dict]:
    """Solve (I - J^T) u = v with ``vjp(w) = J^T w`` by ``method``: ``"fixed_point"``,
    ``"gmres"`` (on A = I - J^T) or ``"auto"``, all held to one criterion:
    ||v - (I - J^T) u|| <= tol ||u|| (per sample with ``per_sample``; for the fixed-point
    iteration the residual is its step), from ``u0`` (an initial guess; default: v).

    ``auto`` starts with fixed-point steps and hands over to GMRES (from the current u, its
    residual being free) when their measured rate says they have more than
    ``FIXED_POINT_ENOUGH`` steps to go; GMRES hands back to fixed-point steps after its
    first cycle where it did not beat the rate of fixed-point iteration read from that
    cycle's Ritz values (a spectrum near a circle, where no Krylov method beats fixed-point
    iteration and GMRES's own work per step is lost).
    """
    if method not in ADJOINT_METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, ADJOINT_METHODS))}; got {method!r}")
    samples = sample_count(v, per_sample)

    def matvec(w: Tensor) -> Tensor:
        return w - vjp(w)

    if method == "fixed_point":
        u, stats, _ = _adjoint_fixed_point(vjp, v, tol, max_iter, u0, samples, check_every)
        return u, stats | dict(switches=["fixed_point"])
    if method == "gmres":
        u, stats = _gmres(matvec, v, tol, max_iter, restart, u0, samples, check_every, "solution")
        return u, stats | dict(switches=["gmres"])
    u, fp, r = _adjoint_fixed_point(vjp, v, tol, max_iter, u0, samples, check_every, auto=True)
    if r is None:
        return u, fp | dict(switches=["fixed_point"])
    left = max_iter - fp["iterations"]
    u, gm = _gmres(matvec, v, tol, left, restart, u, samples, check_every, "solution", r, judge=True)
    evals, switches = fp["iterations"] + gm["iterations"], ["fixed_point", "gmres"]
    if gm["handover"]:
        u, last, _ = _adjoint_fixed_point(vjp, v, tol, max(1, max_iter - evals), u, samples, check_every)
        evals += last["iterations"]
        switches.append("fixed_point")
    else:
        last = gm
    parts = [fp, gm] + ([last] if last is not gm else [])
    per = [sum(p["iterations_per_sample"][i] for p in parts) for i in range(samples)]
    return u, dict(
        last,
        iterations=evals,
        workspace_bytes=gm["workspace_bytes"],
        switches=switches,
        **_count_stats(torch.tensor(per)),
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
