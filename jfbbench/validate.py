"""Judging the bounds B1-B6 of docs/theory.md (:mod:`jfbbench.bounds`) against measurements.

:mod:`jfbbench.equilibrium` measures: the equilibrium quantities once per problem
configuration (:func:`~jfbbench.equilibrium.equilibrium`: x*, the exact gradient, ||J||_2,
the spectral radius of J, ||B||_2, ||v||, ||x_0 - x*||) and the estimators over the depths K
(:func:`~jfbbench.equilibrium.measure`, or :func:`~jfbbench.equilibrium.measurements_from_table`
for an existing sweep table). This module judges: :func:`evaluate` turns both into a tidy
table with one row per (bound, check, problem, rho, seed, K[, calls]): ``measured``,
``bound_value``, ``ratio`` = measured / bound, ``checked`` (the point can be resolved above
round-off and the bound's assumptions hold) and ``holds``; :func:`summarize` aggregates it per
(bound, check, problem, rho); :func:`run_grid` and :func:`check_table` drive both halves.

A problem whose contraction is not guaranteed (``contraction_guaranteed = False``: a
non-smooth prox, a learned denoiser) is reported as "outside the theory" with its measured
rho_loc, never counted as a pass. The measuring names (``equilibrium``, ``Equilibrium``,
``measure``, ...) are also importable from here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import bounds, problems
from .equilibrium import (
    DEFAULT_DEPTHS,
    DEFAULT_RESTART_DEPTHS,
    NOISE_EPS,
    Equilibrium,
    Measurements,
    equilibrium,
    forward_distances,
    local_lipschitz,
    measure,
    measurements_from_table,
    restart_sequence,
    single_thread,
)

#: The default validation grid (``jfbbench validate`` without arguments).
DEFAULT_LIPSCHITZ = (0.5, 0.9, 0.99)
DEFAULT_SEEDS = (0, 1)
#: Labels of the checks, per bound.
CHECKS = {
    "B1": ("JFB-K error <= ||B|| ||v|| rho^K/(1-rho)", "same with rho_loc", "rho_loc = ||J(x*)|| <= rho"),
    "B2": ("fitted rate = spectral radius (10%)", "JFB-K error <= ||B|| ||u|| ||J^K||"),
    "B3": ("a priori rho^K ||x0-x*||", "a posteriori ||x_K+1-x_K||/(1-rho)"),
    "B4": ("JFB-K error <= unrolled error", "rate of unrolled error / K <= rho"),
    "B5": ("restart gap <= C rho^(mK), m >= 2 (C from x* and m <= 1)",),
    "B6": (
        "unrolled memory linear in K>=2",
        "JFB memory linear in K>=2",
        "restarted = JFB memory",
        "DEQ memory <= JFB-1 + one application of T",
    ),
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


__all__ = [
    "CHECKS", "DEFAULT_DEPTHS", "DEFAULT_LIPSCHITZ", "DEFAULT_RESTART_DEPTHS", "DEFAULT_SEEDS", "EXPECTATIONS",
    "NOISE_EPS", "OUTSIDE", "Equilibrium", "Measurements", "check_problem", "check_table", "claims_contraction",
    "equilibrium", "evaluate", "failed", "format_summary", "forward_distances", "local_lipschitz", "measure",
    "measurements_from_table", "outside_reason", "restart_sequence", "run_grid", "single_thread", "summarize", "tidy",
]  # fmt: skip
