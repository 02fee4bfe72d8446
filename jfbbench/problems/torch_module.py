"""A user's equilibrium layer as a problem: ``from_module(f, x_input, target)``.

The usual shape of a deep equilibrium model (TorchDEQ's, Bai et al.'s) is a module computing
z <- f(z, x): the state z, the input x, the weights of f. :func:`from_module` makes it a
jfbbench problem, so every estimator, sweep and check runs on it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from .._validation import check_lipschitz
from ..linalg import jacobian_spectral_norm
from ..solvers import fixed_point

Tensor = torch.Tensor


def half_squared_error(z: Tensor, target: Tensor) -> Tensor:
    """L(z) = 1/2 ||z - target||^2 (summed over every entry)."""
    return 0.5 * (z - target).pow(2).sum()


def estimate_lipschitz(operator: Callable[[Tensor], Tensor], x0: Tensor, iters: int = 100) -> tuple[float, str]:
    """||dT/dx||_2 by power iteration at an approximate fixed point (Anderson, 1000
    applications at most; at x0 if that solve does not converge). Returns (estimate, where)."""
    tol = 1e-8 if x0.dtype == torch.float64 else 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x_star, stats = fixed_point(operator, x0, tol, 1000, method="anderson")
    at, where = (x_star, "power iteration at x*") if stats["converged"] else (x0, "power iteration at x0")
    with torch.enable_grad():
        return jacobian_spectral_norm(operator, at, iters=iters), where


def check_batched(batched: Any, where: str) -> bool:
    if not isinstance(batched, bool):
        raise ValueError(f"{where}: batched must be True or False, got {batched!r}")
    return batched


class AdaptedProblem:
    """What the adapters share: theta, the loss against a target, the cold start, and the
    contraction factor -- declared (checked, ``contraction_guaranteed = True``) or estimated
    by power iteration (``contraction_guaranteed = False``, said in ``theory_note``), and
    the declaration ``batched`` (False unless the user says dimension 0 holds independent
    samples)."""

    name = "adapted"
    batched = False
    _params: list[Tensor]
    _x0: Tensor
    target: Tensor

    def _set_contraction(self, lipschitz: float | None, iters: int = 100) -> None:
        if lipschitz is None:
            self.lipschitz, self.lipschitz_source = estimate_lipschitz(self.operator, self._x0, iters)
            self.contraction_guaranteed = False
            self.theory_note = f"rho = {self.lipschitz:.4g} estimated by {self.lipschitz_source}, not declared"
        else:
            self.lipschitz = check_lipschitz(lipschitz)
            self.lipschitz_source = "declared"
            self.contraction_guaranteed = True

    def parameters(self) -> list[Tensor]:
        return list(self._params)

    def operator(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def loss(self, x: Tensor) -> Tensor:
        return self._loss(x, self.target)

    def initial_point(self) -> Tensor:
        return self._x0.clone()


class ModuleProblem(AdaptedProblem):
    r"""T_theta(z) = f(z, x) for a torch module ``f`` and a fixed input x; theta = the
    parameters of f that require a gradient; L(z) = ``loss(z, target)`` (default
    1/2 ||z - target||^2); cold start ``x0`` (default zeros shaped like ``target``).

    With ``lipschitz`` given, it is the declared contraction factor rho of f in z (the user
    vouches for it: ``contraction_guaranteed = True``, so the bounds are checked against it).
    Without, rho is estimated as ||J||_2 by power iteration at an approximate fixed point
    (``lipschitz_source`` says where) and ``contraction_guaranteed = False``: a local
    estimate is no global constant, so the problem is outside the theory's guarantees.

    ``batched=True`` declares that dimension 0 of z holds independent samples (row i of
    f(z, x) depends on z_i alone, as in a layer applied to a batch of inputs), so the solvers
    may stop each sample at its own tolerance. The default False solves z as one vector,
    which is right whatever f couples (rows mixed by a matrix product, a graph's nodes, a
    sequence's positions).
    """

    name = "from_module"

    def __init__(
        self,
        f: torch.nn.Module,
        x_input: Any,
        target: Tensor,
        loss: Callable[[Tensor, Tensor], Tensor] | None = None,
        lipschitz: float | None = None,
        x0: Tensor | None = None,
        lipschitz_iters: int = 100,
        batched: bool = False,
    ) -> None:
        if not isinstance(f, torch.nn.Module):
            raise TypeError(f"from_module: f must be a torch.nn.Module computing z <- f(z, x), got {type(f).__name__}")
        if not isinstance(target, torch.Tensor):
            raise TypeError(f"from_module: target must be a tensor, got {type(target).__name__}")
        if loss is not None and not callable(loss):
            raise TypeError(f"from_module: loss must be a function loss(z, target) -> scalar, got {loss!r}")
        self.batched = check_batched(batched, "from_module")
        self.module = f
        self.x_input = x_input.detach() if isinstance(x_input, torch.Tensor) else x_input
        self.target = target.detach()
        self._loss = loss or half_squared_error
        self._params = [p for p in f.parameters() if p.requires_grad]
        if not self._params:
            raise ValueError("from_module: f has no parameters with requires_grad=True (theta would be empty)")
        self.dtype, self.device = self.target.dtype, self.target.device
        self._x0 = torch.zeros_like(self.target) if x0 is None else x0.detach().to(self.dtype)
        try:
            with torch.no_grad():
                out = self.operator(self._x0)
        except Exception as exc:
            raise ValueError(
                f"from_module: f(z, x) failed at z = x0 of shape {tuple(self._x0.shape)} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None
        if not isinstance(out, torch.Tensor) or out.shape != self._x0.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"from_module: f(z, x) must return a tensor shaped like z {tuple(self._x0.shape)} "
                f"(the shape of x0, or of target without x0), got {got}"
            )
        self._set_contraction(lipschitz, lipschitz_iters)
        self.config = dict(
            module=type(f).__name__,
            state_shape=str(tuple(self._x0.shape)),
            n_params=sum(p.numel() for p in self._params),
            lipschitz_source=self.lipschitz_source,
            batched=self.batched,
        )

    def operator(self, z: Tensor) -> Tensor:
        return self.module(z, self.x_input)

    def __repr__(self) -> str:
        return f"from_module({type(self.module).__name__}, rho={self.lipschitz:.4g} {self.lipschitz_source})"


#: ``problems.from_module(f, x_input, target, loss=None, lipschitz=None, x0=None, batched=False)``:
#: a problem from a module computing z <- f(z, x) (see :class:`ModuleProblem`).
from_module = ModuleProblem
