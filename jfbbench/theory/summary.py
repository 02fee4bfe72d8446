"""The summary of a validation table: one line per (bound, check, problem, rho), with its
status (pass, FAIL, not checked, not observed, out of scope, outside the theory, error)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .checks import EXPECTATIONS, KINDS, kind_of
from .scope import OUT_OF_SCOPE, OUTSIDE


def _status(g: pd.DataFrame, expectation: bool = False) -> str:
    st = set(g["status"].dropna())
    if "error" in st:
        return "error"
    if OUTSIDE in st:
        return OUTSIDE
    if OUT_OF_SCOPE in st:
        return OUT_OF_SCOPE
    checked = g[g["checked"].astype(bool)]
    if checked.empty:
        return "not checked"
    if checked["holds"].astype(bool).all():
        return "pass"
    return "not observed" if expectation else "FAIL"


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (bound, check, problem, rho): its ``kind`` (a bound of the theory, an
    expectation, or an implementation check: :data:`~jfbbench.theory.checks.KINDS`), points,
    checked, hold, worst ratio measured/bound over the checked points, the fitted rate (B2,
    B4's rate; worst over seeds) against the spectral radius, rho_loc (largest over seeds) and
    the status: pass, FAIL, not checked (nothing resolvable above round-off, or an
    assumption not met: see note), not observed (an expected ordering, B4's, that the
    measurements contradict: reported, not a failure), out of scope (the problem does not meet
    the check's premise, e.g. B5's smooth T: measured, reported, not judged; see note),
    outside the theory, or error."""
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
            # the worst seed: farthest from the radius (B2), or the slowest decay against it (B4)
            worst = (rate / radius - 1).abs().idxmax() if bound == "B2" else (rate / radius).idxmax()
            fitted = float(rate[worst])
            target = float(radius[worst])
        notes = sorted({str(n) for n in g["note"].dropna()})
        out.append(
            dict(
                bound=bound,
                check=check,
                kind=kind_of(bound, check) if bound in ("B1", "B2", "B3", "B4", "B5", "B6") else None,
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
        "kind",
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
    legend = "\n".join(f"  {kind}: {text}" for kind, text in KINDS.items())
    return shown.to_string(index=False) + "\nkind:\n" + legend
