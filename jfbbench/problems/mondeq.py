"""A monotone operator equilibrium network on the digits, its step size solved for an exact rho."""

from __future__ import annotations

import math
from typing import Any

import scipy.optimize
import torch

from .._validation import check_positive_int
from .base import PiecewiseLinear
from .classification import ClassificationProblem, digits_train_presets
from .weight_cache import GraphCache, ValueCache

#: The monotonicity margin m of W = (1 - m) I - A^T A + B - B^T.
MONOTONE = 0.5
#: P = A^T A - (B - B^T) is kept to ||P||_2 <= CLIP m (1 - q) / q, q = sqrt(1 - rho^2) (see MonDEQ).
CLIP = 0.99
#: At creation ||B - B^T||_2 = SKEW R and ||A||_2^2 = GRAM R, R that bound: the clip is inactive.
SKEW, GRAM = 0.6, 0.3
N_CLASSES = 10


def clip_radius(rho: float) -> float:
    """R = CLIP m (1 - q) / q, q = sqrt(1 - rho^2): with ||P||_2 <= R, ||I - W||_2 <= m + R < m / q,
    so min_alpha ||I - alpha (I - W)||_2 <= sqrt(1 - m^2 / ||I - W||_2^2) < rho."""
    q = math.sqrt(1.0 - rho**2)
    return CLIP * MONOTONE * (1.0 - q) / q


def step_for_contraction(k: torch.Tensor, rho: float) -> tuple[float, torch.Tensor, torch.Tensor, float]:
    r"""The step alpha with ||I - alpha K||_2 = rho exactly, K = I - W (float64, no graph).

    f(alpha) = ||I - alpha K||_2 is convex in alpha (a norm of an affine map), f(0) = 1, and
    f decreases at 0 with slope -lambda_min((K + K^T) / 2) <= -m < 0. Its minimum is found by
    bounded scalar minimisation on [0, 2 / ||K||_2] (beyond, f > 1), and alpha is the root of
    f(alpha) = rho on the decreasing branch [0, argmin] (Brent's method; f is an SVD).
    Returns (alpha, u, v, s): the top singular pair of I - alpha K and s = df/dalpha =
    -u^T K v < 0, from which the caller differentiates alpha(theta) implicitly.

    Raises ValueError where min_alpha ||I - alpha K||_2 >= rho: no step reaches rho.
    """
    eye = torch.eye(k.shape[0], dtype=torch.float64)

    def f(alpha: float) -> float:
        return float(torch.linalg.matrix_norm(eye - alpha * k, 2))

    hi = 2.0 / float(torch.linalg.matrix_norm(k, 2))
    best = scipy.optimize.minimize_scalar(f, bounds=(0.0, hi), method="bounded", options=dict(xatol=1e-12 * hi))
    if not best.fun < rho:
        raise ValueError(
            f"lipschitz={rho} cannot be reached: the smallest ||I - alpha (I - W)||_2 over the step alpha is "
            f"{best.fun:.6g} for this W (its monotone part is too weak against its spread)"
        )
    alpha = scipy.optimize.brentq(lambda a: f(a) - rho, 0.0, float(best.x), xtol=1e-300, maxiter=200)
    u_, _, vh = torch.linalg.svd(eye - alpha * k)
    u, v = u_[:, 0], vh[0]
    return alpha, u, v, float(-(u @ k @ v))


class MonDEQ(PiecewiseLinear, ClassificationProblem):
    r"""Monotone operator DEQ (Winston & Kolter, *Monotone operator equilibrium networks*,
    NeurIPS 2020, arXiv 2006.08591) on scikit-learn's digits, flattened (64 inputs).

        T_theta(z) = relu((1 - alpha) z + alpha (W z + U x + b)) = relu(M z + alpha (U x + b)),
        W = (1 - m) I - A^T A + B - B^T,   M = I - alpha (I - W),

    one row of z per digit (a batch of independent samples), theta = (A, B, U, b, H, c) with
    the read-out logits = z H^T + c and L = cross-entropy (mean over the batch). Settings:
    ``width``, ``batch`` (the first ``batch`` training digits as created) and ``train_size``
    (the training digits kept, all by default).

    **rho exact.** I - W = m I + P, P = A^T A - (B - B^T), is m-strongly monotone, so
    forward-backward splitting converges for small alpha; the textbook step alpha = m / L^2
    (L = ||I - W||_2) only gives the bound ||M||_2 <= sqrt(1 - m^2 / L^2), never reached. Here
    alpha is solved for: ||M||_2 = ||I - alpha (I - W)||_2 is convex in alpha, equals 1 at 0 and
    decreases first, so :func:`step_for_contraction` finds its minimum and then the alpha on
    the decreasing branch where it equals the declared rho (Brent's method on SVDs). relu is
    1-Lipschitz, so dT/dz = diag(relu') M has norm <= rho everywhere.

    **rho reachable for every theta.** Such an alpha exists when min_alpha ||M||_2 < rho, which
    the bound above guarantees once m / L >= q = sqrt(1 - rho^2). Since L <= m + ||P||_2, P
    enters W rescaled to ||P||_2 <= R = 0.99 m (1 - q) / q (spectral clipping: W =
    (1 - m) I - s P with s = min(1, R / ||P||_2), still of the monotone form), so no training
    step can leave the region where rho is reachable. At creation A and B are Gaussian with
    ||B - B^T||_2 = 0.6 R and ||A||_2^2 = 0.3 R (the clip inactive); the equilibrium then has
    ||J(z*)||_2 >= 0.99 rho (measured at rho = 0.5, 0.9, 0.99: a sample's Jacobian is M with
    its rows of inactive units zeroed, and M's singular values lie close together).

    **During training.** alpha (and the clip) are functions of (A, B), re-solved inside
    :meth:`operator` whenever they change (cached per value), so rho holds at every step. The
    derivatives are taken implicitly: with (u, v) the top singular pair of M at the solved
    alpha_0 and s = -u^T (I - W) v, alpha(theta) = alpha_0 - (u^T M(alpha_0, theta) v - rho) / s
    has the value alpha_0 and the gradient of the root of ||M(alpha, theta)||_2 = rho
    (||P||_2 likewise as u_P^T P v_P with P's top singular pair held fixed). The equilibrium
    itself does not depend on alpha (on its active units -K z* + U x + b = 0, a zero of the
    monotone inclusion), so dT/dalpha vanishes at z* and the exact gradient never sees
    d alpha / d theta, as for Tikhonov's step; the iterates of the truncated estimators
    (JFB-K, unrolling) do. :meth:`current_lipschitz` reports ||M||_2 from a fresh SVD.
    """

    name = "mondeq"
    batched = True
    #: ``jfbbench train`` presets: ``default`` and ``quick`` (seconds; the tests).
    train_presets = digits_train_presets(dict(width=64, train_size=256), dict(width=8, batch=8))

    def __init__(
        self,
        lipschitz: float = 0.9,
        width: int = 64,
        batch: int = 32,
        train_size: int | None = None,
        seed: int = 0,
        dtype: Any = torch.float64,
        device: Any = "cpu",
    ) -> None:
        super().__init__(lipschitz, seed, dtype, device)
        width = check_positive_int(width, "width")
        g = self.generator()
        self.clip = clip_radius(self.lipschitz)
        a = torch.randn(width, width, generator=g, dtype=torch.float64)
        b = torch.randn(width, width, generator=g, dtype=torch.float64)
        a = a * math.sqrt(GRAM * self.clip) / torch.linalg.matrix_norm(a, 2)
        skew_norm = float(torch.linalg.matrix_norm(b - b.T, 2)) if width > 1 else 1.0
        b = b * (SKEW * self.clip / skew_norm)
        self.A, self.B = self._param(a), self._param(b)
        self.U = self._param(torch.randn(width, 64, generator=g, dtype=torch.float64) / 8.0)
        self.b = self._param(0.1 * torch.randn(width, generator=g, dtype=torch.float64))
        self._make_head(width, N_CLASSES, g)
        self._step = ValueCache()
        self._weights = GraphCache()
        self._use_digits(lambda x: x.reshape(x.shape[0], -1), batch, train_size, width=width)  # 64 inputs

    def _spread(self) -> torch.Tensor:
        """P = A^T A - (B - B^T)."""
        return self.A.T @ self.A - (self.B - self.B.T)

    def _monotone_part(self, p: torch.Tensor, p_norm: torch.Tensor | float) -> torch.Tensor:
        """I - W = m I + s P, s = min(1, R / ||P||_2)."""
        eye = torch.eye(p.shape[0], dtype=p.dtype, device=p.device)
        scale = self.clip / p_norm if p_norm > self.clip else 1.0
        return MONOTONE * eye + scale * p

    def _solved(self) -> tuple[float, torch.Tensor, torch.Tensor, float, torch.Tensor, torch.Tensor]:
        """alpha_0, the top singular pairs of M (u, v) and of P (u_P, v_P), and dsigma/dalpha
        (no graph; once per value of (A, B))."""

        def solve() -> tuple[float, torch.Tensor, torch.Tensor, float, torch.Tensor, torch.Tensor]:
            p = self._spread().detach().to(torch.float64)
            u_, sv, vh = torch.linalg.svd(p)
            k = self._monotone_part(p, float(sv[0]))
            alpha, u, v, s = step_for_contraction(k, self.lipschitz)
            return alpha, self._to(u), self._to(v), s, self._to(u_[:, 0]), self._to(vh[0])

        return self._step.get([self.A, self.B], solve)

    def step_size(self) -> float:
        """alpha at the current (A, B)."""
        return self._solved()[0]

    def recurrence(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, alpha) with ||M||_2 = rho, differentiable in (A, B) (alpha implicitly)."""

        def build() -> tuple[torch.Tensor, torch.Tensor]:
            alpha0, u, v, s, u_p, v_p = self._solved()
            p = self._spread()
            k = self._monotone_part(p, u_p @ (p @ v_p))  # ||P||_2 in value
            sigma = u @ v - alpha0 * (u @ (k @ v))  # = ||I - alpha0 K||_2 in value
            alpha = alpha0 - (sigma - self.lipschitz) / s
            return torch.eye(k.shape[0], dtype=k.dtype, device=k.device) - alpha * k, alpha

        m, alpha = self._weights.get([self.A, self.B], build)
        return m, alpha

    def current_lipschitz(self) -> float:
        """||M||_2 at the current parameters, from a fresh SVD (rho while alpha is solved)."""
        with torch.no_grad():
            return float(torch.linalg.matrix_norm(self.recurrence()[0].to(torch.float64), 2))

    def parameters(self) -> list[torch.Tensor]:
        return [self.A, self.B, self.U, self.b, *self.head_parameters()]

    def operator(self, z: torch.Tensor) -> torch.Tensor:
        m, alpha = self.recurrence()
        return torch.relu(z @ m.T + alpha * (self.inputs @ self.U.T + self.b))

    def initial_point(self) -> torch.Tensor:
        return torch.zeros(self.inputs.shape[0], self.A.shape[0], dtype=self.dtype, device=self.device)
