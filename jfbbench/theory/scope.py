"""Which problems and checks the theory covers. B1-B6 assume T_theta is a differentiable
contraction in x: a problem that does not guarantee it is reported "outside the theory" with
its measured rho_loc, never counted as a pass. Some checks assume more, a smooth T (a
Jacobian that does not jump, :data:`SMOOTH_PREMISES`): on a problem that says it is not
smooth (``smooth = False``: relu, a piecewise linear T, differentiable at x* but not across
its kinks) they are reported "out of scope" with the reason, measured but not judged.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .checks import CHECKS
from .equilibrium import local_lipschitz

OUTSIDE = "outside the theory"
OUT_OF_SCOPE = "out of scope"
#: The checks whose premise is a smooth T, and that premise. B1-B3 and B6 need T
#: differentiable at x* only (a statement at x*, or no derivative at all), which a
#: piecewise linear T is wherever no pre-activation sits exactly at a kink.
SMOOTH_PREMISES = {
    "B4": "T twice differentiable (unrolling's error O(K rho^K))",
    "B5": "the gradient a Lipschitz function of the start point",
}


def claims_contraction(problem: Any) -> bool:
    """A problem claims a contraction unless it says otherwise (``contraction_guaranteed``);
    a user problem without the attribute claims one, since it declares ``lipschitz``."""
    return bool(getattr(problem, "contraction_guaranteed", True))


def is_smooth(problem: Any) -> bool:
    """A problem (or its class) is smooth unless it says ``smooth = False``."""
    return bool(getattr(problem, "smooth", True))


def _note(problem: Any) -> str:
    note = getattr(problem, "theory_note", None)
    return f" ({note})" if note else ""


def outside_reason(problem: Any) -> str | None:
    """Why ``problem`` leaves the theory's assumptions, or None: its contraction is not
    guaranteed (``contraction_guaranteed = False``), or T is not differentiable
    (``differentiable = False``). A problem may say more in ``theory_note``."""
    reasons = []
    if not claims_contraction(problem):
        reasons.append("contraction not guaranteed (contraction_guaranteed=False)")
    if not getattr(problem, "differentiable", True):
        reasons.append("T not differentiable (differentiable=False)")
    if not reasons:
        return None
    return f"{OUTSIDE}: " + "; ".join(reasons) + _note(problem)


def scope_reasons(problem: Any) -> dict[str, str]:
    """{bound: why it is out of scope} for ``problem`` (or its class): the checks of
    :data:`SMOOTH_PREMISES` where ``smooth = False``; empty for a smooth problem."""
    if is_smooth(problem):
        return {}
    return {
        bound: f"{OUT_OF_SCOPE}: T not smooth (smooth=False){_note(problem)}; {bound} assumes {premise}"
        for bound, premise in SMOOTH_PREMISES.items()
    }


def apply_scope(rows: list[dict], reasons: dict[str, str]) -> list[dict]:
    """The rows of the bounds in ``reasons`` (:func:`scope_reasons`) marked out of scope:
    their measurements kept, ``checked`` False, ``holds`` None, the reason as ``note``."""
    for row in rows:
        if row.get("bound") in reasons:
            row.update(checked=False, holds=None, status=OUT_OF_SCOPE, note=reasons[row["bound"]])
    return rows


def rescope(table: pd.DataFrame) -> pd.DataFrame:
    """A stored validation table judged again for scope, without measuring: the rows of each
    problem whose registered family is not smooth (:func:`scope_reasons` on the class) are
    marked out of scope for the checks that assume it. Rows outside the theory or with errors
    are left as they are. A table with out-of-scope rows for a family now declared smooth
    cannot be judged again (their verdicts were never kept): rerun ``jfbbench validate``."""
    from .. import problems

    out = table.copy()
    judged = out["status"].isin(["checked", OUT_OF_SCOPE])
    for name in sorted(out.loc[judged, "problem"].astype(str).unique()):
        try:
            reasons = scope_reasons(problems.factory(name))
        except ValueError as exc:
            raise ValueError(f"cannot judge the scope of problem {name!r} of the table: {exc}") from None
        mine = judged & (out["problem"].astype(str) == name)
        stale = mine & (out["status"] == OUT_OF_SCOPE) & ~out["bound"].isin(list(reasons))
        if stale.any():
            bounds = ", ".join(sorted(out.loc[stale, "bound"].unique()))
            raise ValueError(
                f"the table has {bounds} out of scope for {name!r}, which is now in scope: its points were "
                "never judged; rerun jfbbench validate on it"
            )
        for bound, reason in reasons.items():
            sel = mine & (out["bound"] == bound)
            for column, value in (("checked", False), ("holds", None), ("status", OUT_OF_SCOPE), ("note", reason)):
                out[column] = out[column].astype(object)
                out.loc[sel, column] = value
    return out


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
