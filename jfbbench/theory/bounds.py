"""The bounds B1-B6 as pure functions of quantities measured at the equilibrium.

Setting: T_theta is a rho-contraction in x with fixed point x*; J = d_x T(x*) (n x n),
B = d_theta T(x*) (n x p), v = grad L(x*), u = (I - J^T)^{-1} v and grad ell = B^T u (the
implicit-function theorem). ``rho`` is the declared (global) contraction factor, ``rho_loc``
= ||J||_2 the local one at x*, ``radius`` the spectral radius of J. Norms are Euclidean /
operator 2-norms.

Each function returns the right-hand side of one inequality (or the fitted quantity it is
compared with); :mod:`jfbbench.theory.checks` compares them with what the estimators give
(:mod:`jfbbench.theory.measurements`) and decides what holds. Nothing here touches a problem
or an estimator, so the formulas can be read, tested and reused on their own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Relative slack when comparing a measured quantity with a bound (round-off in the bound).
RELATIVE_SLACK = 1e-9
#: Relative trust in a declared contraction factor: bounds use rho (1 + RHO_SLACK). A factor
#: built from parameters rounded to float32 (e.g. log(lambda) stored in single precision) is
#: exact only to ~1e-9, which over K = 64 powers would otherwise read as a violation.
RHO_SLACK = 1e-8
#: Tolerance of B2: the fitted rate must lie within this fraction of the spectral radius.
RATE_TOLERANCE = 0.10
#: B6: relative tolerance of the memory-linearity check.
MEMORY_TOLERANCE = 0.01


def _check_rho(rho: float) -> float:
    rho = float(rho)
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"a contraction factor must lie in [0, 1), got {rho!r}")
    return rho


def jfb_error_bound(b_norm: float, v_norm: float, rho: float, depth: int) -> float:
    r"""**B1** -- error of JFB-K at the equilibrium:

        ||g_K - grad ell|| <= ||B|| ||v|| rho^K / (1 - rho).

    Since g_K - grad ell = -B^T (J^T)^K u (JFB-K keeps the first K terms of u's Neumann series) and
    ||u|| <= ||v|| / (1 - ||J||), with ||J^K|| <= ||J||^K <= rho^K. It holds with the declared
    rho and with the local rho_loc = ||J(x*)||_2 (tighter): the JFB iterates stay at x*, so
    J is the same at every step. K = 1 is the bound of Fung et al., *JFB: Jacobian-Free
    Backpropagation for Implicit Networks* (AAAI 2022), applied here to the K-fold
    composition T^K (Lipschitz constant rho^K), as in Davy, Briceno-Arias, Pustelnik,
    *Restarted contractive operators to learn at equilibrium* (2025, arXiv 2506.13239).
    """
    rho = _check_rho(rho)
    return float(b_norm) * float(v_norm) * rho ** int(depth) / (1.0 - rho)


@dataclass(frozen=True)
class RateFit:
    """A fitted geometric rate: exp(slope) of log(error) against K by least squares over
    ``depths`` (the asymptotic part of the points above the noise floor)."""

    rate: float
    depths: tuple[int, ...]

    @property
    def points(self) -> int:
        return len(self.depths)


def fit_decay_rate(
    depths: Sequence[int], errors: Sequence[float], floor: float, min_points: int = 4, tail: float = 0.5
) -> RateFit:
    r"""**B2** -- the measured rate: ||g_K - grad ell||^{1/K} tends to the spectral radius
    of J, so the slope of log||error|| against K tends to log(radius) (Gelfand's formula,
    lim ||(J^T)^K||^{1/K} = radius, applied to -B^T (J^T)^K u; for a particular u and B the
    limit is the largest modulus among the eigenvalues they excite, so it can be smaller).

    Only errors above ``floor`` (round-off) are used, and of those the last ``tail``
    fraction in K (at least ``min_points``), where the slowest mode dominates. Returns a
    NaN rate when fewer than ``min_points`` points lie above the floor.
    """
    pts = sorted((int(k), float(e)) for k, e in zip(depths, errors, strict=True) if e > floor and math.isfinite(e))
    if len(pts) < min_points:
        return RateFit(float("nan"), tuple(k for k, _ in pts))
    keep = max(min_points, math.ceil(tail * len(pts)))
    pts = pts[-keep:]
    ks = np.array([k for k, _ in pts], dtype=float)
    logs = np.log([e for _, e in pts])
    slope = np.polyfit(ks, logs, 1)[0]
    return RateFit(float(math.exp(slope)), tuple(int(k) for k in ks))


def jfb_power_bound(b_norm: float, u_norm: float, power_norm: float) -> float:
    r"""**B2** at finite K -- ||g_K - grad ell|| = ||B^T (J^T)^K u|| <= ||B|| ||u|| ||J^K||_2,
    with u = (I - J^T)^{-1} v and ``power_norm`` = ||J^K||_2. By Gelfand's formula
    ||J^K||^{1/K} tends to the spectral radius, so this is the inequality behind B2's rate:
    the error cannot decay more slowly than the radius (up to the transient of a
    non-normal J, which ||J^K|| captures exactly)."""
    return float(b_norm) * float(u_norm) * float(power_norm)


def rate_matches(rate: float, radius: float, tolerance: float = RATE_TOLERANCE) -> bool:
    """B2's pass criterion: abs(rate - radius) <= tolerance * radius."""
    return math.isfinite(rate) and abs(rate - radius) <= tolerance * radius


def forward_a_priori(rho: float, depth: int, initial_distance: float) -> float:
    r"""**B3** (a priori) -- ||x_K - x*|| <= rho^K ||x_0 - x*||, Banach's fixed-point theorem
    for the iterates x_{k+1} = T(x_k) of a rho-contraction."""
    return _check_rho(rho) ** int(depth) * float(initial_distance)


def forward_a_posteriori(rho: float, step_norm: float) -> float:
    r"""**B3** (a posteriori) -- ||x_K - x*|| <= ||x_{K+1} - x_K|| / (1 - rho): from
    ||x_K - x*|| <= ||x_K - T(x_K)|| + ||T(x_K) - T(x*)|| <= ||x_{K+1} - x_K|| + rho ||x_K - x*||
    (the classical a-posteriori estimate of Banach's theorem)."""
    return float(step_norm) / (1.0 - _check_rho(rho))


def unrolled_envelope(rho: float, depth: int) -> float:
    r"""**B4** -- the shape K rho^K of the unrolled error ||g^unroll_K - grad ell|| = O(K rho^K)
    for twice-differentiable T (Ablin, Peyre, Moreau, *Super-efficiency of automatic
    differentiation for functions defined as a minimum*, ICML 2020; Scieur et al., *The curse
    of unrolling*, NeurIPS 2022). The constant is not measurable, so what is checked is the
    decay rate (the fitted rate of the unrolled error divided by K is at most rho, up to
    :data:`RATE_TOLERANCE`) and the ordering: JFB-K's error is below unrolling's at equal K
    on nonlinear T (unrolling also carries the error of the unconverged x_K).
    """
    return int(depth) * _check_rho(rho) ** int(depth)


def restart_bound(constant: float, rho: float, calls: int, depth: int, extra_steps: int = 0) -> float:
    r"""**B5** -- after m calls at fixed theta, restarted JFB-K's gradient is within
    C rho^{m(K+M)} of the JFB-K gradient at the equilibrium (Davy, Briceno-Arias, Pustelnik,
    2025, arXiv 2506.13239): call m starts from s_m = T^{m(K+M)}(x_0), so
    ||s_m - x*|| <= rho^{m(K+M)} ||x_0 - x*||, and the gradient is a Lipschitz function of
    the start point. ``constant`` is C = Lip * ||x_0 - x*||; :mod:`jfbbench.theory.checks` fits
    Lip on the calls m <= 1 and checks the bound at m >= 2 only, so that the points tested
    are not those the constant comes from."""
    return float(constant) * _check_rho(rho) ** (int(calls) * (int(depth) + int(extra_steps)))


def linear_memory(bytes_at_1: float, bytes_at_2: float, depth: int) -> float:
    r"""**B6** -- saved-activation memory of unrolling and JFB-K is affine in K:
    mem(K) = mem(1) + (K - 1) (mem(2) - mem(1)) for the line through (1, mem(1)) and
    (2, mem(2)) (each step of T with a graph saves the same tensors). DEQ and plain JFB do
    not depend on K; restarted JFB-K saves exactly what JFB-K saves. In practice the first
    step differs (its input needs no gradient, and tensors shared by every step, such as a
    linear T's weight, are saved once), so :mod:`jfbbench.theory.checks` takes the line through
    the two deepest K and checks every K >= 2."""
    return float(bytes_at_1) + (int(depth) - 1) * (float(bytes_at_2) - float(bytes_at_1))


def implicit_memory(jfb1_bytes: float, step_bytes: float) -> float:
    r"""**B6** (DEQ) -- the implicit gradient keeps one graph of T at x* for its adjoint
    solve's vector-Jacobian products, whatever the depth or the number of adjoint iterations:
    its saved bytes are at most JFB-1's (the graph of T at x* to theta) plus one application
    of T (the same graph to x as well). A DEQ that kept its adjoint iterates, or unrolled its
    forward solve, would exceed it."""
    return float(jfb1_bytes) + float(step_bytes)


def holds(measured: float, bound: float, floor: float = 0.0, slack: float = RELATIVE_SLACK) -> bool:
    """measured <= bound (1 + slack) + floor, where ``floor`` is the round-off level of the
    measurement (a bound below round-off cannot be resolved)."""
    return bool(measured <= bound * (1.0 + slack) + floor)


__all__ = [
    "MEMORY_TOLERANCE",
    "RATE_TOLERANCE",
    "RELATIVE_SLACK",
    "RHO_SLACK",
    "RateFit",
    "fit_decay_rate",
    "forward_a_posteriori",
    "forward_a_priori",
    "holds",
    "implicit_memory",
    "jfb_error_bound",
    "jfb_power_bound",
    "linear_memory",
    "rate_matches",
    "restart_bound",
    "unrolled_envelope",
]
