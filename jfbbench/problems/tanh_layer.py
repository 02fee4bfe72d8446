"""The classic implicit layer x = tanh(W x + U z + b) with spectral normalisation."""

from __future__ import annotations

import math
from typing import Any

import torch

from .._validation import check_choice, check_positive_int
from .base import VectorBatch, orthogonal

WEIGHTS = ("near_orthogonal", "normalised")


def _check_preactivation(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not 0.0 < v <= 10.0:
        raise ValueError(f"preactivation must be a number in (0, 10] or None, got {value!r}")
    return v


class TanhLayer(VectorBatch):
    r"""T_theta(x) = tanh(x W^T + z U^T + b) on a batch of inputs z in R^{batch x d_in}.

    W = rho V / ||V||_2 (spectral normalisation), theta = (V, U, b). Since tanh is
    1-Lipschitz, T is a rho-contraction in x for every theta, and training never moves
    rho. The Jacobian at the equilibrium is J = diag(tanh'(a)) W (one block per sample),
    a = x* W^T + z U^T + b the pre-activations. The outer loss is L(x) = 1/2 ||x - x_target||^2.

    **Tight by default.** ``weight="near_orthogonal"`` starts from V = Q diag(1, 0.95 ... 0.9)
    with Q orthogonal (a simple largest singular value keeps ||V||_2 differentiable, which
    an exactly orthogonal V would not), so W = rho V and every singular value of W lies in
    [0.9 rho, rho]. ``preactivation`` = p (default 0.3) scales U and b at creation so that
    every sample's input c = U z + b has ||c||_2 <= (1 - rho) p, which keeps
    ||a||_2 <= ||c||_2 / (1 - rho) <= p at the equilibrium (abs(tanh t) <= abs(t)), hence every
    s_i = tanh'(a_i) >= 1 - tanh(p)^2 (0.915 at p = 0.3). Then ||J||_2 >= 0.915 rho and,
    since every eigenvalue of diag(s) W has modulus >= its smallest singular value, the
    spectral radius of J is >= 0.915 * 0.9 rho = 0.82 rho: the declared rho is the
    contraction present (docs/theory.md, "Reading rho").

    **Loose settings.** ``weight="normalised"`` (a Gaussian V, spectrally normalised) and
    ``preactivation=None`` (inputs left at unit scale, so tanh saturates) give a local
    constant and a radius well below rho (about 0.88 rho and 0.48 rho at rho = 0.99 with
    both); sweep rows report them in ``rho_loc`` and ``spectral_radius``.

    W is normalised once per value of V: the norm (an SVD) is cached with the value of V it was
    made from, so the K applications of T in one gradient call (or in a whole training run
    between two updates of V) share one W, and autograd saves the layer's own activations per
    step, not an SVD each.
    """

    name = "tanh_layer"

    def __init__(
        self,
        lipschitz: float = 0.9,
        dim: int = 16,
        input_dim: int = 8,
        batch: int = 4,
        weight: str = "near_orthogonal",
        preactivation: float | None = 0.3,
        seed: int = 0,
        dtype: Any = torch.float64,
        device: Any = "cpu",
    ) -> None:
        super().__init__(lipschitz, seed, dtype, device, dim=dim, batch=batch)
        input_dim = check_positive_int(input_dim, "input_dim")
        weight = check_choice(weight, "weight", WEIGHTS)
        preactivation = _check_preactivation(preactivation)
        g = self.generator()
        v = torch.randn(self.dim, self.dim, generator=g, dtype=torch.float64)
        u = torch.randn(self.dim, input_dim, generator=g, dtype=torch.float64) / input_dim**0.5
        b = 0.1 * torch.randn(self.dim, generator=g, dtype=torch.float64)
        z = torch.randn(self.batch, input_dim, generator=g, dtype=torch.float64)
        target = 0.5 * torch.randn(self.batch, self.dim, generator=g, dtype=torch.float64).tanh()
        if weight == "near_orthogonal":
            # singular values 1, then 0.95 ... 0.9: the top one is simple (||V||_2 is
            # differentiable in V) and the others are close to it (J's eigenvalues near rho)
            sigma = torch.cat(
                [torch.ones(1, dtype=torch.float64), torch.linspace(0.95, 0.9, self.dim - 1, dtype=torch.float64)]
            )
            v = orthogonal(self.dim, g) * sigma[: self.dim]
        if preactivation is not None:
            c_norm = float(torch.linalg.vector_norm(z @ u.T + b, dim=1).max())
            scale = (1.0 - self.lipschitz) * preactivation / max(c_norm, 1e-300)
            u, b = u * scale, b * scale
        self.V = self._param(v)
        self.U = self._param(u)
        self.b = self._param(b)
        self.z = self._to(z)
        self.target = self._to(target)
        #: (V, a copy of the value W was made from, W)
        self._weight_cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.config = dict(
            dim=self.dim, input_dim=input_dim, batch=self.batch, weight=weight, preactivation=preactivation
        )

    def weight(self) -> torch.Tensor:
        """W = rho V / ||V||_2, computed once per value of V and reused: the cache holds V (the
        object) and a copy of its value and compares them (d^2 numbers, far cheaper than the
        SVD), so any change of V, ``.data`` writes included, gives a new W.

        The cached W always carries a graph to V, built by :class:`_Normalised`, which saves
        nothing through autograd's saved-tensor mechanism (it recomputes the norm in its
        backward). Its graph therefore survives any number of backward passes, every step of an
        unrolled or checkpointed iteration shares it, and ``torch.utils.checkpoint``'s
        recomputation, which reuses it, saves the same tensors as the original forward. Inside
        ``torch.func`` transforms W is always rebuilt (a tensor must not leave its transform).
        """
        if torch._C._functorch.maybe_current_level() is not None:
            return self._normalised()
        cache = self._weight_cache
        v = self.V.detach()
        if (
            cache is not None
            and cache[0] is self.V
            and cache[1].shape == v.shape
            and cache[1].dtype == v.dtype
            and torch.equal(cache[1], v)
        ):
            return cache[2]
        with torch.enable_grad():
            w = _Normalised.apply(self.V, self.lipschitz)
        self._weight_cache = (self.V, v.clone(), w)
        return w

    def _normalised(self) -> torch.Tensor:
        return self.V * (self.lipschitz / torch.linalg.matrix_norm(self.V, 2))

    def parameters(self) -> list[torch.Tensor]:
        return [self.V, self.U, self.b]

    def operator(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.weight().T + self.z @ self.U.T + self.b)


class _Normalised(torch.autograd.Function):
    """W = rho V / ||V||_2 with a backward that needs nothing from autograd's saved-tensor
    mechanism: the node holds V, sigma = ||V||_2 and its top singular vectors (a, c) as plain
    attributes, so it can be back-propagated any number of times and is invisible to
    ``torch.utils.checkpoint``. A first-order backward is the closed form

        dL/dV = (rho / sigma) (G - <G, V> / sigma a c^T),   G = dL/dW,

    d^2 numbers, so that an estimator taking one vector-Jacobian product per step (reversible
    DEQ, the adjoint solvers) pays no SVD per product; with ``create_graph`` the norm is
    recomputed with its graph, so higher derivatives are exact too."""

    @staticmethod
    def forward(ctx: Any, v: torch.Tensor, rho: float) -> torch.Tensor:
        a, s, ch = torch.linalg.svd(v)
        ctx.v, ctx.rho, ctx.sigma, ctx.a, ctx.c = v, rho, s[0], a[:, 0], ch[0]
        return v * (rho / s[0])

    @staticmethod
    def backward(ctx: Any, grad_w: torch.Tensor) -> tuple[torch.Tensor, None]:
        if not torch.is_grad_enabled():
            along = torch.sum(grad_w * ctx.v) / ctx.sigma
            return (grad_w - torch.outer(ctx.a, ctx.c * along)).mul_(ctx.rho / ctx.sigma), None
        with torch.enable_grad():
            w = ctx.v * (ctx.rho / torch.linalg.matrix_norm(ctx.v, 2))
            (grad_v,) = torch.autograd.grad(w, ctx.v, grad_w, create_graph=True)
        return grad_v, None
