"""Plug-and-Play forward-backward with a denoiser: learn the step size and the level
(``pnp_fb``), or the denoiser's weights (``drunet_fb``)."""

from __future__ import annotations

import math
from typing import Any

import torch

from .denoisers import make_drunet
from .imaging import ImagingProblem, _check_range


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class DenoiserFB(ImagingProblem):
    r"""T(x) = D(x - tau A^T (A x - y), sigma) with D a DeepInverse DRUNet (grey, with a
    noise-level map), pre-trained briefly by the suite (:mod:`jfbbench.problems.denoisers`).

    The contraction factor is *not* guaranteed (``contraction_guaranteed = False``):
    ``self.lipschitz`` is an estimate of ||dT/dx||_2 by power iteration at the cold start
    (``lipschitz_iters`` iterations; 0 skips it and reports NaN), and
    :meth:`estimate_lipschitz` gives it at any point (e.g. the equilibrium).
    """

    contraction_guaranteed = False

    def __init__(
        self,
        nc: tuple[int, ...] = (8, 16, 32, 64),
        nb: int = 1,
        init: str = "suite",
        pretrain_steps: int = 1000,
        pretrain_lr: float = 1e-3,
        pretrain_patch: int = 32,
        sigma_max: float = 0.1,
        lipschitz_iters: int = 15,
        seed: int = 0,
        dtype: Any = torch.float32,
        device: Any = "cpu",
        **imaging: Any,
    ) -> None:
        super().__init__(0.5, seed=seed, dtype=dtype, device=device, **imaging)
        self.sigma_max = _check_range(sigma_max, "sigma_max", 0.0, 1.0, hi_open=False)
        self.tau_max = 2.0 / self.a_norm2
        with torch.random.fork_rng(devices=[]):  # a random init is a function of the seed
            torch.manual_seed(seed)
            self.denoiser = make_drunet(
                nc, nb, init, steps=pretrain_steps, sigma_max=self.sigma_max, lr=pretrain_lr, patch=pretrain_patch
            )
        self.denoiser.to(device=self.device, dtype=self.dtype).eval()
        self.lipschitz_iters = int(lipschitz_iters)
        self.config.update(nc=str(tuple(nc)), nb=nb, init=init, pretrain_steps=pretrain_steps, sigma_max=sigma_max)
        if (pretrain_lr, pretrain_patch) != (1e-3, 32):
            self.config.update(pretrain_lr=pretrain_lr, pretrain_patch=pretrain_patch)

    def tau(self) -> torch.Tensor:
        raise NotImplementedError

    def sigma(self) -> torch.Tensor:
        raise NotImplementedError

    def operator(self, x: torch.Tensor) -> torch.Tensor:
        z = x - self.tau() * self.data_gradient(x)
        return self.denoiser(z, self.sigma().reshape(1).expand(x.shape[0]))

    def _report_lipschitz(self) -> None:
        self.lipschitz = self.estimate_lipschitz(iters=self.lipschitz_iters) if self.lipschitz_iters > 0 else math.nan
        self.config["rho_estimate"] = self.lipschitz


class PnPFB(DenoiserFB):
    r"""Plug-and-Play forward-backward, learning the step size tau and the level sigma:

        T_theta(x) = D_sigma(x - tau A^T (A x - y)),  theta = (a, b),
        tau = tau_max sigmoid(a),  sigma = sigma_max sigmoid(b),

    tau_max = 2 / ||A||^2 (the gradient step's valid range) and sigma_max the largest level
    the denoiser was trained for, so both stay in range while learned. ``tau`` and ``sigma``
    are the initial values (a value outside (0, tau_max) or (0, sigma_max) is refused). The
    denoiser (a small DRUNet pre-trained by the suite) is frozen. rho is estimated
    (power iteration), not guaranteed.
    """

    name = "pnp_fb"

    def __init__(self, tau: float = 1.0, sigma: float = 0.03, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        tau = _check_range(tau, "tau", 0.0, self.tau_max)
        sigma = _check_range(sigma, "sigma", 0.0, self.sigma_max)
        for p in self.denoiser.parameters():
            p.requires_grad_(False)
        self.a = self._param(torch.tensor([_logit(tau / self.tau_max)]))
        self.b = self._param(torch.tensor([_logit(sigma / self.sigma_max)]))
        self.config.update(tau=tau, sigma=sigma)
        self._report_lipschitz()

    def tau(self) -> torch.Tensor:
        return self.tau_max * torch.sigmoid(self.a)

    def sigma(self) -> torch.Tensor:
        return self.sigma_max * torch.sigmoid(self.b)

    def parameters(self) -> list[torch.Tensor]:
        return [self.a, self.b]


class DRUNetFB(DenoiserFB):
    r"""Forward-backward with a learned DRUNet in place of the proximal operator:

        T_theta(x) = N_theta(x - tau A^T (A x - y), sigma),

    theta = all weights of the DRUNet N (DeepInverse's architecture, small channel counts
    ``nc`` and ``nb`` blocks so it trains on a CPU), initialised by the suite's brief
    pre-training (``init="suite"``), at random, or from the published weights
    (``init="download"``, internet needed). tau in (0, 2/||A||^2) and sigma in
    (0, sigma_max] are fixed. Nothing bounds the Lipschitz constant of N: rho is estimated
    by power iteration and may exceed one (then the iteration can diverge; training records
    it).
    """

    name = "drunet_fb"

    def __init__(self, tau: float = 1.0, sigma: float = 0.03, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tau = torch.tensor(_check_range(tau, "tau", 0.0, self.tau_max), dtype=self.dtype, device=self.device)
        sigma = _check_range(sigma, "sigma", 0.0, self.sigma_max, hi_open=False)
        self._sigma = torch.tensor(sigma, dtype=self.dtype, device=self.device)
        self.config.update(tau=tau, sigma=sigma)
        for p in self.denoiser.parameters():
            p.requires_grad_(True)
        self._report_lipschitz()

    def tau(self) -> torch.Tensor:
        return self._tau

    def sigma(self) -> torch.Tensor:
        return self._sigma

    def parameters(self) -> list[torch.Tensor]:
        return list(self.denoiser.parameters())
