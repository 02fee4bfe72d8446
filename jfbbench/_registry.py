"""A small name -> factory registry, shared by problems and estimators."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories (functions or classes) returning objects of one kind.

    ``register(name)`` is a decorator; ``make(name, **config)`` calls the factory;
    ``names()`` lists what is known. An unknown name is refused with the list of the known
    ones, so a typo never passes silently.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str, *, overwrite: bool = False) -> Callable[[Callable[..., T]], Callable[..., T]]:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if not callable(factory):
                raise TypeError(f"register({name!r}) needs a function or class, got {factory!r}")
            if name in self._factories and not overwrite and self._factories[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is already registered; pass overwrite=True to replace it")
            self._factories[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._factories)

    def factory(self, name: str) -> Callable[..., T]:
        if name not in self._factories:
            raise ValueError(f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self.names())}")
        return self._factories[name]

    def settings(self, name: str) -> set[str] | None:
        """The keyword settings ``make(name, ...)`` accepts, or None when a ``**kwargs`` that
        reaches no declared signature makes them unknowable."""
        return accepted_settings(self.factory(name))

    def make(self, name: str, **config: Any) -> T:
        return self.factory(name)(**config)

    def __contains__(self, name: object) -> bool:
        return name in self._factories


def accepted_settings(factory: Callable[..., Any]) -> set[str] | None:
    """Names ``factory`` accepts as keywords. For a class, ``**kwargs`` in an ``__init__`` is
    followed up the MRO to the next ``__init__`` that declares its parameters."""
    chain = (
        [c.__dict__["__init__"] for c in factory.__mro__ if "__init__" in c.__dict__]
        if inspect.isclass(factory)
        else [factory]
    )
    names: set[str] = set()
    for fn in chain:
        if fn is object.__init__:
            break
        params = list(inspect.signature(fn).parameters.values())
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        names |= {p.name for p in params if p.kind in kinds and p.name != "self"}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return names
    return None
