"""Weights derived from parameters (normalised kernels, step sizes), computed once per value
of the parameters and shared by every application of T until a parameter changes.

Two levels: :class:`ValueCache` keeps a detached result (an eigenvector, a step size solved
for) keyed by the parameters' values; :class:`GraphCache` keeps tensors that carry a graph to
the parameters, keyed by their values and the grad mode, and rebuilt once a backward pass has
freed that graph. The K applications of T in one gradient call then share one derived
weight, and autograd saves the layer's own activations per step, not a normalisation each.
Both compare copies of the parameters (cheap beside the work they save), so any change,
``.data`` writes included, is seen.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import torch

Tensor = torch.Tensor
V = TypeVar("V")


def _snapshot(params: Sequence[Tensor]) -> list[Tensor]:
    return [p.detach().clone() for p in params]


def _same(snapshot: list[Tensor] | None, params: Sequence[Tensor]) -> bool:
    return (
        snapshot is not None
        and len(snapshot) == len(params)
        and all(
            s.shape == p.shape and s.dtype == p.dtype and s.device == p.device and torch.equal(s, p.detach())
            for s, p in zip(snapshot, params, strict=True)
        )
    )


def in_functorch_transform() -> bool:
    """Inside ``torch.func`` transforms a tensor must not leave its transform: rebuild."""
    return torch._C._functorch.maybe_current_level() is not None


class ValueCache(Generic[V]):
    """A value computed from the parameters' values (no graph), recomputed when one changes."""

    def __init__(self) -> None:
        self._snapshot: list[Tensor] | None = None
        self._value: Any = None

    def get(self, params: Sequence[Tensor], compute: Callable[[], V]) -> V:
        if not _same(self._snapshot, params):
            with torch.no_grad():
                self._value = compute()
            self._snapshot = _snapshot(params)
        return self._value

    def clear(self) -> None:
        self._snapshot, self._value = None, None


@functools.cache
def _saved_names(node_type: type) -> tuple[str, ...]:
    return tuple(n for n in dir(node_type) if n.startswith("_saved_"))


def _probe(tensors: Sequence[Tensor]) -> tuple[Any, str] | None:
    """A (node, attribute) of the graph behind ``tensors`` that holds a saved tensor: reading
    it raises once a backward pass without ``retain_graph`` has freed the graph."""
    stack = [t.grad_fn for t in tensors]
    seen = 0
    while stack and seen < 256:
        node = stack.pop()
        if node is None:
            continue
        seen += 1
        for name in _saved_names(type(node)):
            if isinstance(getattr(node, name), torch.Tensor):
                return node, name
        stack.extend(f for f, _ in node.next_functions)
    return None


def _alive(probe: tuple[Any, str] | None) -> bool:
    if probe is None:
        return True
    try:
        getattr(*probe)
    except RuntimeError:
        return False
    return True


class GraphCache:
    """Tensors built from the parameters with a graph to them, reused while the parameters'
    values, the grad mode and the graph last."""

    def __init__(self) -> None:
        self._entry: tuple[bool, list[Tensor], tuple[Tensor, ...], tuple[Any, str] | None] | None = None

    def get(self, params: Sequence[Tensor], build: Callable[[], tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
        if in_functorch_transform():
            return build()
        grad = torch.is_grad_enabled()
        e = self._entry
        if e is not None and e[0] == grad and _alive(e[3]) and _same(e[1], params):
            return e[2]
        value = build()
        self._entry = (grad, _snapshot(params), value, _probe(value) if grad else None)
        return value
