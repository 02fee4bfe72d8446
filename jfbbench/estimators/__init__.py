"""The estimator registry: ``make(name, **config)``, ``names()``, ``register(name)``.

Built-in: ``deq`` (implicit, the reference), ``unrolled``, ``jfb``, ``restarted_jfb``,
``phantom``, ``neumann``; and, when the peer libraries are installed (``jfbbench[peers]``),
``torchdeq_ift``, ``torchdeq_phantom``, ``torchopt_implicit`` (see :mod:`.peers`).
"""

from __future__ import annotations

from typing import Any

from .._registry import Registry
from .base import Estimate, Estimator
from .deq import DEQ
from .jfb import JFB
from .neumann import Neumann
from .peers import register_peers
from .phantom import Phantom
from .restarted_jfb import RestartedJFB, StateBank
from .unrolled import Unrolled

_REGISTRY: Registry[Estimator] = Registry("estimator")
register = _REGISTRY.register
names = _REGISTRY.names
factory = _REGISTRY.factory
for _cls in (DEQ, Unrolled, JFB, RestartedJFB, Phantom, Neumann):
    register(_cls.name)(_cls)
register_peers(register)


def make(name: str, **config: Any) -> Estimator:
    """Build the estimator ``name`` with ``config`` (``depth``, ``tol``, ``max_iter``, ...)."""
    return _REGISTRY.make(name, **config)


__all__ = [
    "DEQ",
    "JFB",
    "Estimate",
    "Estimator",
    "Neumann",
    "Phantom",
    "RestartedJFB",
    "StateBank",
    "Unrolled",
    "make",
    "names",
    "register",
]
