"""The validation's dense reference is the total derivative: with a trained read-out head in
theta, B^T (I - J^T)^{-1} v alone misses dL/dtheta, and every bound would be checked against a
gradient that no estimator computes."""

import torch

from jfbbench import estimators, problems
from jfbbench.theory.equilibrium import find_equilibrium


def test_dense_reference_includes_the_heads_gradient() -> None:
    problem = problems.make("ignn", lipschitz=0.9, hidden=4, chain_length=4, n_chains=2)
    eq = find_equilibrium(problem)
    assert eq.dense
    deq = estimators.make("deq", tol=1e-13, adjoint="gmres").gradient(problem).grad
    torch.testing.assert_close(eq.grad, deq, rtol=1e-8, atol=1e-10)
    n_head = sum(p.numel() for p in problem.head_parameters())
    assert float(eq.grad[-n_head:].norm()) > 1e-3  # the head's gradient is there, and not zero
