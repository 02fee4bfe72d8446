"""Anderson acceleration with periodic mixing, one history per sample."""

from __future__ import annotations

import torch

from ._batched import _comb

Tensor = torch.Tensor

#: Anderson's default memory: how many past iterates it mixes
ANDERSON_MEMORY = 10
#: Anderson mixes every this many steps once its history is full (fixed-point steps between;
#: at every step before). Measured at tolerance 1e-8, memory 10, steps to converge with
#: mixing at every step / this rule: affine 1000 x 32 rho = 0.99 272 / 116, rho = 0.999
#: (300 x 16) 1945 / 178, tikhonov 1000 x 32 rho = 0.99 193 / 103, weighted_tv 128^2
#: rho = 0.99 82 / 68, the tight tanh layer 193 / 193; a short solve, weighted_tv 128^2 in
#: float32 to 1e-4, 19 / 20 (22 mixing every third step from the first). In time to
#: tolerance, mixing every 3rd step (from the first) was within 6 % of the best of 1, 2, 3,
#: 4, 6, 8 on each long case (results/README.md, "Per-iteration overhead of the solvers")
ANDERSON_MIX_EVERY = 3


class Anderson:
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
    default_memory = ANDERSON_MEMORY

    def __init__(self, x: Tensor, memory: int, mix_every: int = 1, reg: float | None = None) -> None:
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
