"""DeepInverse's own deep-equilibrium gradients as peer estimators: ``deepinv_deq`` and
``deepinv_jfb``.

DeepInverse turns an optimiser built with ``deepinv.optim`` (PGD, HQS, GD) into a DEQ with
``DEQ=DEQConfig(...)``: the forward fixed point is solved without a graph, one more
application of the iterator at x* carries the graph to theta, and a backward hook solves the
adjoint fixed point g <- J^T g + v by fixed-point iteration (``deepinv_deq``, the implicit
gradient B^T (I - J^T)^{-1} v), or skips it (``jacobian_free=True``: ``deepinv_jfb``, Fung et
al.'s JFB, B^T v, our ``jfb`` at K = 1).

These estimators run DeepInverse's code on the optimiser inside a problem made by
:func:`jfbbench.problems.from_deepinv` (other problems are refused: DeepInverse's DEQ needs
its own optimiser). The optimiser's settings are changed for the call and restored after:
``DEQ`` on, forward ``max_iter`` and ``early_stop``, ``thres_conv = tol``,
``crit_conv = "residual"``, backward ``max_iter_backward = adjoint_max_iter``, no Anderson
acceleration (plain fixed-point iteration both ways, as our ``deq`` with
``solver="picard"``, ``adjoint="fixed_point"``). DeepInverse's criterion is the batch mean
of ||x_k - x_{k-1}|| / (||x_k|| + 1e-6) per row, checked from the third iteration on,
forward and backward with the same threshold; ours is ||T(x) - x|| <= tol ||T(x)|| on the
whole tensor.

Registered when DeepInverse's DEQ API (``deepinv.optim.DEQConfig`` with ``jacobian_free``)
is installed, found without importing DeepInverse.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .._validation import check_depth
from .base import Estimate, Estimator, flat_grad
from .products import ProductCountingOperator


def deq_api_available() -> bool:
    """Whether the installed DeepInverse has the DEQ configuration of ``deepinv.optim``
    (``DEQConfig`` with ``jacobian_free``), read from its source without importing it."""
    spec = importlib.util.find_spec("deepinv")
    if spec is None or not spec.submodule_search_locations:
        return False
    source = Path(next(iter(spec.submodule_search_locations))) / "optim" / "optimizers.py"
    try:
        text = source.read_text(encoding="utf-8")
    except OSError:
        return False
    return "class DEQConfig" in text and "jacobian_free" in text


@contextlib.contextmanager
def _settings(obj: Any, **values: Any) -> Iterator[None]:
    """Set attributes of ``obj`` for the duration of the block, then restore them (an
    attribute that was absent is removed again)."""
    missing = object()
    before = {k: obj.__dict__.get(k, missing) for k in values}
    for k, v in values.items():
        setattr(obj, k, v)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is missing:
                delattr(obj, k)
            else:
                setattr(obj, k, v)


class _DeepInvDEQ(Estimator):
    """Runs DeepInverse's DEQ on the optimiser of a ``from_deepinv`` problem."""

    uses_depth = False
    jacobian_free = False
    #: the only problems it takes: those made by ``problems.from_deepinv``
    requires_problem = "from_deepinv"

    def __init__(
        self,
        depth: int = 1,
        tol: float | None = None,
        max_iter: int = 20000,
        adjoint_max_iter: int = 20000,
    ) -> None:
        super().__init__(depth, tol, max_iter, solver="picard")
        self.adjoint_max_iter = check_depth(adjoint_max_iter, "adjoint_max_iter")
        from deepinv.optim import DEQConfig  # the DEQ API; an ImportError here names it

        self._config_cls = DEQConfig

    def config(self) -> dict[str, Any]:
        return dict(depth=None)

    def _gradient(self, problem: Any, params: list[torch.Tensor], state: torch.Tensor | None) -> Estimate:
        model = getattr(problem, "model", None)
        if model is None or getattr(problem, "name", None) != self.requires_problem:
            raise ValueError(
                f"estimator {self.name!r} runs DeepInverse's DEQ and needs a problem made by "
                f"problems.from_deepinv(model, physics, y, x_true); got {problem!r}"
            )
        x0 = problem.initial_point()
        tol = self.forward_tol(x0)
        counts = dict(forward_checks=0, backward_checks=0)
        products = ProductCountingOperator(problem)
        last = dict(forward=False, backward=False)
        forward_check = model.fixed_point.check_conv_fn

        def counted_forward(*args: Any) -> bool:
            counts["forward_checks"] += 1
            last["forward"] = bool(forward_check(*args))
            return last["forward"]

        def counted_backward(*args: Any) -> bool:
            counts["backward_checks"] += 1
            last["backward"] = bool(model.__class__.check_conv_fn(model, *args))
            return last["backward"]

        def count_operator(module: Any, args: Any, out: dict[str, Any]) -> dict[str, Any]:
            # every application of the iterator is one of T; a tap on its estimate counts the
            # products DeepInverse's backward solve and the final B^T take through it
            products.evals += 1
            est = out["est"]
            return {**out, "est": (products.tap(est[0]), *est[1:])}

        deq = self._config_cls(
            jacobian_free=self.jacobian_free,
            anderson_acceleration_backward=False,
            max_iter_backward=self.adjoint_max_iter,
        )
        hook = model.fixed_point.iterator.register_forward_hook(count_operator)
        try:
            with (
                _settings(model, DEQ=True, DEQ_config=deq, thres_conv=tol, crit_conv="residual"),
                _settings(model, check_conv_fn=counted_backward),  # read by the backward solve it builds
                _settings(
                    model.fixed_point,
                    max_iter=self.max_iter,
                    early_stop=True,
                    anderson_acceleration_config=None,
                    check_conv_fn=counted_forward,
                ),
            ):
                x = model(problem.y, problem.physics, init=x0)
                grad = flat_grad(problem.loss(x), params)
        finally:
            hook.remove()
        # FixedPoint checks convergence from its third iteration on: iterations = checks + 2
        forward_iterations = counts["forward_checks"] + 2
        backward_iterations = 0 if self.jacobian_free else counts["backward_checks"] + 2
        with torch.no_grad():
            residual = float(torch.linalg.vector_norm(problem.operator(x) - x))
        converged = last["forward"] and (self.jacobian_free or last["backward"])
        stats = dict(
            operator_evals=products.evals,
            **products.products(),
            forward_iterations=forward_iterations,
            forward_residual=residual,
            converged=bool(converged),
            forward_converged=bool(last["forward"]),
            adjoint_iterations=backward_iterations,
            adjoint_converged=None if self.jacobian_free else bool(last["backward"]),
            settings=dict(thres_conv=tol, max_iter=self.max_iter, max_iter_backward=self.adjoint_max_iter),
        )
        return Estimate(grad=grad.detach(), x=x.detach(), state=None, stats=stats)


class DeepInvDEQ(_DeepInvDEQ):
    r"""DeepInverse's implicit DEQ gradient, B^T (I - J^T)^{-1} v, with its backward
    fixed-point solve g <- J^T g + v (``DEQConfig(jacobian_free=False)``)."""

    name = "deepinv_deq"


class DeepInvJFB(_DeepInvDEQ):
    r"""DeepInverse's Jacobian-free DEQ gradient B^T v (``DEQConfig(jacobian_free=True)``;
    Fung et al., AAAI 2022): our ``jfb`` at K = 1."""

    name = "deepinv_jfb"
    jacobian_free = True


DEEPINV_PEERS: dict[str, type[Estimator]] = {"deepinv_deq": DeepInvDEQ, "deepinv_jfb": DeepInvJFB}


def register_deepinv_peers(register: Any) -> list[str]:
    """Register ``deepinv_deq`` and ``deepinv_jfb`` when DeepInverse's DEQ API is installed."""
    if not deq_api_available():
        return []
    for name, cls in DEEPINV_PEERS.items():
        register(name)(cls)
    return list(DEEPINV_PEERS)


__all__ = ["DEEPINV_PEERS", "DeepInvDEQ", "DeepInvJFB", "deq_api_available", "register_deepinv_peers"]
