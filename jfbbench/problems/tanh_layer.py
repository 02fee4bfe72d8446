"""The classic implicit layer x = tanh(W x + U z + b) with spectral normalisation."""

from __future__ import annotations

from typing import Any

import torch

from .base import Problem, check_positive_int


class TanhLayer(Problem):
    r"""T_theta(x) = tanh(x W^T + z U^T + b) on a batch of inputs z in R^{batch x d_in}.

    W = rho V / ||V||_2 (spectral normalisation), theta = (V, U, b). Since tanh is
    1-Lipschitz, T is a rho-contraction in x for every theta, and training never moves
    rho. The local constant ||J||_2 = ||diag(tanh') W||_2 at the equilibrium is below rho.
    The outer loss is L(x) = 1/2 ||x - x_target||^2.
    """

    name = "tanh_layer"

    def __init__(
        self,
        lipschitz: float = 0.9,
        dim: int = 16,
        input_dim: int = 8,
        batch: int = 4,
        seed: int = 0,
        dtype: Any = torch.float64,
        device: Any = "cpu",
    ) -> None:
        super().__init__(lipschitz, seed, dtype, device)
        dim = check_positive_int(dim, "dim")
        input_dim = check_positive_int(input_dim, "input_dim")
        batch = check_positive_int(batch, "batch")
        g = self.generator()
        self.V = self._param(torch.randn(dim, dim, generator=g, dtype=torch.float64))
        self.U = self._param(torch.randn(dim, input_dim, generator=g, dtype=torch.float64) / input_dim**0.5)
        self.b = self._param(0.1 * torch.randn(dim, generator=g, dtype=torch.float64))
        self.z = self._to(torch.randn(batch, input_dim, generator=g, dtype=torch.float64))
        self.target = self._to(0.5 * torch.randn(batch, dim, generator=g, dtype=torch.float64).tanh())
        self.x0 = self._to(torch.zeros(batch, dim))
        self.config = dict(dim=dim, input_dim=input_dim, batch=batch)

    def weight(self) -> torch.Tensor:
        return self.lipschitz * self.V / torch.linalg.matrix_norm(self.V, 2)

    def parameters(self) -> list[torch.Tensor]:
        return [self.V, self.U, self.b]

    def operator(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.weight().T + self.z @ self.U.T + self.b)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x - self.target).pow(2).sum()

    def initial_point(self) -> torch.Tensor:
        return self.x0.clone()
