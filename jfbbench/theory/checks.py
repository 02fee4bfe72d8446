"""The checks of the bounds B1-B6: each compares what the estimators gave at the equilibrium
with the bound of :mod:`jfbbench.theory.bounds` and says whether it holds.

:func:`evaluate` turns an :class:`~jfbbench.theory.equilibrium.Equilibrium` and its
:class:`~jfbbench.theory.measurements.Measurements` into rows, one per (bound, check, K[,
calls]): ``measured``, ``bound_value``, ``ratio`` = measured / bound, ``checked`` (the point
can be resolved above round-off and the bound's assumptions hold) and ``holds``;
:func:`tidy` makes them the validation table.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import torch

from . import bounds
from .equilibrium import Equilibrium
from .measurements import Measurements

#: Labels of the checks, per bound.
CHECKS = {
    "B1": ("JFB-K error <= ||B|| ||v|| rho^K/(1-rho)", "same with rho_loc", "rho_loc = ||J(x*)|| <= rho"),
    "B2": ("fitted rate = spectral radius (10%)", "JFB-K error <= ||B|| ||u|| ||J^K||"),
    "B3": ("a priori rho^K ||x0-x*||", "a posteriori ||x_K+1-x_K||/(1-rho)"),
    "B4": ("JFB-K error <= unrolled error", "rate of unrolled error / K <= spectral radius"),
    "B5": ("restart gap <= C rho^(mK), m >= 2 (C from x* and m <= 1)",),
    "B6": (
        "unrolled memory linear in K>=2",
        "JFB memory linear in K>=2",
        "restarted = JFB memory",
        "DEQ memory <= JFB-1 + one application of T",
    ),
}
#: Checks of a limit, a big-O or an expected ordering rather than of an inequality that holds
#: at every K under the assumptions -- B2's rate (||e_K||^{1/K} -> radius as K -> infinity: a
#: finite K range cannot refute it, and the limit is below the radius when the slowest mode is
#: not excited by u and B), B4's O(K rho^K) (no measurable constant: its fitted rate over a
#: finite window can exceed rho, e.g. by 13-15 % on tikhonov at K <= 8) and B4's ordering
#: ("slower than JFB-K") -- are reported ("pass" or "not observed"), never a cause of
#: failure. B2's finite-K content is checked as the inequality ||e_K|| <= ||B|| ||u|| ||J^K||,
#: whose K-th root tends to the radius.
EXPECTATIONS = {("B2", CHECKS["B2"][0]), ("B4", CHECKS["B4"][0]), ("B4", CHECKS["B4"][1])}
#: Checks that follow from the definitions whatever the problem, so that only an error in the
#: code (of an estimator, of the equilibrium's J, B, u or of the norms) can make them fail:
#: B2's ||B^T (J^T)^K u|| <= ||B|| ||u|| ||J^K|| is submultiplicativity, and B1 with rho_loc
#: = ||J(x*)|| is submultiplicativity with ||u|| <= ||v|| / (1 - ||J||). They are reported as
#: implementation checks, never as evidence for a bound or a rate (a failure still fails the
#: run: it is a bug). B1 with the declared rho is evidence: it fails when rho is declared too
#: small, as its premise rho_loc <= rho does.
IMPLEMENTATION_CHECKS = {("B1", CHECKS["B1"][1]), ("B2", CHECKS["B2"][1])}
#: What each kind of check says (the ``kind`` column).
KINDS = {
    "bound": "an inequality of the theory, checked where its assumptions hold: evidence",
    "expectation": "a limit, big-O or ordering: reported (pass or not observed), never a failure",
    "implementation": "follows from the definitions whatever the problem: catches errors in the code, not evidence",
}


def kind_of(bound: str, check: str) -> str:
    """``bound``, ``expectation`` or ``implementation`` (see :data:`KINDS`)."""
    if (bound, check) in IMPLEMENTATION_CHECKS:
        return "implementation"
    return "expectation" if (bound, check) in EXPECTATIONS else "bound"


def _row(bound: str, check: str, measured: float, bound_value: float, checked: bool, ok: bool, **extra: Any) -> dict:
    ratio = measured / bound_value if bound_value and math.isfinite(bound_value) and bound_value > 0 else float("nan")
    return dict(
        bound=bound,
        check=check,
        kind=kind_of(bound, check),
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
    # the rate against the spectral radius of J(x*), the rate the iterates and their
    # derivatives decay at, not the declared rho (a Lipschitz constant, often far above it)
    rows += _rate_rows(
        "B4",
        CHECKS["B4"][1],
        m.unrolled_error,
        m.floor,
        eq.radius,
        lambda rate, radius: math.isfinite(rate) and rate <= radius * (1 + bounds.RATE_TOLERANCE),
        "unrolled",
        divide_by_depth=True,
    )
    return rows


#: B5's constant uses the calls m <= FIT_CALLS (with the a priori local constant); it is
#: checked on the later ones.
FIT_CALLS = 1


def _b5(eq: Equilibrium, m: Measurements) -> list[dict]:
    """B5 with a constant that does not come from the points it tests:
    C = ||x_0 - x*|| * Lip, Lip = max(||dg_K/ds (x*)||_2, gap_m / ||s_m - x*|| for m <= 1) --
    the local Lipschitz constant of the start-to-gradient map s -> g_K(s) at x*, computed a
    priori from the equilibrium, and its secant ratios at the first two calls (the far
    field, for a nonlinear T). It is checked at the calls m >= 2, where the starts must have
    contracted by rho^K per call and the gap with them; the calls m <= 1 are reported, not
    checked."""
    rows = []
    for k, seq in sorted(m.restart.items()):
        ratios = [gap / dist for calls, gap, dist in seq if calls <= FIT_CALLS and dist > m.floor_x]
        ratios.append(m.restart_lipschitz.get(k, 0.0))
        constant = max(ratios) * eq.initial_distance
        for calls, gap, _ in seq:
            b = bounds.restart_bound(constant, eq.rho_checked, calls, k)
            fit = calls <= FIT_CALLS
            checked = not fit and (b > m.floor or gap > m.floor)
            note = f"C uses the calls m <= {FIT_CALLS}: reported, not checked" if fit else None
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
                    note=note,
                )
            )
    return rows


def _b6(m: Measurements) -> list[dict]:
    """B6: memory linear in K, the line fitted on the two smallest K >= 2 and checked at every
    deeper K (the fit's points are reported, not checked: they lie on the line by
    construction); restarted JFB-K's bytes equal to JFB-K's; DEQ's within JFB-1's plus one
    application of T."""
    rows = []
    for check, est, mem in (
        (CHECKS["B6"][0], "unrolled", m.unrolled_bytes),
        (CHECKS["B6"][1], "jfb", m.jfb_bytes),
    ):
        ks = sorted(k for k in mem if k >= 2)
        if len(ks) < 3:
            continue
        ka, kb = ks[0], ks[1]
        slope = (mem[kb] - mem[ka]) / (kb - ka)
        for k in ks:
            pred = bounds.linear_memory(mem[ka] - (ka - 1) * slope, mem[ka] - (ka - 2) * slope, k)
            ok = abs(mem[k] - pred) <= bounds.MEMORY_TOLERANCE * max(pred, 1.0)
            fit = k in (ka, kb)
            note = f"the line is fitted on K = {ka}, {kb}: reported, not checked" if fit else None
            rows.append(_row("B6", check, mem[k], pred, not fit, ok, estimator=est, depth=k, note=note))
    for k, nbytes in sorted(m.restarted_bytes.items()):
        if k in m.jfb_bytes:
            ok = abs(nbytes - m.jfb_bytes[k]) <= bounds.MEMORY_TOLERANCE * max(m.jfb_bytes[k], 1.0)
            rows.append(
                _row("B6", CHECKS["B6"][2], nbytes, m.jfb_bytes[k], True, ok, estimator="restarted_jfb", depth=k)
            )
    if m.deq_bytes is not None and m.jfb1_bytes is not None and m.step_bytes is not None:
        b = bounds.implicit_memory(m.jfb1_bytes, m.step_bytes)
        rows.append(_row("B6", CHECKS["B6"][3], m.deq_bytes, b, True, bounds.holds(m.deq_bytes, b), estimator="deq"))
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


def tidy(rows: list[dict]) -> pd.DataFrame:
    columns = [
        "bound", "check", "kind", "problem", "config", "lipschitz", "seed", "estimator", "depth", "calls",
        "measured", "bound_value", "ratio", "fitted_rate", "checked", "holds", "status",
        "rho_loc", "spectral_radius", "b_norm", "v_norm", "grad_norm", "initial_distance",
        "floor", "floor_x", "source", "note",
    ]  # fmt: skip
    df = pd.DataFrame(rows)
    for c in columns:
        if c not in df.columns:
            df[c] = None
    return df[columns + [c for c in df.columns if c not in columns]]
