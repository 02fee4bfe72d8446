"""Restarted JFB (Davy, Briceno-Arias, Pustelnik, *Restarted contractive operators to learn at
equilibrium*, 2025, arXiv 2506.13239)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import torch

from .._validation import check_nonnegative_int
from .base import CountingOperator, Estimate, Estimator, flat_grad, start_point, unroll


class RestartedJFB(Estimator):
    r"""No forward solve to tolerance. Call n starts from the state left by call n - 1 (the
    cold start when ``state`` is None), applies ``extra_steps`` M steps without a graph,
    then K steps with the graph, and back-propagates L(x^n_K); ``Estimate.state`` is the
    detached last iterate, to pass to the next call. Cost: M + K operator applications and K
    vector-Jacobian products.

    At fixed theta, m restarts leave the start within rho^{m(M+K)} ||x_0 - x*|| of x*, so the
    estimate converges to JFB-K at the equilibrium. With a data set, keep one state per
    sample (:class:`StateBank`). ``converged`` is None: no solve is made.
    """

    keeps_depth_graph = True

    name = "restarted_jfb"
    stateful = True
    solves = False

    def __init__(self, depth: int = 1, extra_steps: int = 0, **kwargs: Any) -> None:
        super().__init__(depth, **kwargs)
        self.extra_steps = check_nonnegative_int(extra_steps, "extra_steps")

    def config(self) -> dict[str, Any]:
        return dict(depth=self.depth, extra_steps=self.extra_steps)

    def _gradient(self, problem: Any, params: list[torch.Tensor], state: torch.Tensor | None) -> Estimate:
        op = CountingOperator(problem)
        x0 = start_point(problem, state)
        with torch.no_grad():
            start, _ = unroll(op, x0, self.extra_steps)
        xk, res0 = unroll(op, start, self.depth)
        grad = flat_grad(problem.loss(xk), params)
        stats = dict(
            operator_evals=op.evals, vjp_evals=self.depth, forward_residual=res0, converged=None, workspace_bytes=0
        )
        return Estimate(grad=grad.detach(), x=xk.detach(), state=xk.detach(), stats=stats)


State = torch.Tensor | tuple[torch.Tensor, ...]


class StateBank:
    """One state per sample, keyed by sample index, for training loops over a data set whose
    problem x is a batch stacked along dimension 0: restarted JFB's iterate, or the warm start
    of an estimator built with ``warm_start=True`` (a tensor, or a tuple of tensors such as
    DEQ's (x, u), each with the batch along dimension 0).

    ``get(indices, cold)`` returns the stacked states of those samples; the rows of samples
    that have none yet are taken from ``cold`` (the batch's cold state, e.g.
    ``estimator.cold_state(problem)``), so one new sample does not cold-start the others.
    Without ``cold``, or when no sample has a state, it returns None (a cold start).
    ``put(indices, state)`` stores the rows of a returned state under their sample indices.
    """

    def __init__(self) -> None:
        self._states: dict[Hashable, tuple[torch.Tensor, ...]] = {}
        self._tuple: bool | None = None

    def get(self, indices: Iterable[Hashable], cold: State | None = None) -> State | None:
        idx = list(indices)
        have = [i in self._states for i in idx]
        if not any(have) or (not all(have) and cold is None):
            return None
        fill = None if cold is None else (cold if isinstance(cold, tuple) else (cold,))
        n_parts = len(next(iter(self._states.values())))
        parts = [
            torch.stack(
                [self._states[i][j] if ok else fill[j][r] for r, (i, ok) in enumerate(zip(idx, have, strict=True))]
            )
            for j in range(n_parts)
        ]
        return tuple(parts) if self._tuple else parts[0]

    def put(self, indices: Iterable[Hashable], state: State) -> None:
        idx = list(indices)
        parts = state if isinstance(state, tuple) else (state,)
        for p in parts:
            if p.shape[0] != len(idx):
                raise ValueError(f"state has {p.shape[0]} rows but {len(idx)} indices were given")
        self._tuple = isinstance(state, tuple)
        for r, i in enumerate(idx):
            self._states[i] = tuple(p[r].detach().clone() for p in parts)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: every sample's state."""
        return dict(tuple=self._tuple, states={i: tuple(p.clone() for p in s) for i, s in self._states.items()})

    def load_state_dict(self, payload: dict[str, Any]) -> None:
        self._tuple = payload["tuple"]
        self._states = {i: tuple(p.clone() for p in s) for i, s in payload["states"].items()}

    def nbytes(self) -> int:
        """Bytes held by the stored states."""
        return sum(p.numel() * p.element_size() for parts in self._states.values() for p in parts)

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, index: Hashable) -> bool:
        return index in self._states
