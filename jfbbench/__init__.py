"""jfbbench: a benchmark suite for gradient approximations of equilibrium (fixed-point) models."""

from . import estimators, problems
from .estimators import Estimate
from .solvers import ConvergenceWarning

__version__ = "0.1.0"

__all__ = ["ConvergenceWarning", "Estimate", "__version__", "estimators", "problems"]
