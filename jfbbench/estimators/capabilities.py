"""What an estimator can do, read once from its factory: :func:`read_capabilities` (reached as
``estimators.capabilities(name)``).

Sweeps, training, the error-cost front and the command line all ask here, so an estimator
that declares nothing gets the same answer everywhere. Each capability is a class attribute of
the estimator (the built-ins inherit theirs from :class:`~jfbbench.estimators.Estimator`); a
plug-in factory (a class of its own, or a function) that does not declare one gets the default:

- ``uses_depth`` (default True): takes a depth K, a grid axis; False: one point per setting
  (``deq`` and the other implicit estimators);
- ``solves`` (default True): solves the forward problem to a tolerance, so the settings
  ``tol``, ``max_iter`` and ``solver`` apply (False: ``unrolled``, ``restarted_jfb``);
- ``stateful`` (default False): carries a state from one call to the next
  (``restarted_jfb``); an estimator built with ``warm_start=True`` is stateful too;
- ``supports_warm_start`` (default False): ``warm_start=True`` starts its forward solve from
  the previous call's solution. Warm-starting changes what is measured (a chain of calls, not
  one), so it must be declared: a plug-in that accepts a ``warm_start`` keyword without
  declaring it is run cold, by sweeps and training alike, and ``warm_start=True`` is refused
  for it. It also needs ``warm_start`` among the settings the factory declares.

``required_solver`` (default None): the one forward solver the estimator runs with (``shine``:
``broyden``, whose inverse estimate its backward reuses); training fills it in where no solver
is given and refuses any other.

``settings`` are the keywords the factory accepts (None when a ``**kwargs`` that reaches no
declared signature makes them unknowable: such a factory is offered no setting), ``defaults``
the default value of each.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .._registry import accepted_settings

#: Each capability and the value a factory that does not declare it gets.
DEFAULTS: Mapping[str, bool] = MappingProxyType(
    dict(uses_depth=True, solves=True, stateful=False, supports_warm_start=False)
)


#: The forward solve's settings: they apply to an estimator that ``solves`` only.
SOLVE_SETTINGS = ("tol", "max_iter", "solver")


@dataclass(frozen=True)
class Capabilities:
    """What the estimator ``name`` can do (see the module's docstring for each field)."""

    name: str
    uses_depth: bool
    solves: bool
    stateful: bool
    supports_warm_start: bool
    settings: frozenset[str] | None = field(hash=False)
    defaults: Mapping[str, Any] = field(hash=False, repr=False)
    required_solver: str | None = None

    def accepts(self, setting: str) -> bool:
        """Whether ``setting`` is a keyword the factory declares (none when unknowable)."""
        return self.settings is not None and setting in self.settings


def _defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    """The default value of each keyword of ``factory`` (a class: its ``__init__``s up the MRO,
    the nearest one winning)."""
    out: dict[str, Any] = {}
    inits = [c.__dict__.get("__init__") for c in reversed(factory.__mro__)] if inspect.isclass(factory) else [factory]
    for init in inits:
        if init is None or init is object.__init__:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.default is not inspect.Parameter.empty:
                out[p.name] = p.default
    return out


def read_capabilities(name: str, factory: Callable[..., Any]) -> Capabilities:
    """The :class:`Capabilities` of the estimator ``name`` built by ``factory``: its declared
    attributes, :data:`DEFAULTS` for the others."""
    declared = {k: bool(getattr(factory, k, default)) for k, default in DEFAULTS.items()}
    accepted = accepted_settings(factory)
    settings = None if accepted is None else frozenset(accepted)
    declared["supports_warm_start"] &= settings is not None and "warm_start" in settings
    required = getattr(factory, "required_solver", None)
    return Capabilities(
        name=name,
        **declared,
        settings=settings,
        required_solver=required if isinstance(required, str) else None,
        defaults=MappingProxyType(_defaults(factory)),
    )
