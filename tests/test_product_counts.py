"""Every derivative product an estimator takes is counted: ``operator_evals``, ``vjp_evals`` and
``jvp_evals`` equal what a problem that counts its own evaluations and autograd passes saw."""

import pytest
import torch

from jfbbench import estimators, problems
from jfbbench.estimators import deepinv_peers
from jfbbench.measure import saved_tensor_bytes

F64 = torch.float64


class Counts:
    """What the operator saw (an object, not a dict: torch.func would copy a dict argument)."""

    def __init__(self) -> None:
        self.T = self.JT = self.J = 0


class _Transposed(torch.autograd.Function):
    """w -> W^T w (the VJP of T in x); its backward, a product with W = J, is counted."""

    generate_vmap_rule = True

    @staticmethod
    def forward(w, weight, counts):
        return w @ weight

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.weight, ctx.counts = inputs[1], inputs[2]

    @staticmethod
    def backward(ctx, h):
        ctx.counts.J += 1
        return h @ ctx.weight.T, None, None

    @staticmethod
    def jvp(ctx, w_t, *_):
        return w_t @ ctx.weight


class _Affine(torch.autograd.Function):
    """T(x) = W x + b, counting its evaluations; its backward (J^T and B^T together) is counted."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, bias, weight, counts):
        counts.T += 1
        return x @ weight.T + bias

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.weight, ctx.counts = inputs[2], inputs[3]

    @staticmethod
    def backward(ctx, g):
        ctx.counts.JT += 1
        return _Transposed.apply(g, ctx.weight, ctx.counts), g, None, None

    @staticmethod
    def jvp(ctx, x_t, b_t, *_):
        return x_t @ ctx.weight.T + b_t


class CountingAffine:
    """T(x) = W x + b on R^n, ||W||_2 = rho, theta = b, L(x) = 1/2 ||x - y||^2; ``counts`` holds
    the applications of T ("T"), the backward passes through it ("JT") and through those
    ("J"), seen from inside the operator."""

    batched = False

    def __init__(self, n: int = 6, rho: float = 0.8, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(n, n, generator=g, dtype=F64)
        self.weight = rho * w / torch.linalg.matrix_norm(w, 2)
        self.b = torch.randn(n, generator=g, dtype=F64).requires_grad_(True)
        self.y = torch.randn(n, generator=g, dtype=F64)
        self.lipschitz = rho
        self.n = n
        self.counts = Counts()

    def parameters(self):
        return [self.b]

    def operator(self, x):
        return _Affine.apply(x, self.b, self.weight, self.counts)

    def loss(self, x):
        return 0.5 * (x - self.y).pow(2).sum()

    def initial_point(self):
        return torch.zeros(self.n, dtype=F64)


CASES = [
    ("torchopt_implicit", dict()),  # torchopt's default: CG on the normal equations (J products)
    ("torchopt_implicit", dict(linear_solver="neumann", depth=6)),
    ("torchdeq_ift", dict()),
    ("torchdeq_phantom", dict(depth=5, damping=0.5)),
    ("deq", dict()),
    ("deq", dict(adjoint="gmres")),
    ("deq", dict(adjoint="cg_normal")),  # CG on the normal equations: a product with J per step
    ("jfb", dict(depth=4)),
    ("neumann", dict(depth=4)),
    ("phantom", dict(depth=3, damping=0.7)),
    ("unrolled", dict(depth=7)),
    ("restarted_jfb", dict(depth=2, extra_steps=3)),
]


@pytest.mark.parametrize("name, config", CASES, ids=lambda v: str(v))
def test_counts_are_the_products_done(name, config):
    if name not in estimators.names():
        pytest.skip(f"{name} is not registered (its peer library is not installed: pip install 'jfbbench[peers]')")
    p = CountingAffine()
    e = estimators.make(name, **config).gradient(p)
    done = p.counts
    assert e.stats["operator_evals"] == done.T
    assert e.stats["vjp_evals"] == done.JT
    assert e.stats.get("jvp_evals", 0) == done.J
    assert done.JT >= 1


def test_torchopt_normal_equations_take_as_many_products_with_j_as_with_j_transposed():
    """CG on A^T A w = A^T b, A = J^T - I: A^T b once, then A^T A p per step (and at the start):
    one product with J per product with J^T, plus the final B^T."""
    if "torchopt_implicit" not in estimators.names():
        pytest.skip("torchopt is not installed (pip install 'jfbbench[peers]')")
    p = CountingAffine(rho=0.9)
    e = estimators.make("torchopt_implicit").gradient(p)
    assert e.stats["jvp_evals"] >= 3 and e.stats["vjp_evals"] == e.stats["jvp_evals"] + 1


def test_torchopt_dense_solve_counts_the_columns_it_materialises():
    """``linear_solver="inv"`` forms (J - I)^T by forward-mode products, one per column (n),
    plus the primal product and the final B^T."""
    if "torchopt_implicit" not in estimators.names():
        pytest.skip("torchopt is not installed (pip install 'jfbbench[peers]')")
    p = CountingAffine(n=7)
    e = estimators.make("torchopt_implicit", linear_solver="inv").gradient(p)
    assert e.stats["vjp_evals"] == 7 + 2 and e.stats["jvp_evals"] == 0
    assert e.stats["operator_evals"] == p.counts.T


@pytest.mark.skipif(not deepinv_peers.deq_api_available(), reason="DeepInverse's DEQ API is not installed")
@pytest.mark.parametrize("name", ["deepinv_deq", "deepinv_jfb"])
def test_deepinv_counts_are_the_backward_passes_through_its_blur(name):
    """PGD's gradient step applies A^T A once: every backward pass through T in x crosses it once;
    the final pass to theta (B^T, from the detached x*) reaches theta instead."""
    from jfbbench.problems.deepinv_optim import tikhonov_deblurring

    p = tikhonov_deblurring("PGD", lipschitz=0.8, size=5, seed=1)
    backward = []
    normal = p.physics.A_adjoint_A

    def counted(x, *args, **kwargs):
        out = normal(x, *args, **kwargs)
        if out.requires_grad:
            out.register_hook(lambda g: backward.append(1))
        return out

    p.physics.A_adjoint_A = counted
    to_theta = []
    hook = torch.autograd.graph.register_multi_grad_hook(p.parameters(), lambda _: to_theta.append(1), mode="any")
    try:
        e = estimators.make(name).gradient(p)
    finally:
        hook.remove()
    assert len(to_theta) == 1
    assert e.stats["vjp_evals"] == len(backward) + len(to_theta)
    assert len(backward) >= (100 if name == "deepinv_deq" else 0)
    assert e.stats["jvp_evals"] == 0


def test_counting_leaves_the_saved_bytes_as_they_were():
    """TorchDEQ's phantom gradient, counted through taps on T, saves what ours saves for the
    same K steps (a tap that copied T's output would add one state per step)."""
    if "torchdeq_phantom" not in estimators.names():
        pytest.skip("torchdeq is not installed (pip install 'jfbbench[peers]')")
    p = problems.make("tanh_layer", lipschitz=0.5)
    for k in (2, 8):
        ours = saved_tensor_bytes(lambda k=k: estimators.make("phantom", depth=k).gradient(p))[1]
        theirs = saved_tensor_bytes(lambda k=k: estimators.make("torchdeq_phantom", depth=k).gradient(p))[1]
        assert theirs == ours
