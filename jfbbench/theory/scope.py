"""Which problems the theory covers: B1-B6 assume T_theta is a differentiable contraction in
x. A problem that does not guarantee it is reported "outside the theory" with its measured
rho_loc, never counted as a pass.
"""

from __future__ import annotations

from typing import Any

from .checks import CHECKS
from .equilibrium import local_lipschitz

OUTSIDE = "outside the theory"


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
