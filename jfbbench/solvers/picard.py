"""Fixed-point (Picard) iteration, x <- f(x): the forward step every other method is measured
against (rate rho, the contraction of f)."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


class Picard:
    """x <- f(x)."""

    name = "picard"
    default_memory = 1
    workspace_bytes = 0

    def __init__(self, x: Tensor, memory: int, mix_every: int = 1) -> None:
        pass

    def step(self, x: Tensor, fx: Tensor) -> Tensor:
        return fx
