"""Numerical validation of THEORY.md's bounds B1-B6 (:mod:`jfbbench.bounds`).

For each problem configuration the equilibrium quantities are computed once
(:func:`equilibrium`: x*, the exact gradient, ||J||_2, the spectral radius of J, ||B||_2,
||v||, ||x_0 - x*||), the estimators are measured over the depths K (:func:`measure`, or
:func:`measurements_from_table` for an existing sweep table), and :func:`evaluate` turns both
into a tidy table with one row per (bound, check, problem, rho, seed, K[, calls]):
``measured``, ``bound_value``, ``ratio`` = measured / bound, ``checked`` (the point can be
resolved above round-off and the bound's assumptions hold) and ``holds``. :func:`summarize`
aggregates it per (bound, check, problem, rho).

A problem whose contraction is not guaranteed (``contraction_guaranteed = False``: a
non-smooth prox, a learned denoiser) is reported as "outside the theory" with its measured
rho_loc, never counted as a pass.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import bounds, estimators, linalg, problems
from .measure import reference_gradient, saved_tensor_bytes
from .solvers import dense_jacobian, fixed_point

Tensor = torch.Tensor

#: Round-off floor, in units of the dtype's machine epsilon times the scale of the quantity
#: (||B|| ||v|| / (1 - rho_loc) for gradients, ||x_0|| + ||x*|| for iterates).
NOISE_EPS = 1e3
#: The default validation grid (``jfbbench validate`` without arguments).
DEFAULT_LIPSCHITZ = (0.5, 0.9, 0.99)
DEFAULT_SEEDS = (0, 1)
DEFAULT_DEPTHS = tuple(range(1, 65))
DEFAULT_RESTART_DEPTHS = (1, 2, 4, 8)
#: Labels of the checks, per bound.
CHECKS = {
    "B1": ("JFB-K error <= ||B|| ||v|| rho^K/(1-rho)", "same with rho_loc", "rho_loc = ||J(x*)|| <= rho"),
    "B2": ("fitted rate = spectral radius (10%)", "JFB-K error <= ||B|| ||u|| ||J^K||"),
    "B3": ("a priori rho^K ||x0-x*||", "a posteriori ||x_K+1-x_K||/(1-rho)"),
    "B4": ("JFB-K error <= unrolled error", "rate of unrolled error / K <= rho"),
    "B5": ("restart gap <= C rho^(mK)",),
    "B6": ("unrolled memory linear in K>=2", "JFB memory linear in K>=2", "restarted = JFB memory", "DEQ memory flat"),
}
OUTSIDE = "outside the theory"
#: Checks of a limit, a big-O or an expected ordering rather than of an inequality that holds
#: at every K under the assumptions -- B2's rate (||e_K||^{1/K} -> radius as K -> infinity: a
#: finite K range cannot refute it, and the limit is below the radius when the slowest mode is
#: not excited by u and B), B4's O(K rho^K) (no measurable constant: its fitted rate over a
#: finite window can exceed rho, e.g. by 13-15 % on tikhonov at K <= 8) and B4's ordering
#: ("slower than JFB-K") -- are reported ("pass" or "not observed"), never a cause of
#: failure. B2's finite-K content is checked as the inequality ||e_K|| <= ||B|| ||u|| ||J^K||,
#: whose K-th root tends to the radius.
EXPECTATIONS = {("B2", CHECKS["B2"][0]), ("B4", CHECKS["B4"][0]), ("B4", CHECKS["B4"][1])}


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread: the validation problems are small, and intra-op threads on a
    shared, loaded machine slow small matrix products down a hundredfold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def claims_contraction(problem: Any) -> bool:
    """A problem claims a contraction unless it says otherwise (``contraction_guaranteed``);
    a user problem without the attribute claims one, since it declares ``lipschitz``."""
    return bool(getattr(problem, "contraction_guaranteed", True))


def outside_reason(problem: Any) -> str | None:
    """Why ``problem`` leaves the theory's assumptions, or None: its contraction is not
    guaranteed (``contraction_guaranteed = False``), or T is not differentiable
    (``differentiable = False``, e.g. a non-smooth proximal step). A problem may say more in
    ``theory_note``."""
    reasons = []
    if not claims_contraction(problem):
        reasons.append("contraction not guaranteed (contraction_guaranteed=False)")
    if not getattr(problem, "differentiable", True):
        reasons.append("T not differentiable (differentiable=False)")
    if not reasons:
        return None
    note = getattr(problem, "theory_note", None)
    return f"{OUTSIDE}: " + "; ".join(reasons) + (f" ({note})" if note else "")


@dataclass
class Equilibrium:
    """Quantities at the equilibrium x* of one problem (THEORY.md, "Setting")."""

    x_star: Tensor
    x0: Tensor
    grad: Tensor  #: the exact gradient B^T (I - J^T)^{-1} v (dense), or the tight DEQ one
    rho: float  #: declared contraction factor
    rho_loc: float  #: ||J||_2 at x*
    radius: float  #: spectral radius of J
    b_norm: float  #: ||B||_2
    v_norm: float  #: ||grad L(x*)||
    initial_distance: float  #: ||x_0 - x*||
    nonlinear: bool  #: whether J changes with x (T not affine in x)
    dense: bool  #: whether J and B were formed densely (exact norms and gradient)
    jac: Tensor | None = None  #: the dense J (n x n) when ``dense``
    u_norm: float = float("nan")  #: ||(I - J^T)^{-1} v|| when ``dense``

    @property
    def rho_checked(self) -> float:
        """The declared rho, trusted to :data:`jfbbench.bounds.RHO_SLACK` (relative)."""
        return min(self.rho * (1.0 + bounds.RHO_SLACK), math.nextafter(1.0, 0.0))

    @property
    def eps(self) -> float:
        return float(torch.finfo(self.x_star.dtype).eps)

    @property
    def grad_scale(self) -> float:
        """max(||grad ell||, ||B|| ||v|| / (1 - rho_loc)), with 1 - rho_loc taken >= 0.01: the
        size of the terms summed in the gradients, which sets their round-off."""
        return max(self.b_norm * self.v_norm / max(1.0 - self.rho_loc, 0.01), float(self.grad.norm()))

    @property
    def x_scale(self) -> float:
        return float(self.x0.norm() + self.x_star.norm())


def _is_nonlinear(op: Any, points: Sequence[Tensor], seed: int = 0) -> bool:
    g = torch.Generator(device="cpu").manual_seed(seed)
    w = torch.randn(points[0].shape, generator=g, dtype=points[0].dtype).to(points[0].device)
    outs = [torch.func.jvp(op, (p.detach(),), (w,))[1].detach() for p in points]
    ref = max(float(outs[0].norm()), 1e-300)
    return any(float((o - outs[0]).norm()) > 1e-9 * ref for o in outs[1:])


def equilibrium(problem: Any, dense_max_dim: int = 2048) -> Equilibrium:
    """x*, the exact gradient and the norms of THEORY.md at the equilibrium of ``problem``.

    For n <= ``dense_max_dim``: x* by Newton's method, J and B formed densely, ||J||_2,
    ||B||_2 and the spectral radius exact, grad ell = B^T (I - J^T)^{-1} v by a dense solve.
    Otherwise x* and the gradient from the tight DEQ reference, ||J||_2 and ||B||_2 by power
    iteration, the spectral radius by the power estimate of :mod:`jfbbench.linalg`.
    """
    params = list(problem.parameters())
    x0 = problem.initial_point().detach()
    n = x0.numel()
    dense = n <= dense_max_dim
    x_star = linalg.newton_fixed_point(problem.operator, x0) if dense else None
    if dense:
        with torch.no_grad():
            res = float((problem.operator(x_star) - x_star).norm())
        dense = math.isfinite(res) and res <= 1e-10 * max(1.0, float(x_star.norm()))
    if dense:
        x = x_star.clone().requires_grad_(True)
        with torch.enable_grad():
            fx = problem.operator(x)
            jac = dense_jacobian(fx, x).detach()
            bmat = linalg.dense_parameter_jacobian(fx, params)
            (v,) = torch.autograd.grad(problem.loss(x), x)
        v = v.detach().reshape(-1)
        eye = torch.eye(n, dtype=jac.dtype, device=jac.device)
        u = torch.linalg.solve(eye - jac.T, v)
        grad = bmat.T @ u
        rho_loc = float(torch.linalg.matrix_norm(jac, 2))
        radius = float(torch.linalg.eigvals(jac).abs().max())
        b_norm = float(torch.linalg.matrix_norm(bmat, 2))
        v_norm = float(v.norm())
    else:
        ref = reference_gradient(problem)
        x_star, grad = ref.x.detach(), ref.grad.detach()
        rho_loc = linalg.jacobian_spectral_norm(problem.operator, x_star, iters=300)
        radius = linalg.jacobian_spectral_radius(problem.operator, x_star, dense_max_dim=dense_max_dim)
        b_norm = linalg.parameter_jacobian_norm(problem.operator, x_star, params, dense_max_dim=dense_max_dim)
        x = x_star.clone().requires_grad_(True)
        with torch.enable_grad():
            (v,) = torch.autograd.grad(problem.loss(x), x)
        v_norm = float(v.norm())
    probe = x_star + (x_star - x0) * 0.5 + 0.1 * x_star.abs().mean()
    return Equilibrium(
        x_star=x_star.detach(),
        x0=x0,
        grad=grad.detach(),
        rho=float(problem.lipschitz),
        rho_loc=rho_loc,
        radius=radius,
        b_norm=b_norm,
        v_norm=v_norm,
        initial_distance=float((x0 - x_star).norm()),
        nonlinear=_is_nonlinear(problem.operator, [x_star, x0, probe]),
        dense=dense,
        jac=jac if dense else None,
        u_norm=float(u.norm()) if dense else float("nan"),
    )


def local_lipschitz(problem: Any, max_iter: int = 500) -> tuple[float, bool]:
    """rho_loc = ||J(x*)||_2 by power iteration at a forward solve's x* (for problems outside
    the theory, whose x* may be expensive); returns (rho_loc, whether the solve converged)."""
    x0 = problem.initial_point().detach()
    tol = 1e-10 if x0.dtype == torch.float64 else 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x_star, stats = fixed_point(problem.operator, x0, tol, max_iter, method="anderson")
    return linalg.jacobian_spectral_norm(problem.operator, x_star, iters=50), bool(stats["converged"])


@dataclass
class Measurements:
    """What the estimators gave on one problem configuration, keyed by depth K.

    ``restart[K]`` lists (m, gap_m, ||s_m - x*||) for the calls m = 0, 1, ... of restarted
    JFB-K at fixed theta (gap_m = ||g_m - g^JFB_K||, s_m the start of call m); ``forward[K]``
    is (||x_K - x*||, ||x_{K+1} - x_K||) for the Picard iterates from the cold start.
    """

    jfb_error: dict[int, float] = field(default_factory=dict)
    unrolled_error: dict[int, float] = field(default_factory=dict)
    jfb_bytes: dict[int, float] = field(default_factory=dict)
    unrolled_bytes: dict[int, float] = field(default_factory=dict)
    restarted_bytes: dict[int, float] = field(default_factory=dict)
    deq_bytes: dict[int, float] = field(default_factory=dict)
    restart: dict[int, list[tuple[int, float, float]]] = field(default_factory=dict)
    forward: dict[int, tuple[float, float]] = field(default_factory=dict)
    floor: float = 0.0  #: round-off floor of gradient errors
    floor_x: float = 0.0  #: round-off floor of iterate distances
    source: str = "measured"


class _StartingAt:
    """``problem`` with ``initial_point()`` replaced by a given point (x*): JFB-K's forward
    solve then starts at the equilibrium and stops at once, instead of re-solving to 100 eps
    at every depth."""

    def __init__(self, problem: Any, x: Tensor) -> None:
        self._problem = problem
        self._x = x.detach()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._problem, name)

    def initial_point(self) -> Tensor:
        return self._x.clone()


def _quiet_gradient(est: estimators.Estimator, problem: Any, state: Tensor | None = None) -> tuple[Any, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return saved_tensor_bytes(lambda: est.gradient(problem, state=state))


def forward_distances(problem: Any, eq: Equilibrium, depths: Iterable[int]) -> dict[int, tuple[float, float]]:
    """(||x_K - x*||, ||x_{K+1} - x_K||) for x_{k+1} = T(x_k) from the cold start (B3)."""
    wanted = sorted(set(int(k) for k in depths))
    out: dict[int, tuple[float, float]] = {}
    if not wanted:
        return out
    with torch.no_grad():
        x = eq.x0.clone()
        for k in range(1, wanted[-1] + 1):
            x = problem.operator(x)
            if k in wanted:
                nxt = problem.operator(x)
                out[k] = (float((x - eq.x_star).norm()), float((nxt - x).norm()))
    return out


def restart_sequence(
    problem: Any, eq: Equilibrium, depth: int, calls: int, target: Tensor
) -> tuple[list[tuple[int, float, float]], int]:
    """Calls m = 0..calls-1 of restarted JFB-K at fixed theta: (m, ||g_m - target||,
    ||s_m - x*||), and the saved bytes of the first call."""
    est = estimators.make("restarted_jfb", depth=depth)
    state, out, first_bytes = None, [], 0
    for m in range(calls):
        start = eq.x0 if state is None else state
        e, nbytes = _quiet_gradient(est, problem, state)
        if m == 0:
            first_bytes = nbytes
        out.append((m, float((e.grad - target).norm()), float((start - eq.x_star).norm())))
        state = e.state
    return out, first_bytes


def _restart_calls(depth: int, max_depth: int) -> int:
    """m = 0..ceil(max_depth / K): the restarts cover as many steps as the deepest K."""
    return max(2, math.ceil(max_depth / depth) + 1)


def measure(
    problem: Any,
    eq: Equilibrium,
    depths: Sequence[int] = DEFAULT_DEPTHS,
    restart_depths: Sequence[int] = DEFAULT_RESTART_DEPTHS,
) -> Measurements:
    """Run JFB-K and unrolled-K for every K in ``depths`` (error against ``eq.grad`` and
    saved bytes), restarted JFB-K sequences for K in ``restart_depths``, DEQ's saved bytes at
    the smallest and largest K, and the forward iterates. JFB's forward solve starts at x*
    and runs to 100 eps, so that its error is resolved down to round-off."""
    dtype = eq.x_star.dtype
    tol = 100 * float(torch.finfo(dtype).eps) if dtype == torch.float64 else None
    meas = Measurements(
        floor=NOISE_EPS * eq.eps * eq.grad_scale,
        floor_x=NOISE_EPS * eq.eps * eq.x_scale,
    )
    jfb_grads: dict[int, Tensor] = {}
    at_eq = _StartingAt(problem, eq.x_star)
    for k in sorted(set(depths) | set(restart_depths)):
        e, nbytes = _quiet_gradient(estimators.make("jfb", depth=k, tol=tol), at_eq)
        jfb_grads[k] = e.grad
        if k in depths:
            meas.jfb_error[k] = float((e.grad - eq.grad).norm())
            meas.jfb_bytes[k] = nbytes
    for k in depths:
        e, nbytes = _quiet_gradient(estimators.make("unrolled", depth=k), problem)
        meas.unrolled_error[k] = float((e.grad - eq.grad).norm())
        meas.unrolled_bytes[k] = nbytes
    max_depth = max(depths)
    for k in restart_depths:
        meas.restart[k], meas.restarted_bytes[k] = restart_sequence(
            problem, eq, k, _restart_calls(k, max_depth), jfb_grads[k]
        )
    for k in sorted({min(depths), max_depth}):
        _, meas.deq_bytes[k] = _quiet_gradient(estimators.make("deq", depth=k, tol=tol), at_eq)
    meas.forward = forward_distances(problem, eq, depths)
    return meas


def _row(bound: str, check: str, measured: float, bound_value: float, checked: bool, ok: bool, **extra: Any) -> dict:
    ratio = measured / bound_value if bound_value and math.isfinite(bound_value) and bound_value > 0 else float("nan")
    return dict(
        bound=bound,
        check=check,
        measured=float(measured),
        bound_value=float(bound_value),
        ratio=ratio,
        checked=bool(checked),
        holds=bool(ok) if checked else None,
        **extra,
    )


def _b1(eq: Equilibrium, m: Measurements) -> list[dict]:
    """B1 with the declared rho and with rho_loc, and the premise rho_loc <= rho (a local
    Lipschitz constant never exceeds a global one) -- the most direct test of a declared rho."""
    premise = bounds.holds(eq.rho_loc, eq.rho_checked, 1e3 * eq.eps)
    rows = [_row("B1", CHECKS["B1"][2], eq.rho_loc, eq.rho_checked, True, premise)]
    for check, rho in zip(CHECKS["B1"][:2], (eq.rho_checked, eq.rho_loc), strict=True):
        for k, err in sorted(m.jfb_error.items()):
            if rho >= 1.0:  # ||J(x*)|| >= 1: no local contraction, the local bound is undefined
                note = f"rho_loc = {rho:.4g} >= 1: T is not a contraction at x*"
                rows.append(_row("B1", check, err, float("nan"), False, False, estimator="jfb", depth=k, note=note))
                continue
            b = bounds.jfb_error_bound(eq.b_norm, eq.v_norm, rho, k)
            checked = b > m.floor or err > m.floor
            rows.append(_row("B1", check, err, b, checked, bounds.holds(err, b, m.floor), estimator="jfb", depth=k))
    return rows


def _rate_rows(
    bound: str,
    check: str,
    errors: dict[int, float],
    floor: float,
    target: float,
    ok_fn: Any,
    estimator: str,
    note: str | None = None,
    divide_by_depth: bool = False,
) -> list[dict]:
    """Rows of a fitted-rate check; ``note`` (a reason) marks them not checked. With
    ``divide_by_depth`` the rate is fitted to error / K (B4: the O(K rho^K) shape), only
    points whose error is above ``floor`` taking part."""
    fitted = {k: (e / k if divide_by_depth else e) for k, e in errors.items() if e > floor}
    fit = bounds.fit_decay_rate(list(fitted), list(fitted.values()), 0.0)
    ok = ok_fn(fit.rate, target)
    rows = []
    for k, err in sorted(errors.items()):
        checked = note is None and k in fit.depths
        row = _row(bound, check, err, float("nan"), checked, ok, estimator=estimator, depth=k, note=note)
        row.update(ratio=fit.rate / target if target > 0 else float("nan"), fitted_rate=fit.rate)
        rows.append(row)
    return rows


def _b2(eq: Equilibrium, m: Measurements) -> list[dict]:
    """B2: the fitted rate against the radius (an expectation), and the finite-K inequality
    ||g_K - grad ell|| = ||B^T (J^T)^K u|| <= ||B|| ||u|| ||J^K||_2 (dense J only)."""
    note = None
    if not eq.dense:
        note = "spectral radius only estimated (n > dense_max_dim): rate reported, not checked"
    elif len(m.jfb_error) < 6:
        note = "B2 needs at least 6 depths: rate reported, not checked"
    rows = _rate_rows("B2", CHECKS["B2"][0], m.jfb_error, m.floor, eq.radius, bounds.rate_matches, "jfb", note)
    if eq.jac is None or not m.jfb_error:
        return rows
    power = torch.eye(eq.jac.shape[0], dtype=eq.jac.dtype, device=eq.jac.device)
    depth = 0
    for k, err in sorted(m.jfb_error.items()):
        while depth < k:
            power, depth = power @ eq.jac, depth + 1
        b = bounds.jfb_power_bound(eq.b_norm, eq.u_norm, float(torch.linalg.matrix_norm(power, 2)))
        checked = b > m.floor or err > m.floor
        rows.append(
            _row("B2", CHECKS["B2"][1], err, b, checked, bounds.holds(err, b, m.floor), estimator="jfb", depth=k)
        )
    return rows


def _b3(eq: Equilibrium, m: Measurements) -> list[dict]:
    rows = []
    for k, (dist, step) in sorted(m.forward.items()):
        for check, b in zip(
            CHECKS["B3"],
            (
                bounds.forward_a_priori(eq.rho_checked, k, eq.initial_distance),
                bounds.forward_a_posteriori(eq.rho_checked, step),
            ),
            strict=True,
        ):
            checked = b > m.floor_x or dist > m.floor_x
            rows.append(_row("B3", check, dist, b, checked, bounds.holds(dist, b, m.floor_x), depth=k))
    return rows


def _b4(eq: Equilibrium, m: Measurements) -> list[dict]:
    rows = []
    note = None if eq.nonlinear else "T is affine in x: the ordering is claimed for nonlinear T only"
    for k in sorted(set(m.jfb_error) & set(m.unrolled_error)):
        jfb, unr = m.jfb_error[k], m.unrolled_error[k]
        checked = eq.nonlinear and (jfb > m.floor or unr > m.floor)
        rows.append(_row("B4", CHECKS["B4"][0], jfb, unr, checked, bounds.holds(jfb, unr, m.floor), depth=k, note=note))
    rows += _rate_rows(
        "B4",
        CHECKS["B4"][1],
        m.unrolled_error,
        m.floor,
        eq.rho,
        lambda rate, rho: math.isfinite(rate) and rate <= rho * (1 + bounds.RATE_TOLERANCE),
        "unrolled",
        divide_by_depth=True,
    )
    return rows


def _b5(eq: Equilibrium, m: Measurements) -> list[dict]:
    """C = ||x_0 - x*|| max_m gap_m / ||s_m - x*||: the largest measured Lipschitz ratio of the
    start-to-gradient map along the sequence, so the check tests that the starts contract by
    rho^K per call and that the gap vanishes with them."""
    rows = []
    for k, seq in sorted(m.restart.items()):
        ratios = [gap / dist for _, gap, dist in seq if dist > m.floor_x]
        constant = max(ratios, default=0.0) * eq.initial_distance
        for calls, gap, _ in seq:
            b = bounds.restart_bound(constant, eq.rho_checked, calls, k)
            checked = b > m.floor or gap > m.floor
            rows.append(
                _row(
                    "B5",
                    CHECKS["B5"][0],
                    gap,
                    b,
                    checked,
                    bounds.holds(gap, b, m.floor),
                    estimator="restarted_jfb",
                    depth=k,
                    calls=calls,
                )
            )
    return rows


def _b6(m: Measurements) -> list[dict]:
    rows = []
    for check, est, mem in (
        (CHECKS["B6"][0], "unrolled", m.unrolled_bytes),
        (CHECKS["B6"][1], "jfb", m.jfb_bytes),
    ):
        ks = sorted(k for k in mem if k >= 2)
        if len(ks) < 3:
            continue
        ka, kb = ks[-2], ks[-1]
        slope = (mem[kb] - mem[ka]) / (kb - ka)
        for k in ks:
            pred = bounds.linear_memory(mem[kb] - (kb - 1) * slope, mem[kb] - (kb - 2) * slope, k)
            ok = abs(mem[k] - pred) <= bounds.MEMORY_TOLERANCE * max(pred, 1.0)
            rows.append(_row("B6", check, mem[k], pred, True, ok, estimator=est, depth=k))
    for k, nbytes in sorted(m.restarted_bytes.items()):
        if k in m.jfb_bytes:
            ok = abs(nbytes - m.jfb_bytes[k]) <= bounds.MEMORY_TOLERANCE * max(m.jfb_bytes[k], 1.0)
            rows.append(
                _row("B6", CHECKS["B6"][2], nbytes, m.jfb_bytes[k], True, ok, estimator="restarted_jfb", depth=k)
            )
    if m.deq_bytes:
        first = m.deq_bytes[min(m.deq_bytes)]
        for k, nbytes in sorted(m.deq_bytes.items()):
            ok = abs(nbytes - first) <= bounds.MEMORY_TOLERANCE * max(first, 1.0)
            rows.append(_row("B6", CHECKS["B6"][3], nbytes, first, True, ok, estimator="deq", depth=k))
    return rows


def evaluate(eq: Equilibrium, m: Measurements, meta: dict[str, Any]) -> list[dict]:
    """Every bound's rows for one problem configuration; ``meta`` (problem, config,
    lipschitz, seed) and the equilibrium quantities are added to each row."""
    rows = _b1(eq, m) + _b2(eq, m) + _b3(eq, m) + _b4(eq, m) + _b5(eq, m) + _b6(m)
    common = dict(
        meta,
        rho_loc=eq.rho_loc,
        spectral_radius=eq.radius,
        b_norm=eq.b_norm,
        v_norm=eq.v_norm,
        grad_norm=float(eq.grad.norm()),
        initial_distance=eq.initial_distance,
        floor=m.floor,
        floor_x=m.floor_x,
        source=m.source,
        status="checked",
    )
    return [{**common, **r} for r in rows]


def outside_rows(problem: Any, meta: dict[str, Any], reason: str) -> list[dict]:
    """One row per bound for a problem outside the theory, with its measured rho_loc."""
    try:
        rho_loc, converged = local_lipschitz(problem)
        note = f"{reason}; measured rho_loc = {rho_loc:.4g}" + ("" if converged else " (forward solve not converged)")
    except Exception as exc:  # a problem we cannot even measure is still reported
        rho_loc, note = float("nan"), f"{reason}; rho_loc not measured: {type(exc).__name__}: {exc}"
    return [
        dict(meta, bound=b, check=OUTSIDE, checked=False, holds=None, rho_loc=rho_loc, status=OUTSIDE, note=note)
        for b in CHECKS
    ]


def check_problem(
    problem: Any,
    meta: dict[str, Any],
    depths: Sequence[int] = DEFAULT_DEPTHS,
    restart_depths: Sequence[int] = DEFAULT_RESTART_DEPTHS,
    dense_max_dim: int = 2048,
) -> list[dict]:
    """All rows for one problem configuration (or the "outside the theory" rows)."""
    reason = outside_reason(problem)
    if reason is not None:
        return outside_rows(problem, meta, reason)
    eq = equilibrium(problem, dense_max_dim)
    return evaluate(eq, measure(problem, eq, depths, restart_depths), meta)


def default_problems() -> list[str]:
    """Every registered problem (those outside the theory are reported as such)."""
    return problems.names()


def _claims_by_class(name: str) -> bool:
    return bool(getattr(problems.factory(name), "contraction_guaranteed", True))


def _power_of_two_depths(depths: Sequence[int]) -> list[int]:
    return [k for k in depths if k & (k - 1) == 0] or list(depths)


def run_grid(
    problem_names: Sequence[str] | None = None,
    lipschitz: Sequence[float] = DEFAULT_LIPSCHITZ,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    depths: Sequence[int] = DEFAULT_DEPTHS,
    restart_depths: Sequence[int] = DEFAULT_RESTART_DEPTHS,
    config: dict[str, Any] | None = None,
    dense_max_dim: int = 2048,
    progress: bool = False,
) -> pd.DataFrame:
    """The validation grid: every problem x rho x seed, K over ``depths``.

    To keep the default run short, a problem with more than ``dense_max_dim`` unknowns is
    validated at its first seed and at the powers of two among ``depths`` only. A problem
    whose class says ``contraction_guaranteed = False`` is built once (first seed, its own
    rho: such problems estimate it) and reported "outside the theory" with its measured
    rho_loc. A problem that cannot be built is reported with status ``error``."""
    names = list(problem_names) if problem_names else default_problems()
    depths = sorted(set(int(k) for k in depths))
    restart_depths = sorted(set(int(k) for k in restart_depths))
    rows: list[dict] = []
    with single_thread():
        for name in names:
            outside = not _claims_by_class(name)
            for rho in [float("nan")] if outside else lipschitz:
                for i, seed in enumerate(seeds):
                    meta: dict[str, Any] = dict(problem=name, lipschitz=float(rho), seed=int(seed))
                    settings = dict(config or {}, seed=int(seed))
                    if not outside:
                        settings["lipschitz"] = float(rho)
                    try:
                        problem = problems.make(name, **settings)
                    except Exception as exc:
                        rows.append(dict(meta, bound="-", check="-", checked=False, status="error", note=f"{exc}"))
                        continue
                    meta["config"] = json.dumps(getattr(problem, "config", {}), sort_keys=True, default=str)
                    large = problem.initial_point().numel() > dense_max_dim
                    if outside:
                        meta["lipschitz"] = float(getattr(problem, "lipschitz", float("nan")))
                    if i > 0 and (large or outside_reason(problem) is not None):
                        continue
                    if progress:
                        print(f"validate {name} rho={rho:g} seed={seed}", flush=True)
                    ks = _power_of_two_depths(depths) if large else depths
                    rks = [k for k in restart_depths if k <= max(ks)] or [min(ks)]
                    rows += check_problem(problem, meta, ks, rks, dense_max_dim)
    return tidy(rows)


def tidy(rows: list[dict]) -> pd.DataFrame:
    columns = [
        "bound", "check", "problem", "config", "lipschitz", "seed", "estimator", "depth", "calls",
        "measured", "bound_value", "ratio", "fitted_rate", "checked", "holds", "status",
        "rho_loc", "spectral_radius", "b_norm", "v_norm", "grad_norm", "initial_distance",
        "floor", "floor_x", "source", "note",
    ]  # fmt: skip
    df = pd.DataFrame(rows)
    for c in columns:
        if c not in df.columns:
            df[c] = None
    return df[columns + [c for c in df.columns if c not in columns]]


# ----------------------------------------------------------------------------- sweep tables


def measurements_from_table(problem: Any, eq: Equilibrium, rows: pd.DataFrame) -> Measurements:
    """Measurements from a sweep table's rows of one problem configuration: JFB-K and
    unrolled errors and saved bytes (restarts = 0), restarted JFB's bytes; the forward
    iterates (B3) and restart sequences (B5) at the table's depths are recomputed.

    The table's errors are against the iterative DEQ reference (tolerance 1e-13) with
    estimators solving to 1e-12, so the floor is raised to 1e-12 / (1 - rho_loc) of the
    gradient scale."""
    meas = Measurements(
        floor=max(NOISE_EPS * eq.eps, 1e-12 / max(1.0 - eq.rho_loc, 0.01)) * eq.grad_scale,
        floor_x=NOISE_EPS * eq.eps * eq.x_scale,
        source="table",
    )
    restarts = rows["restarts"].fillna(0).astype(int) if "restarts" in rows else pd.Series(0, index=rows.index)
    for est, err_d, mem_d in (
        ("jfb", meas.jfb_error, meas.jfb_bytes),
        ("unrolled", meas.unrolled_error, meas.unrolled_bytes),
    ):
        sub = rows[(rows["estimator"] == est) & (restarts == 0) & rows["depth"].notna()]
        for _, r in sub.iterrows():
            k = int(r["depth"])
            err_d[k] = (
                float(r["abs_error"])
                if "abs_error" in r and pd.notna(r["abs_error"])
                else float(r["rel_error"]) * float(r["ref_grad_norm"])
            )
            if pd.notna(r.get("memory_bytes")):
                mem_d[k] = float(r["memory_bytes"])
    sub = rows[(rows["estimator"] == "restarted_jfb") & rows["depth"].notna()]
    for _, r in sub.iterrows():
        if pd.notna(r.get("memory_bytes")):
            meas.restarted_bytes[int(r["depth"])] = float(r["memory_bytes"])
    depths = sorted(set(int(k) for k in rows["depth"].dropna()))
    meas.forward = forward_distances(problem, eq, depths)
    restart_depths = sorted(set(int(k) for k in sub["depth"]))
    if restart_depths and depths:
        for k in restart_depths:
            target = estimators.make("jfb", depth=k, tol=100 * eq.eps, solver="anderson")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                g = target.gradient(problem).grad
            meas.restart[k], _ = restart_sequence(problem, eq, k, _restart_calls(k, max(depths)), g)
    return meas


TABLE_COLUMNS = ["problem", "config", "lipschitz", "seed", "estimator", "depth", "rel_error", "memory_bytes"]


def check_table(df: pd.DataFrame) -> pd.DataFrame:
    """Validate an existing sweep table: each (problem, config, lipschitz, seed[, dtype,
    device]) is rebuilt with :func:`jfbbench.sweep.build_problem` and its equilibrium
    quantities computed; the bounds are evaluated on the table's measurements."""
    from .sweep import Point, build_problem

    missing = [c for c in TABLE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"the table lacks the columns {', '.join(missing)} (has: {', '.join(map(str, df.columns))})")
    if df.empty:
        raise ValueError("the table has no rows")
    df = df.copy()
    df["config"] = df["config"].fillna("{}").astype(str)
    for c, default in (("dtype", "float64"), ("device", "cpu")):
        if c not in df.columns:
            df[c] = default
    rows: list[dict] = []
    keys = ["problem", "config", "lipschitz", "seed", "dtype", "device"]
    with single_thread():
        for (name, config, rho, seed, dtype, device), sub in df.groupby(keys, sort=True):
            meta = dict(problem=name, config=config, lipschitz=float(rho), seed=int(seed))
            try:
                settings = tuple(sorted(json.loads(config).items()))
                point = Point(name, settings, float(rho), int(seed), "deq", None, 0, str(device), str(dtype))
                problem = build_problem(point)
            except Exception as exc:
                rows.append(dict(meta, bound="-", check="-", checked=False, status="error", note=f"{exc}"))
                continue
            reason = outside_reason(problem)
            if reason is not None:
                rows += outside_rows(problem, meta, reason)
                continue
            eq = equilibrium(problem)
            rows += evaluate(eq, measurements_from_table(problem, eq, sub), meta)
    return tidy(rows)


# ----------------------------------------------------------------------------- summary


def _status(g: pd.DataFrame, expectation: bool = False) -> str:
    st = set(g["status"].dropna())
    if "error" in st:
        return "error"
    if OUTSIDE in st:
        return OUTSIDE
    checked = g[g["checked"].astype(bool)]
    if checked.empty:
        return "not checked"
    if checked["holds"].astype(bool).all():
        return "pass"
    return "not observed" if expectation else "FAIL"


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (bound, check, problem, rho): points, checked, hold, worst ratio
    measured/bound over the checked points, the fitted rate (B2, B4's rate; worst over
    seeds) against the spectral radius (B2) or rho (B4), rho_loc (largest over seeds) and
    the status: pass, FAIL, not checked (nothing resolvable above round-off, or an
    assumption not met: see note), not observed (an expected ordering, B4's, that the
    measurements contradict: reported, not a failure), outside the theory, or error."""
    out = []
    for (bound, check, problem, rho), g in table.groupby(
        ["bound", "check", "problem", "lipschitz"], sort=True, dropna=False
    ):
        checked = g[g["checked"].astype(bool)]
        ratios = pd.to_numeric(checked["ratio"], errors="coerce")
        rate = pd.to_numeric(g["fitted_rate"], errors="coerce")
        radius = pd.to_numeric(g["spectral_radius"], errors="coerce")
        fitted, target = float("nan"), float("nan")
        if rate.notna().any():
            # the worst seed: farthest from the radius (B2), or the slowest decay (B4)
            worst = (rate / radius - 1).abs().idxmax() if bound == "B2" else rate.idxmax()
            fitted = float(rate[worst])
            target = float(radius[worst]) if bound == "B2" else float(rho)
        notes = sorted({str(n) for n in g["note"].dropna()})
        out.append(
            dict(
                bound=bound,
                check=check,
                problem=problem,
                rho=rho,
                seeds=int(g["seed"].nunique()),
                points=len(g),
                checked=len(checked),
                hold=int(checked["holds"].astype(bool).sum()),
                worst_ratio=float(ratios.max()) if ratios.notna().any() else float("nan"),
                fitted_rate=fitted,
                rate_target=target,
                rho_loc=float(pd.to_numeric(g["rho_loc"], errors="coerce").max()),
                status=_status(g, (bound, check) in EXPECTATIONS),
                note="; ".join(notes) or None,
            )
        )
    return pd.DataFrame(out)


def failed(summary: pd.DataFrame) -> bool:
    """True when some bound fails where its assumptions hold (or a problem could not be built)."""
    return bool(summary["status"].isin(["FAIL", "error"]).any())


def format_summary(summary: pd.DataFrame) -> str:
    """The summary as a fixed-width text table."""
    cols = [
        "bound",
        "check",
        "problem",
        "rho",
        "points",
        "checked",
        "hold",
        "worst_ratio",
        "fitted_rate",
        "rate_target",
        "rho_loc",
        "status",
    ]
    shown = summary[cols].copy()
    for c in ("worst_ratio", "fitted_rate", "rate_target", "rho_loc"):
        shown[c] = shown[c].map(lambda x: "" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.4g}")
    return shown.to_string(index=False)
