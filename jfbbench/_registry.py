"""A small name -> factory registry, shared by problems and estimators.

A name reaches a factory in one of four ways, and :meth:`Registry.origin` says which:

- ``built-in``: registered by jfbbench itself;
- ``register() in <module>``: a user's ``register("mine")`` decorator, in their own code;
- ``entry point <dist> <version> (<module>:<attr>)``: an installed distribution declares it
  in the entry-point group of the registry (``jfbbench.problems`` or ``jfbbench.estimators``,
  read with :mod:`importlib.metadata`; loaded on first use, not at import);
- ``module path <file>``: the name itself is ``package.module:factory``, imported on demand
  from ``sys.path`` (``PYTHONPATH``), so any command that takes a name accepts it.
"""

from __future__ import annotations

import importlib
import inspect
import re
import warnings
from collections.abc import Callable
from importlib import metadata
from typing import Any, Generic, NamedTuple, TypeVar

T = TypeVar("T")

BUILT_IN = "built-in"
#: ``package.module:factory`` (the attribute may be dotted: ``module:Class.method``).
MODULE_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def is_module_path(name: str) -> bool:
    """Whether ``name`` reads as ``package.module:factory``."""
    return isinstance(name, str) and MODULE_PATH.match(name) is not None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def load_module_path(name: str, kind: str) -> Callable[..., Any]:
    """Import ``package.module:factory`` and return the factory, or raise a one-line
    ValueError naming ``kind``, what was given and what went wrong."""
    module_name, _, attr = name.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        raise ValueError(
            f"{kind} {name!r}: cannot import module {module_name!r} (no module named {missing!r}); "
            "is its folder on PYTHONPATH?"
        ) from None
    except Exception as exc:
        raise ValueError(f"{kind} {name!r}: importing module {module_name!r} failed: {_one_line(exc)}") from None
    where = getattr(obj, "__file__", None) or module_name
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{kind} {name!r}: module {module_name!r} ({where}) has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{kind} {name!r}: {attr!r} in {where} is a {type(obj).__name__}, not a function or class")
    return obj


class RegistryAPI(NamedTuple):
    """The functions a registry's package exposes at module level, in this order."""

    register: Callable[..., Any]
    names: Callable[[], list[str]]
    factory: Callable[[str], Callable[..., Any]]
    origin: Callable[[str], str]
    describe: Callable[[], list[tuple[str, str]]]
    refresh: Callable[[], None]


class Registry(Generic[T]):
    """Maps names to factories (functions or classes) returning objects of one kind.

    ``register(name)`` is a decorator; ``make(name, **config)`` calls the factory;
    ``names()`` lists what is known (registered and entry points); ``factory(name)`` also
    resolves ``package.module:factory`` names. An unknown name is refused with the list of
    the known ones, so a typo never passes silently.
    """

    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._factories: dict[str, Callable[..., T]] = {}
        self._origins: dict[str, str] = {}
        self._entry_points: dict[str, metadata.EntryPoint] | None = None
        self._resolved: dict[str, Callable[..., T]] = {}

    # ------------------------------------------------------------------ registration
    def register(
        self, name: str, *, overwrite: bool = False, origin: str | None = None
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if ":" in name:
            raise ValueError(
                f"{self.kind} name must not contain ':' (reserved for package.module:factory), got {name!r}"
            )

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if not callable(factory):
                raise TypeError(f"register({name!r}) needs a function or class, got {factory!r}")
            if name in self._factories and not overwrite and self._factories[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is already registered; pass overwrite=True to replace it")
            self._factories[name] = factory
            self._origins[name] = origin or self._origin_of(factory)
            return factory

        return decorator

    @staticmethod
    def _origin_of(factory: Callable[..., Any]) -> str:
        module = getattr(factory, "__module__", None) or "?"
        return BUILT_IN if module == "jfbbench" or module.startswith("jfbbench.") else f"register() in {module}"

    # ------------------------------------------------------------------ entry points
    def entry_points(self) -> dict[str, metadata.EntryPoint]:
        """The entry points of this registry's group, read once (:meth:`refresh` reads again).
        A name that is already registered keeps its factory (a warning says so)."""
        if self._entry_points is None:
            found: dict[str, metadata.EntryPoint] = {}
            if self.group is not None:
                for ep in metadata.entry_points(group=self.group):
                    if ep.name in self._factories or ep.name in found or ":" in ep.name:
                        warnings.warn(
                            f"entry point {ep.name!r} = {ep.value!r} of group {self.group!r} "
                            f"({self._dist(ep)}) is ignored: the {self.kind} name is taken or invalid",
                            stacklevel=2,
                        )
                        continue
                    found[ep.name] = ep
            self._entry_points = found
        return self._entry_points

    def refresh(self) -> None:
        """Forget the entry points read so far (after installing a plug-in in this process)."""
        for name in self._entry_points or {}:
            if self._origins.get(name, "").startswith("entry point"):
                self._factories.pop(name, None)
                self._origins.pop(name, None)
        for name in self._resolved:
            self._origins.pop(name, None)
        self._entry_points = None
        self._resolved.clear()

    @staticmethod
    def _dist(ep: metadata.EntryPoint) -> str:
        dist = getattr(ep, "dist", None)
        return f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"

    def _load_entry_point(self, name: str) -> Callable[..., T]:
        ep = self.entry_points()[name]
        where = f"entry point {self._dist(ep)} ({ep.value})"
        try:
            factory = ep.load()
        except Exception as exc:
            raise ValueError(f"{self.kind} {name!r} ({where}) failed to load: {_one_line(exc)}") from None
        if not callable(factory):
            raise ValueError(f"{self.kind} {name!r} ({where}) is a {type(factory).__name__}, not a function or class")
        self._factories[name] = factory
        self._origins[name] = where
        return factory

    # ------------------------------------------------------------------ lookup
    def names(self) -> list[str]:
        return sorted(set(self._factories) | set(self.entry_points()))

    def origin(self, name: str) -> str:
        """Where ``name`` comes from: built-in, register() in a module, an entry point's
        distribution, or a module path (resolving it if need be)."""
        if name in self._origins:
            return self._origins[name]
        if name in self.entry_points():
            ep = self.entry_points()[name]
            return f"entry point {self._dist(ep)} ({ep.value})"
        self.factory(name)  # a module path: resolving it records where it came from
        return self._origins[name]

    def describe(self) -> list[tuple[str, str]]:
        """(name, origin) for every listed name."""
        return [(name, self.origin(name)) for name in self.names()]

    def factory(self, name: str) -> Callable[..., T]:
        if not isinstance(name, str):
            raise ValueError(f"{self.kind} name must be a string, got {name!r}")
        if name in self._factories:
            return self._factories[name]
        if name in self.entry_points():
            return self._load_entry_point(name)
        if is_module_path(name):
            if name not in self._resolved:
                factory = load_module_path(name, self.kind)
                module = importlib.import_module(name.partition(":")[0])
                self._resolved[name] = factory
                self._origins[name] = f"module path {getattr(module, '__file__', None) or module.__name__}"
            return self._resolved[name]
        raise ValueError(
            f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self.names())} (or package.module:factory)"
        )

    def settings(self, name: str) -> set[str] | None:
        """The keyword settings ``make(name, ...)`` accepts, or None when a ``**kwargs`` that
        reaches no declared signature makes them unknowable."""
        return accepted_settings(self.factory(name))

    def make(self, name: str, **config: Any) -> T:
        return self.factory(name)(**config)

    def api(self) -> RegistryAPI:
        """The package's module-level API in one line:
        ``register, names, factory, origin, describe, refresh = REGISTRY.api()``."""
        return RegistryAPI(self.register, self.names, self.factory, self.origin, self.describe, self.refresh)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.factory(name)
        except ValueError:
            return False
        return True


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
