"""Phantom gradients: k damped fixed-point steps at the equilibrium (Geng et al., 2021)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .jfb import JFB


def check_damping(value: Any, name: str = "damping") -> float:
    """A damping factor tau in (0, 1]."""
    try:
        tau = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1], got {value!r}") from None
    if isinstance(value, bool) or math.isnan(tau) or not (0.0 < tau <= 1.0):
        raise ValueError(f"{name} must lie in the half-open interval (0, 1], got {value!r}")
    return tau


class Phantom(JFB):
    r"""Phantom gradient (Geng, Zhang, Bai, Wang, Lin, *On Training Implicit Models*,
    NeurIPS 2021), as TorchDEQ implements it (``grad=k``, ``tau``).

    Solve x* to tolerance without a graph, detach it, apply k = ``depth`` damped steps
    x <- tau T(x) + (1 - tau) x *with* the graph (tau = ``damping``), back-propagate L:

        g = tau B^T sum_{j<k} ((1 - tau) I + tau J^T)^j v.

    As k grows, g -> B^T (I - J^T)^{-1} v, the DEQ gradient, at the rate of the damped
    map's contraction abs(1 - tau) + tau rho (slower than rho for tau < 1, but damping can
    help where J has eigenvalues near -1). tau = 1 is JFB-k exactly. The default tau = 1
    is TorchDEQ's; Geng et al. recommend 0.5-0.7 for multiscale DEQs.
    """

    name = "phantom"

    def __init__(self, depth: int = 1, damping: float = 1.0, **kwargs: Any) -> None:
        super().__init__(depth, **kwargs)
        self.damping = check_damping(damping)

    def config(self) -> dict[str, Any]:
        return dict(depth=self.depth, damping=self.damping)

    def graph_step(self, op: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        """The damped step z -> tau T(z) + (1 - tau) z."""
        tau = self.damping
        if tau == 1.0:
            return op
        return lambda z: tau * op(z) + (1.0 - tau) * z

    def step_scale(self) -> float:
        return self.damping

    def __repr__(self) -> str:
        return f"{type(self).__name__}(depth={self.depth}, damping={self.damping})"
