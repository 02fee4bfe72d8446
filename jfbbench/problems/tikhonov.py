"""Gradient descent on a Tikhonov-regularised least-squares problem, with a learned level."""

from __future__ import annotations

import math
from typing import Any

import torch

from .base import VectorBatch, orthogonal


class Tikhonov(VectorBatch):
    r"""T_theta(x) = x - tau (A^T (A x - y) + Lambda x), Lambda = diag(exp(theta)).

    x* = (A^T A + Lambda)^{-1} A^T y minimises 1/2 ||A x - y||^2 + 1/2 sum_i lambda_i x_i^2.
    theta = log lambda: one scalar (``weights="scalar"``) or one per coordinate
    (``weights="per_coordinate"``).

    The Jacobian J = I - tau (A^T A + Lambda) is symmetric with eigenvalues 1 - tau s,
    s in [lo, hi] = [sigma_min^2 + min lambda, sigma_max^2 + max lambda]. The step is
    tau = 2 / (lo + hi) (a function of theta, differentiated like the rest), which makes the contraction factor
    (hi - lo) / (hi + lo). At creation the singular values of A are chosen so that this
    equals the requested ``lipschitz`` exactly (lo = 1, hi = (1 + rho) / (1 - rho)).

    When theta is trained the factor moves, but it stays below 1 because tau is re-derived
    from the current lambda; :meth:`current_lipschitz` reports it. The fixed point does not
    depend on tau, so the tau-derivative term B_tau = -dtau/dtheta grad f(x) vanishes at x*.

    Closed form (the tests' reference): with H = A^T A + Lambda and v = x* - x_target,
    d ell / d theta_i = -lambda_i x*_i (H^{-1} v)_i (summed over i for the scalar weight).

    The rows of x (``batch`` measurements y) are independent samples (``batched``): T maps
    each row by itself, with the step tau shared through theta only.
    """

    name = "tikhonov"

    def __init__(
        self,
        lipschitz: float = 0.9,
        dim: int = 20,
        batch: int = 2,
        weights: str = "scalar",
        lam: float = 0.5,
        noise: float = 0.1,
        seed: int = 0,
        dtype: Any = torch.float64,
        device: Any = "cpu",
    ) -> None:
        super().__init__(lipschitz, seed, dtype, device, dim=dim, batch=batch)
        if weights not in ("scalar", "per_coordinate"):
            raise ValueError(f"weights must be 'scalar' or 'per_coordinate', got {weights!r}")
        if not (0.0 < float(lam) < 1.0):
            raise ValueError(f"lam must lie in (0, 1) so that A exists with the requested rho, got {lam!r}")
        g = self.generator()
        rho = self.lipschitz
        hi = (1 + rho) / (1 - rho)
        sig2 = (
            torch.linspace(1.0 - lam, hi - lam, self.dim, dtype=torch.float64)
            if self.dim > 1
            else torch.tensor([1.0 - lam], dtype=torch.float64)
        )
        a = orthogonal(self.dim, g) @ torch.diag(sig2.sqrt()) @ orthogonal(self.dim, g)
        self.A = self._to(a)
        self._sig2_range = (float(sig2.min()), float(sig2.max()))
        x_true = torch.randn(self.batch, self.dim, generator=g, dtype=torch.float64)
        self.target = self._to(x_true)
        self.y = self._to(x_true @ a.T + noise * torch.randn(self.batch, self.dim, generator=g, dtype=torch.float64))
        n_theta = 1 if weights == "scalar" else self.dim
        self.theta = self._param(torch.full((n_theta,), math.log(float(lam)), dtype=torch.float64))
        self.config = dict(dim=self.dim, batch=self.batch, weights=weights, lam=float(lam), noise=float(noise))

    def _bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        lam = self.theta.exp()
        return self._sig2_range[0] + lam.min(), self._sig2_range[1] + lam.max()

    def step(self) -> torch.Tensor:
        """tau(theta) = 2 / (lo + hi), differentiable in theta."""
        lo, hi = self._bounds()
        return 2.0 / (lo + hi)

    def current_lipschitz(self) -> float:
        lo, hi = self._bounds()
        return float(((hi - lo) / (hi + lo)).detach())

    def parameters(self) -> list[torch.Tensor]:
        return [self.theta]

    def operator(self, x: torch.Tensor) -> torch.Tensor:
        grad_f = (x @ self.A.T - self.y) @ self.A + self.theta.exp() * x
        return x - self.step() * grad_f

    def closed_form(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(x*, d ell / d theta) by dense linear algebra, independent of any iteration."""
        with torch.no_grad():
            lam = self.theta.exp().expand(self.A.shape[1])
            h = self.A.T @ self.A + torch.diag(lam)
            x_star = torch.linalg.solve(h, (self.y @ self.A).T).T
            w = torch.linalg.solve(h, (x_star - self.target).T).T
            per_coord = -(lam * x_star * w).sum(0)
            grad = per_coord.sum().reshape(1) if self.theta.numel() == 1 else per_coord
        return x_star, grad
