"""The problem registry: ``make(name, **config)``, ``names()``, ``register(name)``.

A user registers a factory (function or class) returning an object with the
:class:`~jfbbench.problems.base.ProblemProtocol`; the new name then works everywhere a
built-in one does (estimators, sweeps, plots, the CLI). Without registering, a factory is
reached by its module path, ``package.module:factory``, or through the entry-point group
``jfbbench.problems`` of an installed distribution; ``origin(name)`` says which.
:func:`from_module` and :func:`from_deepinv` wrap a user's torch module or DeepInverse
optimiser as a problem.
"""

from __future__ import annotations

from typing import Any

from .._registry import Registry
from .._validation import check_device, check_dtype, check_lipschitz, check_seed
from .affine import Affine
from .base import Problem, ProblemProtocol, is_batched
from .conv_deq import ConvDEQ
from .deepinv_optim import DeepInvProblem, from_deepinv
from .ignn import IGNN
from .mondeq import MonDEQ
from .pnp_fb import DRUNetFB, PnPFB
from .recursive_reasoning import RecursiveReasoning
from .tanh_layer import TanhLayer
from .tikhonov import Tikhonov
from .torch_module import ModuleProblem, from_module
from .weighted_tv import WeightedTV

#: The entry-point group read for plug-in problems (``name = package.module:factory``).
ENTRY_POINT_GROUP = "jfbbench.problems"
_REGISTRY: Registry[ProblemProtocol] = Registry("problem", group=ENTRY_POINT_GROUP)
register, names, factory, origin, describe, refresh = _REGISTRY.api()

register("affine")(Affine)
register("tanh_layer")(TanhLayer)
register("tikhonov")(Tikhonov)
register("weighted_tv")(WeightedTV)
register("pnp_fb")(PnPFB)
register("drunet_fb")(DRUNetFB)
register("recursive_reasoning")(RecursiveReasoning)
register("conv_deq")(ConvDEQ)
register("mondeq")(MonDEQ)
register("ignn")(IGNN)


def make(name: str, **config: Any) -> ProblemProtocol:
    """Build the problem ``name`` with ``config`` (``lipschitz``, ``seed``, ``dtype``,
    ``device`` and the family's own settings)."""
    factory = _REGISTRY.factory(name)
    if config.get("lipschitz") is not None:  # None: a family's free mode (rho estimated)
        check_lipschitz(config["lipschitz"])
    if "dtype" in config:
        check_dtype(config["dtype"])
    if "device" in config:
        check_device(config["device"])
    if "seed" in config:
        check_seed(config["seed"])
    problem = factory(**config)
    missing = [a for a in ("lipschitz", "parameters", "operator", "loss", "initial_point") if not hasattr(problem, a)]
    if missing:
        raise ValueError(
            f"problem {name!r} returned an object of type {type(problem).__name__}, not a problem "
            f"(it lacks {', '.join(missing)})"
        )
    is_batched(problem)  # a declaration that is not a bool is refused here, before any solve
    return problem


__all__ = [
    "Affine", "ConvDEQ", "DRUNetFB", "DeepInvProblem", "IGNN", "ModuleProblem", "MonDEQ", "PnPFB", "Problem",
    "ProblemProtocol", "RecursiveReasoning", "TanhLayer", "Tikhonov", "WeightedTV", "describe", "factory",
    "from_deepinv", "from_module", "is_batched", "make", "names", "origin", "refresh", "register",
]  # fmt: skip
