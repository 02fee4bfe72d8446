"""Deblurring with a learned weighted total variation (or weighted Haar-wavelet l1 norm),
solved by forward-backward iterations whose contraction factor is known."""

from __future__ import annotations

from typing import Any

import torch

from .imaging import ImagingProblem, _check_range

WEIGHTS = ("scalar", "per_direction", "per_pixel")


def grad2d(x: torch.Tensor) -> torch.Tensor:
    """Periodic forward differences D x, shape (B, 2, H, W): horizontal then vertical."""
    return torch.cat([x.roll(-1, -1) - x, x.roll(-1, -2) - x], dim=1)


def grad2d_adjoint(u: torch.Tensor) -> torch.Tensor:
    """D^T u for u of shape (B, 2, H, W)."""
    return (u[:, :1].roll(1, -1) - u[:, :1]) + (u[:, 1:].roll(1, -2) - u[:, 1:])


def haar(x: torch.Tensor) -> torch.Tensor:
    """One level of the orthonormal 2-D Haar transform on 2x2 blocks: (B, 4, H/2, W/2),
    bands LL, LH, HL, HH."""
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return 0.5 * torch.cat([a + b + c + d, a - b + c - d, a + b - c - d, a - b - c + d], dim=1)


def haar_adjoint(u: torch.Tensor) -> torch.Tensor:
    """The inverse (= adjoint) of :func:`haar`."""
    ll, lh, hl, hh = u[:, 0:1], u[:, 1:2], u[:, 2:3], u[:, 3:4]
    b, _, h, w = ll.shape
    x = u.new_empty(b, 1, 2 * h, 2 * w)
    x[..., 0::2, 0::2] = 0.5 * (ll + lh + hl + hh)
    x[..., 0::2, 1::2] = 0.5 * (ll - lh + hl - hh)
    x[..., 1::2, 0::2] = 0.5 * (ll + lh - hl - hh)
    x[..., 1::2, 1::2] = 0.5 * (ll - lh - hl + hh)
    return x


class WeightedTV(ImagingProblem):
    r"""Forward-backward iterations for a learned weighted sparsity prior on deblurring.

    **Smoothed** (``smoothing`` = eps > 0): gradient steps on the strongly convex, smooth

        f(x) = 1/2 ||A x - y||^2 + mu/2 ||x - m||^2 + sum_{d, i} w_{d,i} phi_eps((D_d x)_i),
        phi_eps(t) = sqrt(t^2 + eps^2) - eps,

    with D the periodic discrete gradient (d: horizontal, vertical) and m the per-image mean
    of y (a flat image, so that the strongly convex term does not darken the result):
    T_theta(x) = x - tau grad f(x). f is mu-strongly convex and L-smooth with
    L = ||A||^2 + mu + 4 (max w_h + max w_v) / eps, so T is a contraction with factor
    rho = max(abs(1 - tau mu), abs(1 - tau L)) = 1 - tau mu for tau = s 2 / (L + mu), s in (0, 1]
    (``step``). tau is re-derived from the current weights at every call, so rho stays below
    one while w is learned; the fixed point does not depend on tau.

    **Non-smooth** (``smoothing=0``): the weighted l1 norm of the detail coefficients of a
    one-level orthonormal Haar transform H (exact proximal operator, soft thresholding),

        T_theta(x) = H^T soft(H (x - tau grad h(x)), tau w),  h(x) = 1/2 ||A x - y||^2 + mu/2 ||x - m||^2,

    tau = s 2 / (||A||^2 + 2 mu): a contraction (a nonexpansive prox after a gradient step
    of factor 1 - tau mu) but not differentiable everywhere, which leaves the smooth theory
    (the bound B4 of docs/theory.md assumes T twice differentiable). No closed-form prox exists for the
    weighted TV itself, which is why the non-smooth variant uses the Haar transform.

    theta = log w: one scalar (``weights="scalar"``), one per direction (2 for TV; 3 Haar
    detail bands) or one per direction and pixel position (``"per_pixel"``). ``weight`` is
    the initial w. ``lipschitz``, when given, sets mu so that rho equals it at creation
    (with ``step=1``); otherwise ``mu`` is used and rho is reported in ``self.lipschitz``.
    :meth:`current_lipschitz` gives rho at the current weights.
    """

    name = "weighted_tv"

    def __init__(
        self,
        lipschitz: float | None = None,
        mu: float = 0.05,
        smoothing: float = 0.05,
        weights: str = "per_direction",
        weight: float = 0.02,
        step: float = 1.0,
        seed: int = 0,
        dtype: Any = torch.float32,
        device: Any = "cpu",
        **imaging: Any,
    ) -> None:
        super().__init__(0.5 if lipschitz is None else lipschitz, seed=seed, dtype=dtype, device=device, **imaging)
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {', '.join(map(repr, WEIGHTS))}; got {weights!r}")
        self.eps = _check_range(smoothing, "smoothing", 0.0, 10.0, lo_open=False)
        #: the non-smooth variant (soft thresholding) is not differentiable everywhere: the
        #: bound checks report it as outside the smooth theory
        self.differentiable = self.eps > 0
        weight = _check_range(weight, "weight", 0.0, 10.0)
        self.step_fraction = _check_range(step, "step", 0.0, 1.0, hi_open=False)
        patch = self.config["patch"]
        if self.eps == 0 and patch % 2:
            raise ValueError(f"the non-smooth (Haar) variant needs an even patch size, got patch={patch}")
        n_dir = 2 if self.eps > 0 else 3
        side = patch if self.eps > 0 else patch // 2
        shape = {"scalar": (1, 1, 1), "per_direction": (n_dir, 1, 1), "per_pixel": (n_dir, side, side)}[weights]
        self.theta = self._param(torch.full(shape, float(torch.log(torch.tensor(weight)))))
        if lipschitz is not None:
            rho = self.lipschitz
            l0 = float(self._smooth_constant().detach())  # L without the mu term
            mu = l0 * (1 - rho) / (2 * rho)  # (L - mu) / (L + mu) = rho with L = l0 + mu
        self.mu = _check_range(mu, "mu", 0.0, 1e3)
        self.lipschitz = self.current_lipschitz()
        with torch.no_grad():
            self._means = {s: y.mean(dim=(1, 2, 3), keepdim=True) for s, (_, y) in self._data.items()}
        self.config.update(
            mu=self.mu, smoothing=self.eps, weights=weights, weight=weight, step=self.step_fraction,
            rho=self.lipschitz,
        )  # fmt: skip
        self.select("train")

    def select(self, split: str, indices: Any = None) -> None:
        super().select(split, indices)
        if hasattr(self, "_means"):
            self.mean = self._means[split][self.indices]

    def weights(self) -> torch.Tensor:
        return self.theta.exp()

    def _smooth_constant(self) -> torch.Tensor:
        """The smoothness constant of f without mu: ||A||^2 + 4 (max w_h + max w_v) / eps
        (||A||^2 alone in the non-smooth variant)."""
        if self.eps == 0:
            return torch.as_tensor(self.a_norm2, dtype=self.dtype)
        w = self.weights()
        per_dir = w.amax(dim=(1, 2)) if w.shape[0] == 2 else w.reshape(-1).amax().expand(2)
        return self.a_norm2 + 4.0 * per_dir.sum() / self.eps

    def step(self) -> torch.Tensor:
        """tau(theta) = s 2 / (L + mu), differentiable in theta."""
        return self.step_fraction * 2.0 / (self._smooth_constant() + 2 * self.mu)

    def current_lipschitz(self) -> float:
        """rho = 1 - tau mu at the current weights (the bound is exact for the smooth f)."""
        return float((1.0 - self.step() * self.mu).detach())

    def parameters(self) -> list[torch.Tensor]:
        return [self.theta]

    def operator(self, x: torch.Tensor) -> torch.Tensor:
        tau = self.step()
        w = self.weights()
        grad_h = self.data_gradient(x) + self.mu * (x - self.mean)
        if self.eps > 0:
            dx = grad2d(x)
            grad_tv = grad2d_adjoint(w * dx / torch.sqrt(dx * dx + self.eps**2))
            return x - tau * (grad_h + grad_tv)
        z = haar(x - tau * grad_h)
        detail = z[:, 1:]
        thr = tau * w
        detail = torch.sign(detail) * torch.relu(detail.abs() - thr)
        return haar_adjoint(torch.cat([z[:, :1], detail], dim=1))
