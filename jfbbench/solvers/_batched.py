"""Products of a batch of bases with a batch of vectors, one of each per sample, in the
batched-GEMM layout (``bmm``) that the histories and Krylov bases of the solvers share."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def _dots(Q: Tensor, w: Tensor) -> Tensor:
    """(S, k): <Q[s, j], w[s]> for each sample s (the batched-GEMM layout that is fast on
    CPU as on GPU; the gemv layout bmm(Q, w) is several times slower on CPU)."""
    return torch.bmm(w.unsqueeze(1), Q.transpose(1, 2)).squeeze(1)


def _comb(c: Tensor, Q: Tensor) -> Tensor:
    """(S, n): sum_j c[s, j] Q[s, j] for each sample s."""
    return torch.bmm(c.unsqueeze(1), Q).squeeze(1)
