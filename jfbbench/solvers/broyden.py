"""Limited-memory Broyden's method on f(x) - x, one low-rank factor pair per sample."""

from __future__ import annotations

import torch

from ._batched import _comb, _dots

Tensor = torch.Tensor

#: Broyden's default memory: how many rank-one pairs it keeps
BROYDEN_MEMORY = 40
#: an update is skipped where the step ||dx|| is below this many machine epsilons of ||x||
SECANT_FLOOR = 1024


class Broyden:
    r"""Broyden's ("good") method on g(x) = f(x) - x (Broyden 1965; the limited-memory
    form of TorchDEQ's ``broyden_solver``): an approximation H of (dg/dx)^{-1} kept as
    H = -I + sum_j u_j v_j^T (``memory`` pairs per sample; back to H = -I when full), the
    step x <- x - H g(x), and the rank-one update

        H <- H + (dx - H dg) (dx^T H) / (dx^T H dg).

    Starting from H = -I the first step is x <- f(x). An update whose denominator vanishes,
    or whose step is at the round-off of x (``SECANT_FLOOR``), is skipped: H stays an
    estimate of the inverse Jacobian after convergence, for SHINE to reuse.
    """

    name = "broyden"
    default_memory = BROYDEN_MEMORY

    def __init__(self, x: Tensor, memory: int, mix_every: int = 1) -> None:
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

    def inverse_transpose(self, z: Tensor) -> Tensor:
        """H^T z, z of shape (samples, n): the transposed inverse estimate, H ~ (J - I)^{-1}."""
        return self._ht(z)

    def step(self, x: Tensor, fx: Tensor) -> Tensor:
        g = fx - x
        if self.prev is not None:
            if self.filled == self.m:  # memory full: start again from H = -I
                self.filled = 0
            dx, dg = x - self.prev[0], g - self.prev[1]
            vt = self._ht(dx)
            den = (vt * dg).sum(dim=1, keepdim=True)
            finfo = torch.finfo(x.dtype)
            # a pair whose step is at the round-off of x (after convergence, between two
            # checks) carries no secant information: it would only corrupt H
            moved = torch.linalg.vector_norm(dx, dim=1, keepdim=True) > SECANT_FLOOR * finfo.eps * (
                torch.linalg.vector_norm(x, dim=1, keepdim=True)
            )
            ok = (den.abs() > finfo.tiny**0.5) & moved
            u = torch.where(ok, (dx - self._h(dg)) / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(dx))
            self.U[:, self.filled] = u
            self.V[:, self.filled] = torch.where(ok, vt, torch.zeros_like(vt))
            self.filled += 1
        self.prev = (x, g)
        return x - self._h(g)
