r"""The training gradients of recursive reasoning models: TRM's and HRM's 1-step gradient.

A recursive reasoning problem has a state s = (y, z) (answer, latent) and two updates,
``latent_update`` (z <- f(x, y, z)) and ``answer_update`` (y <- g(y, z)); one cycle is
T(s) = answer_update(latent_update^n(s)) with n = ``problem.n_latent``
(:class:`jfbbench.problems.recursive_reasoning.RecursiveReasoning`). Both models run
``cycles`` cycles from a start s_0 and back-propagate through the end of the last one only:

- **TRM** (Jolicoeur-Martineau, *Less is More: Recursive Reasoning with Tiny Networks*,
  2025, arXiv 2510.04871): cycles - 1 cycles without a graph, then the whole last cycle (its
  n latent updates and the answer update) with it. That is JFB-1 in units of one cycle from
  a warm start: restarted JFB with depth 1 and cycles - 1 extra steps, which is how
  :class:`TRM` is built.
- **HRM's 1-step gradient** (Wang et al., *Hierarchical Reasoning Model*, 2025,
  arXiv 2506.21734): the last cycle's first n - 1 latent updates are detached too; the graph
  holds the last latent update and the answer update only. That is JFB-1 at the level of
  single updates: with the answer update A and latent update L, it back-propagates through
  A o L from the detached state L^{n-1}(T^{cycles-1}(s_0)), and drops the terms of the chain
  rule that pass through the earlier latent updates of the cycle.

**Deep supervision** (both papers): N_sup supervised steps on one example, each a gradient
step from the detached state the previous one left. At fixed parameters it is restarted JFB
with one restart per supervised step: the ``state`` of one call is the start of the next
(cold start when None), as for ``restarted_jfb``; keep one state per sample with
:class:`jfbbench.estimators.StateBank`.

**Counts.** ``operator_evals`` counts cycles (applications of T, forward) and ``vjp_evals``
vector-Jacobian products of T, in cycles too: 1 for TRM, 2 / (n + 1) for HRM (two of the
cycle's n + 1 updates, which cost the same when f and g are the same size). The stats also
give ``update_evals`` and ``update_vjp_evals``: the single updates applied forward and
back-propagated through.
"""

from __future__ import annotations

from typing import Any

import torch

from .._validation import check_depth
from .base import CountingOperator, Estimate, Estimator, flat_grad, start_point, unroll
from .restarted_jfb import RestartedJFB

Tensor = torch.Tensor


def updates_of(problem: Any, estimator: str) -> int:
    """n = ``problem.n_latent``, after checking that the problem has the two updates."""
    missing = [a for a in ("latent_update", "answer_update", "n_latent") if not hasattr(problem, a)]
    if missing:
        raise ValueError(
            f"estimator {estimator!r} needs a recursive reasoning problem (latent_update, answer_update, "
            f"n_latent); {type(problem).__name__} has no {', '.join(missing)}"
        )
    return int(problem.n_latent)


class TRM(RestartedJFB):
    r"""TRM's gradient (Jolicoeur-Martineau, 2025, arXiv 2510.04871): from the start s_0 (the
    ``state`` of the previous call, else the cold start),

        s = T^{C-1}(s_0) without a graph,  s_C = A(L^n(s)) with the graph,  g = dL(s_C)/dtheta,

    C = ``cycles``, A / L the answer / latent update. It is restarted JFB with depth 1 and
    C - 1 extra steps, JFB-1 in cycles from a warm state (no forward solve:
    ``converged`` is None); ``Estimate.state`` is s_C detached, the next supervised step's
    start (deep supervision). Cost: C cycles, one cycle's VJP.
    """

    name = "trm"
    uses_depth = False
    #: the family it needs (its latent and answer updates)
    requires_problem = "recursive_reasoning"

    def __init__(self, depth: int = 1, cycles: int = 3) -> None:
        check_depth(depth)  # accepted so that a sweep can pass it, as to deq; cycles is T
        self.cycles = check_depth(cycles, "cycles")
        super().__init__(depth=1, extra_steps=self.cycles - 1)

    def config(self) -> dict[str, Any]:
        return dict(depth=None, cycles=self.cycles)

    def _gradient(self, problem: Any, params: list[Tensor], state: Tensor | None) -> Estimate:
        n = updates_of(problem, self.name)
        est = super()._gradient(problem, params, state)
        est.stats.update(update_evals=self.cycles * (n + 1), update_vjp_evals=n + 1)
        return est

    def __repr__(self) -> str:
        return f"TRM(cycles={self.cycles})"


class HRMOneStep(Estimator):
    r"""HRM's 1-step gradient (Wang et al., 2025, arXiv 2506.21734): from the start s_0,

        s = L^{n-1}(T^{C-1}(s_0)) without a graph,  s_C = A(L(s)) with the graph,
        g = dL(s_C)/dtheta,

    the last latent update and the answer update only (JFB-1 at the level of single
    updates). Stateful as TRM: ``Estimate.state`` is s_C detached. Cost: C cycles, VJPs
    through 2 of the cycle's n + 1 updates (``vjp_evals`` = 2 / (n + 1) cycles).
    """

    name = "hrm_one_step"
    uses_depth = False
    requires_problem = "recursive_reasoning"
    stateful = True
    solves = False

    def __init__(self, depth: int = 1, cycles: int = 3) -> None:
        super().__init__(depth)  # depth is accepted for sweeps, as by deq, and not used; cycles is T
        self.cycles = check_depth(cycles, "cycles")

    def config(self) -> dict[str, Any]:
        return dict(depth=None, cycles=self.cycles)

    def _gradient(self, problem: Any, params: list[Tensor], state: Tensor | None) -> Estimate:
        n = updates_of(problem, self.name)
        op = CountingOperator(problem)
        with torch.no_grad():
            start, _ = unroll(op, start_point(problem, state), self.cycles - 1)
            s = start
            for _ in range(n - 1):
                s = problem.latent_update(s)
        out = problem.answer_update(problem.latent_update(s))
        grad = flat_grad(problem.loss(out), params)
        stats = dict(
            operator_evals=op.evals + 1,
            vjp_evals=2.0 / (n + 1),
            update_evals=self.cycles * (n + 1),
            update_vjp_evals=2,
            forward_residual=float(torch.linalg.vector_norm((out - start).detach())),
            converged=None,
            workspace_bytes=0,
        )
        return Estimate(grad=grad.detach(), x=out.detach(), state=out.detach(), stats=stats)

    def __repr__(self) -> str:
        return f"HRMOneStep(cycles={self.cycles})"
