"""Restarted JFB (Davy, Briceno-Arias, Pustelnik, *Restarted contractive operators to learn at
equilibrium*, 2025, arXiv 2506.13239)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import torch

from .._validation import check_nonnegative_int
from .base import CountingOperator, Estimate, Estimator, flat_grad, unroll


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
        x0 = problem.initial_point().detach()
        if state is not None:
            if not isinstance(state, torch.Tensor) or state.shape != x0.shape:
                got = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
                raise ValueError(f"state must be a tensor of shape {tuple(x0.shape)} (the problem's x), got {got}")
            x0 = state.detach().to(dtype=x0.dtype, device=x0.device)
        with torch.no_grad():
            start, _ = unroll(op, x0, self.extra_steps)
        xk, res0 = unroll(op, start, self.depth)
        grad = flat_grad(problem.loss(xk), params)
        stats = dict(
            operator_evals=op.evals, vjp_evals=self.depth, forward_residual=res0, converged=None, workspace_bytes=0
        )
        return Estimate(grad=grad.detach(), x=xk.detach(), state=xk.detach(), stats=stats)


class StateBank:
    """One restarted-JFB state per sample, keyed by sample index, for training loops over a
    data set whose problem x is a batch stacked along dimension 0.

    ``get(indices)`` returns the stacked states of those samples, or None if any is missing
    (then the estimator cold-starts); ``put(indices, state)`` stores the rows of a returned
    state under their sample indices.
    """

    def __init__(self) -> None:
        self._states: dict[Hashable, torch.Tensor] = {}

    def get(self, indices: Iterable[Hashable]) -> torch.Tensor | None:
        idx = list(indices)
        if not all(i in self._states for i in idx):
            return None
        return torch.stack([self._states[i] for i in idx])

    def put(self, indices: Iterable[Hashable], state: torch.Tensor) -> None:
        idx = list(indices)
        if state.shape[0] != len(idx):
            raise ValueError(f"state has {state.shape[0]} rows but {len(idx)} indices were given")
        for i, row in zip(idx, state.detach(), strict=False):
            self._states[i] = row.clone()

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, index: Hashable) -> bool:
        return index in self._states
