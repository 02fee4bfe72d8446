"""Peer libraries' gradients as jfbbench estimators: TorchDEQ's implicit (IFT) and phantom
gradients, torchopt's implicit differentiation.

Each adapter takes any registered problem through its public protocol (``operator``,
``loss``, ``initial_point``, ``parameters``) and returns an :class:`Estimate` like the
built-in estimators, so the peers run in the same harness, on the same problems, at matched
settings. The peer library is imported when an adapter is *built*, not when jfbbench is
imported; :func:`register_peers` registers the adapters of the libraries that are
installed (the optional extra ``pip install 'jfbbench[peers]'``).

Settings, matched to ours where the peer allows it:

- ``torchdeq_ift``: ``torchdeq.get_deq(ift=True)``; forward solver ``fixed_point_iter``
  (our ``picard``) or ``anderson``, backward solver ``fixed_point_iter`` (our
  ``adjoint="fixed_point"``), ``f_tol = tol``, ``b_tol = adjoint_tol``, both with
  ``stop_mode="rel"``, ``f_max_iter = max_iter``, ``b_max_iter = adjoint_max_iter``.
  TorchDEQ measures residuals per batch row (``||f(z) - z|| / ||f(z)||`` for each row,
  stop when the largest is below tol) and stops its backward solve on the relative change
  of the adjoint iterate; ours measure the whole tensor and the residual relative to
  ``||v||``.
- ``torchdeq_phantom``: ``get_deq(ift=False, grad=depth, tau=damping)``: k damped steps
  from the detached fixed point, as our ``phantom``.
- ``torchopt_implicit``: ``torchopt.diff.implicit.custom_root`` with the optimality
  function F(x, theta) = T_theta(x) - x and our forward solve as the root solver; the
  adjoint system (dF/dx)^T w = -v is solved by torchopt's ``solve_normal_cg`` (its
  default; ``rtol = adjoint_tol``, ``maxiter = adjoint_max_iter``), or by
  ``linear_solver="inv"`` (dense) or ``"neumann"`` (``depth`` terms, torchopt's
  ``solve_inv(ns=True)`` with ``alpha=-1``: its plain series diverges for F = T(x) - x).

Costs are counted where the peer spends them, not at one entry point: ``operator_evals``
counts every application of T (torchopt's backward evaluates F twice more at the root), and
a tap on each output of T (:class:`.products.ProductCountingOperator`) counts every backward
pass through it (``vjp_evals``: products with J^T, B^T) and through those (``jvp_evals``:
products with J). torchopt's normal-equation CG takes one of each per step (A^T A p, with
A = J^T - I, and A^T b once), so its products done are ``vjp_evals + jvp_evals``; its dense
solver forms A by n forward-mode products through the matvec, counted as n VJPs.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import warnings
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import torch

from .._validation import check_choice, check_depth, check_tol
from .base import Estimate, Estimator, flat_grad
from .phantom import Phantom
from .products import ProductCountingOperator

#: estimator name -> the peer library it needs
PEER_LIBRARIES = {"torchdeq_ift": "torchdeq", "torchdeq_phantom": "torchdeq", "torchopt_implicit": "torchopt"}

#: our forward solver names -> TorchDEQ's
TORCHDEQ_SOLVERS = {"picard": "fixed_point_iter", "anderson": "anderson", "broyden": "broyden"}
TORCHDEQ_BACKWARD_SOLVERS = ("fixed_point_iter", "anderson", "broyden")
TORCHOPT_LINEAR_SOLVERS = ("normal_cg", "inv", "neumann")


def available(library: str) -> bool:
    """Whether ``library`` is installed (without importing it)."""
    return importlib.util.find_spec(library) is not None


def require(library: str, estimator: str) -> ModuleType:
    """Import ``library`` or raise an ImportError that says how to install it."""
    try:
        return importlib.import_module(library)
    except ImportError as err:
        raise ImportError(
            f"estimator {estimator!r} needs the peer library {library!r}, which is not installed; "
            f"install the optional extra: pip install 'jfbbench[peers]'"
        ) from err


class _AdjointSettings(Estimator):
    """``adjoint_tol`` (None: as the forward ``tol``) and ``adjoint_max_iter`` of an implicit
    peer's backward solve; the other settings are the :class:`Estimator`'s."""

    def __init__(self, depth: int = 1, adjoint_tol: float | None = None, adjoint_max_iter: int = 20000, **kwargs: Any):
        super().__init__(depth, **kwargs)
        self.adjoint_tol = check_tol(adjoint_tol, "adjoint_tol")
        self.adjoint_max_iter = check_depth(adjoint_max_iter, "adjoint_max_iter")

    def adjoint_tolerance(self, x: torch.Tensor) -> float:
        return self.adjoint_tol if self.adjoint_tol is not None else self.forward_tol(x)


class _TorchDEQBase(Estimator):
    """What the TorchDEQ adapters share: building the DEQ module and running it."""

    supports_warm_start = False  # TorchDEQ's solvers start from their own initial point

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_choice(self.solver, "solver", tuple(TORCHDEQ_SOLVERS))
        self._torchdeq = require("torchdeq", self.name)

    def _deq_kwargs(self, x: torch.Tensor) -> dict[str, Any]:
        return dict(
            core="sliced",
            f_solver=TORCHDEQ_SOLVERS[self.solver],
            f_tol=self.forward_tol(x),
            f_max_iter=self.max_iter,
            f_stop_mode="rel",
        )

    def _run(self, problem: Any, params: list[torch.Tensor], deq_kwargs: dict[str, Any]) -> Estimate:
        op = ProductCountingOperator(problem)
        x0 = problem.initial_point().detach()
        deq = self._torchdeq.get_deq(**deq_kwargs)
        deq.train()
        backward: dict[str, Any] = {}
        z_out, info = deq(op, x0, backward_writer=backward.update)
        xk = z_out[-1]
        grad = flat_grad(problem.loss(xk), params)
        rel = float(info["rel_lowest"].max())
        stats = dict(
            operator_evals=op.evals,
            **op.products(),
            forward_iterations=int(info["nstep"].max()),
            forward_residual=float(torch.linalg.vector_norm(info["abs_lowest"].double())),
            forward_relative_residual=rel,
            converged=bool(rel < deq_kwargs["f_tol"]),
            settings={k: v for k, v in deq_kwargs.items() if k != "core"},
        )
        return Estimate(grad=grad.detach(), x=xk.detach(), state=None, stats=stats | self._backward_stats(backward))

    def _backward_stats(self, info: dict[str, Any]) -> dict[str, Any]:
        return {}


class TorchDEQIFT(_TorchDEQBase, _AdjointSettings):
    r"""TorchDEQ's implicit (IFT) gradient (Geng and Kolter, *TorchDEQ: A Library for Deep
    Equilibrium Models*, 2023; Bai, Kolter, Koltun, NeurIPS 2019):
    ``torchdeq.get_deq(ift=True)``, grad = B^T u with (I - J^T) u = v solved by TorchDEQ's
    backward solver (``backward_solver``: ``"fixed_point_iter"``, ``"anderson"`` or
    ``"broyden"``). Settings: ``tol``, ``max_iter``, ``solver`` (forward), ``adjoint_tol``,
    ``adjoint_max_iter`` (backward). ``depth`` does not apply.
    """

    name = "torchdeq_ift"
    uses_depth = False

    def __init__(self, depth: int = 1, backward_solver: str = "fixed_point_iter", **kwargs: Any) -> None:
        super().__init__(depth, **kwargs)
        self.backward_solver = check_choice(backward_solver, "backward_solver", TORCHDEQ_BACKWARD_SOLVERS)

    def config(self) -> dict[str, Any]:
        return dict(depth=None, backward_solver=self.backward_solver)

    def _gradient(self, problem: Any, params: list[torch.Tensor], state: torch.Tensor | None) -> Estimate:
        x0 = problem.initial_point()
        kwargs = self._deq_kwargs(x0)
        kwargs.update(
            ift=True,
            b_solver=self.backward_solver,
            b_tol=self.adjoint_tolerance(x0),
            b_max_iter=self.adjoint_max_iter,
            b_stop_mode="rel",
        )
        return self._run(problem, params, kwargs)

    def _backward_stats(self, info: dict[str, Any]) -> dict[str, Any]:
        if not info:
            return dict(adjoint_iterations=None)
        return dict(adjoint_iterations=int(info["nstep"].max()), adjoint_residual=float(info["rel_lowest"].max()))


class TorchDEQPhantom(_TorchDEQBase, Phantom):
    r"""TorchDEQ's phantom gradient (Geng et al., *On Training Implicit Models*, NeurIPS
    2021): ``torchdeq.get_deq(ift=False, grad=k, tau=damping)``, k = ``depth`` damped steps
    x <- tau T(x) + (1 - tau) x from the detached fixed point, with the graph. k = 1,
    tau = 1 is TorchDEQ's "1-step gradient" (JFB). Settings as our :class:`Phantom`.
    """

    name = "torchdeq_phantom"

    def _gradient(self, problem: Any, params: list[torch.Tensor], state: torch.Tensor | None) -> Estimate:
        kwargs = self._deq_kwargs(problem.initial_point())
        kwargs.update(ift=False, grad=self.depth, tau=self.damping)
        return self._run(problem, params, kwargs)


@contextlib.contextmanager
def _parameters_replaced(problem: Any, params: list[torch.Tensor], values: tuple[torch.Tensor, ...]) -> Iterator[None]:
    """Within the block, ``problem.operator`` computes with ``values`` in place of ``params``.

    A parameter is found as an attribute of the problem (by identity) or as a parameter of
    one of its ``torch.nn.Module`` attributes; everything is restored on exit.
    """
    attrs: dict[str, torch.Tensor] = {}
    module_values: dict[str, torch.Tensor] = {}
    modules: dict[str, torch.nn.Module] = {}
    for i, (p, value) in enumerate(zip(params, values, strict=True)):
        slot = _find_parameter(problem, p, modules)
        if slot is None:
            raise ValueError(
                "torchopt_implicit calls T as a function of theta, so each tensor of problem.parameters() must be "
                "an attribute of the problem or a parameter of one of its torch.nn.Module attributes; "
                f"parameters()[{i}] (shape {tuple(p.shape)}) is neither"
            )
        kind, name = slot
        (attrs if kind == "attr" else module_values)[name] = value
    originals = {name: getattr(problem, name) for name in attrs}
    try:
        for name, value in attrs.items():
            setattr(problem, name, value)
        if module_values:
            with torch.nn.utils.stateless._reparametrize_module(torch.nn.ModuleDict(modules), module_values):
                yield
        else:
            yield
    finally:
        for name, p in originals.items():
            setattr(problem, name, p)


def _find_parameter(problem: Any, p: torch.Tensor, modules: dict[str, torch.nn.Module]) -> tuple[str, str] | None:
    for name, value in vars(problem).items():
        if value is p:
            return ("attr", name)
    for name, value in vars(problem).items():
        if isinstance(value, torch.nn.Module):
            for pname, q in value.named_parameters():
                if q is p:
                    modules[name] = value
                    return ("module", f"{name}.{pname}")
    return None


@contextlib.contextmanager
def _saved_tensor_hooks_suspended() -> Iterator[None]:
    """Suspend the active ``torch.autograd.graph.saved_tensors_hooks`` for the block.

    torchopt's backward runs ``torch.func.vjp``, which refuses to run under saved-tensor hooks,
    the way memory harnesses count the bytes autograd saves (jfbbench.measure does). The
    hooks still see every tensor the forward pass saves; only the backward's transient
    graphs go uncounted, as for every other estimator. Uses PyTorch's private hook stack
    (as ``torch.utils.checkpoint`` does); a no-op where it is absent.
    """
    ag = torch._C._autograd
    if not hasattr(ag, "_top_saved_tensors_default_hooks"):
        yield
        return
    stack = []
    while (top := ag._top_saved_tensors_default_hooks(False)) is not None:
        stack.append(top)
        ag._pop_saved_tensors_default_hooks()
    try:
        yield
    finally:
        for pack, unpack in reversed(stack):
            ag._push_saved_tensors_default_hooks(pack, unpack)


class TorchoptImplicit(_AdjointSettings):
    r"""torchopt's implicit differentiation (Ren et al., *TorchOpt: An Efficient Library
    for Differentiable Optimization*, JMLR 2023; Blondel et al., *Efficient and Modular
    Implicit Differentiation*, NeurIPS 2022): ``torchopt.diff.implicit.custom_root`` with
    the optimality function F(x, theta) = T_theta(x) - x, whose root is x*, and our forward
    solve as the root solver. Backward: w solves (J - I)^T w = -v, grad = B^T w, with
    ``linear_solver`` ``"normal_cg"`` (torchopt's default: CG on the normal equations,
    ``rtol = adjoint_tol``), ``"inv"`` (dense) or ``"neumann"`` (``depth`` terms).

    T is called as a function of theta, so each parameter must be an attribute of the
    problem or a parameter of one of its ``torch.nn.Module`` attributes.
    """

    name = "torchopt_implicit"
    uses_depth = False

    def __init__(self, depth: int = 1, linear_solver: str = "normal_cg", **kwargs: Any) -> None:
        super().__init__(depth, **kwargs)
        self.linear_solver = check_choice(linear_solver, "linear_solver", TORCHOPT_LINEAR_SOLVERS)
        self.uses_depth = self.linear_solver == "neumann"
        self._torchopt = require("torchopt", self.name)

    def config(self) -> dict[str, Any]:
        return dict(depth=self.depth if self.uses_depth else None, linear_solver=self.linear_solver)

    def _linear_solve(self, tol: float) -> Callable[..., Any]:
        ls = self._torchopt.linear_solve
        if self.linear_solver == "normal_cg":
            return ls.solve_normal_cg(rtol=tol, maxiter=self.adjoint_max_iter)
        if self.linear_solver == "inv":
            return ls.solve_inv()
        # torchopt's matrix is A = (dF/dx)^T = J^T - I; with alpha = -1 its Neumann series
        # alpha sum_j (I - alpha A)^j is -sum_j (J^T)^j, ours; maxiter = k - 1 gives k terms
        return ls.solve_inv(ns=True, maxiter=self.depth - 1, alpha=-1.0)

    def _gradient(self, problem: Any, params: list[torch.Tensor], state: torch.Tensor | None) -> Estimate:
        op = ProductCountingOperator(problem)
        x0 = problem.initial_point().detach()
        base_solve = self._linear_solve(self.adjoint_tolerance(x0))
        forward: dict[str, Any] = {}
        materialised = 0

        def solve(matvec: Callable[[Any], Any], b: Any) -> Any:
            nonlocal materialised
            if self.linear_solver == "inv":
                # torchopt forms the n x n matrix by forward-mode products through matvec
                # (jacfwd, one call under vmap), which the taps pass on uncounted: n products with J^T
                materialised += sum(t.numel() for t in (b if isinstance(b, (tuple, list)) else (b,)))
            return base_solve(matvec, b)

        def optimality(x: torch.Tensor, theta: tuple[torch.Tensor, ...]) -> torch.Tensor:
            # through ``op``: torchopt re-evaluates F at the root twice in its backward (for the
            # VJPs in x and in theta); each evaluation is an application of T, each product a VJP
            with _parameters_replaced(problem, params, theta):
                return op(x) - x

        @self._torchopt.diff.implicit.custom_root(optimality, argnums=1, solve=solve)
        def root(x_init: torch.Tensor, theta: tuple[torch.Tensor, ...]) -> torch.Tensor:
            x, info = self.solve(op, x_init)
            forward.update(info)
            return x

        with warnings.catch_warnings():
            # torchopt 0.7 calls functorch.vjp, deprecated in favour of torch.func since PyTorch 2.0
            warnings.filterwarnings("ignore", message=".*functorch", category=FutureWarning)
            x = root(x0, tuple(params))
            loss = problem.loss(x)
            with _saved_tensor_hooks_suspended():
                grad = flat_grad(loss, params)
        stats = dict(
            operator_evals=op.evals,
            vjp_evals=op.vjp_evals + materialised,
            jvp_evals=op.jvp_evals,
            forward_iterations=forward["iterations"],
            forward_residual=forward["residual"],
            converged=bool(forward["converged"]),
            linear_solver=self.linear_solver,
        )
        return Estimate(grad=grad.detach(), x=x.detach(), state=None, stats=stats)


PEERS: dict[str, type[Estimator]] = {
    "torchdeq_ift": TorchDEQIFT,
    "torchdeq_phantom": TorchDEQPhantom,
    "torchopt_implicit": TorchoptImplicit,
}


def register_peers(register: Callable[[str], Callable[[Any], Any]]) -> list[str]:
    """Register the adapters whose peer library is installed; returns their names."""
    done = []
    for name, cls in PEERS.items():
        if available(PEER_LIBRARIES[name]):
            register(name)(cls)
            done.append(name)
    return done


__all__ = [
    "PEERS",
    "PEER_LIBRARIES",
    "TorchDEQIFT",
    "TorchDEQPhantom",
    "TorchoptImplicit",
    "available",
    "register_peers",
    "require",
]
