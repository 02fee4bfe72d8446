"""Affine fixed-point maps with an exactly controlled spectral norm."""

from __future__ import annotations

from typing import Any

import torch

from .._validation import check_choice, check_positive_int
from .base import VectorBatch, orthogonal

SPECTRA = ("symmetric", "orthogonal", "nonnormal")


class Affine(VectorBatch):
    r"""T_theta(x) = W x + U theta + b on a batch of vectors x in R^{batch x dim}.

    ``||W||_2 = rho`` exactly; ``spectrum`` chooses the shape of W:

    - ``symmetric``: W = Q diag(lambda) Q^T with eigenvalues spread evenly in [-rho, rho];
      the spectral radius equals rho.
    - ``orthogonal``: W = rho Q with Q orthogonal, so ||W^k|| = rho^k exactly.
    - ``nonnormal``: a strongly upper-triangular Gaussian matrix scaled to norm rho. A
      deliberately *loose* setting: ||W||_2 = rho but its spectral radius is far below it
      (about 0.04-0.07 for rho in [0.5, 0.99]), so errors follow a non-normal transient and
      then decay fast; sweep rows report both in ``rho_loc`` and ``spectral_radius``.

    The default (``symmetric``) and ``orthogonal`` are tight: ||J||_2 = spectral radius = rho.

    theta in R^p is the only parameter, so B = dT/dtheta = U (for each batch row) and
    J = dT/dx = W. The outer loss is L(x) = 1/2 ||x - x_target||^2.

    The rows of x are independent samples (``batched``): T maps each row by itself.
    """

    name = "affine"

    def __init__(
        self,
        lipschitz: float = 0.9,
        dim: int = 20,
        n_params: int = 5,
        batch: int = 2,
        spectrum: str = "symmetric",
        seed: int = 0,
        dtype: Any = torch.float64,
        device: Any = "cpu",
    ) -> None:
        super().__init__(lipschitz, seed, dtype, device, dim=dim, batch=batch)
        n_params = check_positive_int(n_params, "n_params")
        spectrum = check_choice(spectrum, "spectrum", SPECTRA)
        g = self.generator()
        rho = self.lipschitz
        if spectrum == "symmetric":
            q = orthogonal(self.dim, g)
            eig = (
                torch.linspace(-rho, rho, self.dim, dtype=torch.float64)
                if self.dim > 1
                else torch.tensor([rho], dtype=torch.float64)
            )
            w = q @ torch.diag(eig) @ q.T
        elif spectrum == "orthogonal":
            w = rho * orthogonal(self.dim, g)
        else:
            m = torch.randn(self.dim, self.dim, generator=g, dtype=torch.float64)
            m = torch.triu(m, diagonal=1) * 2.0 + torch.diag(torch.rand(self.dim, generator=g, dtype=torch.float64))
            w = rho * m / torch.linalg.matrix_norm(m, 2)
        self.W = self._to(w)
        self.U = self._to(torch.randn(self.dim, n_params, generator=g, dtype=torch.float64) / n_params**0.5)
        self.b = self._to(torch.randn(self.batch, self.dim, generator=g, dtype=torch.float64))
        self.target = self._to(torch.randn(self.batch, self.dim, generator=g, dtype=torch.float64))
        self.theta = self._param(torch.randn(n_params, generator=g, dtype=torch.float64))
        self.config = dict(dim=self.dim, n_params=n_params, batch=self.batch, spectrum=spectrum)

    def parameters(self) -> list[torch.Tensor]:
        return [self.theta]

    def operator(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W.T + self.U @ self.theta + self.b
