"""The theory of truncated equilibrium gradients, checked numerically: the bounds B1-B6.

For a contraction T_theta with fixed point x*, the bounds say how far JFB-K, unrolled-K and
restarted JFB-K are from the implicit gradient, how fast the forward iterates converge and
how the saved memory grows with K. The package reads as the check is done:

- :mod:`.bounds`: the right-hand sides of B1-B6, pure functions of numbers;
- :mod:`.equilibrium`: what is measured at x* once per problem (:func:`find_equilibrium`:
  the exact gradient, ||J||_2 = rho_loc, the spectral radius of J, ||B||_2, ...);
- :mod:`.measurements`: what the estimators give there over K (:func:`measure_equilibrium`,
  or :func:`measurements_from_table` for an existing sweep table);
- :mod:`.checks`: each bound against those measurements, one row per point (:func:`evaluate`);
- :mod:`.scope`: which problems the theory covers ("outside the theory" otherwise), and
  which checks a problem that is not smooth leaves out of scope;
- :mod:`.summary`: one line per (bound, check, problem, rho) and its status;
- :mod:`.validate`: the drivers (:func:`run_grid`, :func:`check_table`, :func:`check_problem`).
"""

from . import bounds
from .checks import CHECKS, EXPECTATIONS, IMPLEMENTATION_CHECKS, KINDS, evaluate, kind_of, tidy
from .equilibrium import NOISE_EPS, Equilibrium, find_equilibrium, local_lipschitz
from .measurements import (
    DEFAULT_DEPTHS,
    DEFAULT_RESTART_DEPTHS,
    Measurements,
    forward_distances,
    measure_equilibrium,
    measurements_from_table,
    restart_sequence,
)
from .scope import (
    OUT_OF_SCOPE,
    OUTSIDE,
    SMOOTH_PREMISES,
    apply_scope,
    claims_contraction,
    is_smooth,
    outside_reason,
    outside_rows,
    rescope,
    scope_reasons,
)
from .summary import failed, format_summary, summarize
from .validate import DEFAULT_LIPSCHITZ, DEFAULT_SEEDS, check_problem, check_table, run_grid, single_thread

__all__ = [
    "CHECKS", "DEFAULT_DEPTHS", "DEFAULT_LIPSCHITZ", "DEFAULT_RESTART_DEPTHS", "DEFAULT_SEEDS", "EXPECTATIONS",
    "IMPLEMENTATION_CHECKS", "KINDS", "kind_of",
    "NOISE_EPS", "OUT_OF_SCOPE", "OUTSIDE", "SMOOTH_PREMISES", "Equilibrium", "apply_scope", "is_smooth", "rescope",
    "scope_reasons", "Measurements", "bounds", "check_problem", "check_table",
    "claims_contraction", "evaluate", "failed", "find_equilibrium", "format_summary", "forward_distances",
    "local_lipschitz", "measure_equilibrium", "measurements_from_table", "outside_reason", "outside_rows",
    "restart_sequence", "run_grid", "single_thread", "summarize", "tidy",
]  # fmt: skip
