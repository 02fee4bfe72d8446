"""The estimator registry: ``make(name, **config)``, ``names()``, ``register(name)``.

Built-in: ``deq`` (implicit, the reference), ``unrolled`` (optionally checkpointed), ``jfb``,
``restarted_jfb``, ``phantom``, ``neumann``, ``revdeq`` (reversible DEQ), ``forward_mode``
(forward-mode unrolling), ``shine`` (Broyden's inverse estimate reused), ``trm`` and
``hrm_one_step`` (recursive reasoning problems only, :mod:`.reasoning`); and, when the peer
libraries are installed (``jfbbench[peers]``),
``torchdeq_ift``, ``torchdeq_phantom``, ``torchopt_implicit`` (see :mod:`.peers`); and, when
DeepInverse's DEQ API is present, ``deepinv_deq`` and ``deepinv_jfb`` (see
:mod:`.deepinv_peers`). A factory is also reached by its module path,
``package.module:factory``, or through the entry-point group ``jfbbench.estimators`` of an
installed distribution; ``origin(name)`` says which.
"""

from __future__ import annotations

from typing import Any

from .._registry import Registry
from .base import Estimate, Estimator
from .capabilities import Capabilities, read_capabilities
from .deepinv_peers import register_deepinv_peers
from .deq import DEQ
from .forward_mode import ForwardMode
from .jfb import JFB
from .neumann import Neumann
from .peers import register_peers
from .phantom import Phantom
from .reasoning import TRM, HRMOneStep
from .restarted_jfb import RestartedJFB, StateBank
from .revdeq import RevDEQ
from .shine import Shine
from .unrolled import Unrolled

#: The entry-point group read for plug-in estimators (``name = package.module:factory``).
ENTRY_POINT_GROUP = "jfbbench.estimators"
_REGISTRY: Registry[Estimator] = Registry("estimator", group=ENTRY_POINT_GROUP)
register, names, factory, origin, describe, refresh = _REGISTRY.api()
for _cls in (DEQ, Unrolled, JFB, RestartedJFB, Phantom, Neumann, RevDEQ, ForwardMode, Shine, TRM, HRMOneStep):
    register(_cls.name)(_cls)
register_peers(register)
register_deepinv_peers(register)


def capabilities(name: str) -> Capabilities:
    """What the estimator ``name`` can do (uses depth, solves, stateful, warm start, its
    settings and their defaults), with one default for whatever it does not declare (see
    :mod:`jfbbench.estimators.capabilities`)."""
    return read_capabilities(name, factory(name))


def make(name: str, **config: Any) -> Estimator:
    """Build the estimator ``name`` with ``config`` (``depth``, ``tol``, ``max_iter``, ...)."""
    est = _REGISTRY.make(name, **config)
    if not callable(getattr(est, "gradient", None)):
        raise ValueError(
            f"estimator {name!r} returned an object of type {type(est).__name__}, not an estimator "
            "(it has no gradient(problem, state=None) method)"
        )
    return est


__all__ = [
    "DEQ",
    "Capabilities",
    "JFB",
    "ForwardMode",
    "Estimate",
    "Estimator",
    "HRMOneStep",
    "Neumann",
    "Phantom",
    "RestartedJFB",
    "RevDEQ",
    "Shine",
    "StateBank",
    "TRM",
    "Unrolled",
    "capabilities",
    "describe",
    "factory",
    "make",
    "names",
    "origin",
    "refresh",
    "register",
]
