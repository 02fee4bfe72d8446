"""Counting the derivative products taken through T's graph, wherever they are taken.

A peer library takes its products inside its own code (TorchDEQ in a backward hook, torchopt
in the matvec of a linear solver and in the transposes it derives from it, DeepInverse in a
backward fixed-point solve), so counting the calls of one entry point misses some. Instead,
:class:`ProductCountingOperator` puts a tap on every output of T computed with autograd on:
an identity whose backward counts one product with the transposed Jacobian (a VJP through
T: J^T w and B^T w together when autograd asks for both) and returns the incoming vector
through a second identity, whose backward, taken when something differentiates that VJP in
turn (torchopt's normal equations do), counts one product with J itself. Both identities
work under ``torch.func`` transforms (``setup_context``, ``jvp``, generated vmap rule).

What it does not see: forward-mode products (``torch.func.jvp``, ``jacfwd``) through the taps
are passed on uncounted, because under ``vmap`` one call carries a whole batch of tangents;
an adapter whose peer materialises a Jacobian that way counts those products itself.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import CountingOperator

Tensor = torch.Tensor


class _CountingIdentity(torch.autograd.Function):
    """An identity that carries a counter to its backward. It returns a view of its input, not
    a copy: no allocation, and a tensor that autograd saves through it is the same storage as
    before, so the measured memory (saved bytes, allocator peak) is not changed by counting."""

    generate_vmap_rule = True

    @staticmethod
    def forward(y: Tensor, counter: Any) -> Tensor:
        return y.view_as(y)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.counter = inputs[1]

    @staticmethod
    def jvp(ctx: Any, tangent: Tensor, _: Any) -> Tensor:
        return tangent


class _JacobianProduct(_CountingIdentity):
    """Identity on a VJP's output; its backward is a product with J (counted)."""

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        ctx.counter.jvp_evals += 1
        return grad, None


class _TransposeProduct(_CountingIdentity):
    """Identity on an output of T; its backward is a product with J^T (counted), returned
    through :class:`_JacobianProduct` so that differentiating it again is counted too."""

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        ctx.counter.vjp_evals += 1
        return _JacobianProduct.apply(grad, ctx.counter), None


class ProductCountingOperator(CountingOperator):
    """Wraps ``problem.operator``: counts its evaluations (``evals``) and, through a tap on
    each output computed with autograd on, the products taken through its graph afterwards:
    ``vjp_evals`` (with J^T and B^T: a backward pass through T) and ``jvp_evals`` (with J: a
    backward pass through such a VJP). Their sum is the number of derivative products done."""

    def __init__(self, problem: Any) -> None:
        super().__init__(problem)
        self.vjp_evals = 0
        self.jvp_evals = 0

    def __call__(self, x: Tensor) -> Tensor:
        return self.tap(super().__call__(x))

    def tap(self, y: Tensor) -> Tensor:
        """``y`` (an output of T) with the counting identity on it when autograd records."""
        if not torch.is_grad_enabled():
            return y
        return _TransposeProduct.apply(y, self)

    def products(self) -> dict[str, int]:
        return dict(vjp_evals=self.vjp_evals, jvp_evals=self.jvp_evals)
