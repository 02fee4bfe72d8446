"""Reversible DEQ's round-off: reconstruction error of the cold start and gradient error against
backpropagation through the same N coupled steps (autograd, float64), over beta, N and dtype."""

from __future__ import annotations

import csv
import itertools
import sys

import torch

from jfbbench import estimators, problems

BETAS = (0.5, 0.8, 1.2, 1.5)
DEPTHS = (4, 16, 64, 256)
CASES = [("affine", 0.5), ("affine", 0.9), ("tanh_layer", 0.5), ("tanh_layer", 0.9)]
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def make(name: str, rho: float, dtype: torch.dtype):
    return problems.make(name, lipschitz=rho, dim=16, batch=2, seed=0, dtype=dtype)


def bptt(problem, depth: int, beta: float) -> torch.Tensor:
    """Autograd through the N coupled steps: the exact gradient revdeq reproduces."""
    params = list(problem.parameters())
    y = z = problem.initial_point().detach()
    for _ in range(depth):
        y = (1 - beta) * y + beta * problem.operator(z)
        z = (1 - beta) * z + beta * problem.operator(y)
    grads = torch.autograd.grad(problem.loss(z), params, allow_unused=True)
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params, strict=True)]
    )


def main(out: str) -> None:
    fields = ["problem", "lipschitz", "dtype", "beta", "depth", "reconstruction_error", "reconstruction_error_y",
              "reconstruction_ok", "grad_rel_error", "bptt_rel_error", "ref_grad_norm"]  # fmt: skip
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fields)
        writer.writeheader()
        for (name, rho), beta, depth in itertools.product(CASES, BETAS, DEPTHS):
            exact = bptt(make(name, rho, torch.float64), depth, beta)
            norm = float(torch.linalg.vector_norm(exact))
            for label, dtype in DTYPES.items():
                p = make(name, rho, dtype)
                est = estimators.make("revdeq", depth=depth, beta=beta).gradient(p)
                err = float(torch.linalg.vector_norm(est.grad.double() - exact)) / norm
                bp = float(torch.linalg.vector_norm(bptt(p, depth, beta).double() - exact)) / norm
                writer.writerow(dict(problem=name, lipschitz=rho, dtype=label, beta=beta, depth=depth,
                                     reconstruction_error=est.stats["reconstruction_error"],
                                     reconstruction_error_y=est.stats["reconstruction_error_y"],
                                     reconstruction_ok=est.stats["reconstruction_ok"], grad_rel_error=err,
                                     bptt_rel_error=bp, ref_grad_norm=norm))  # fmt: skip
                fh.flush()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/revdeq/stability.csv")
