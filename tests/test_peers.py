"""Peer adapters (TorchDEQ, torchopt) against our estimators. Skipped, with the reason, where
the peer library is not installed; CI installs ``.[all]``, so they run there."""

import pytest
import torch
from conftest import rel
from test_estimators import FAMILIES, RHOS, make

from jfbbench import estimators, problems
from jfbbench.estimators import peers

INSTALL = "pip install 'jfbbench[peers]'"


@pytest.fixture
def torchdeq():
    return pytest.importorskip("torchdeq", reason=f"peer library torchdeq is not installed ({INSTALL})")


@pytest.fixture
def torchopt():
    return pytest.importorskip("torchopt", reason=f"peer library torchopt is not installed ({INSTALL})")


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("rho", RHOS)
def test_torchdeq_ift_agrees_with_deq(torchdeq, name, rho):
    p = make(name, rho)
    ours = estimators.make("deq").gradient(p)
    theirs = estimators.make("torchdeq_ift").gradient(p)
    assert rel(theirs.grad, ours.grad) <= 1e-6
    assert theirs.stats["converged"] is True
    assert theirs.stats["settings"]["f_tol"] == 1e-12 and theirs.stats["settings"]["b_solver"] == "fixed_point_iter"


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("rho", RHOS)
def test_torchopt_implicit_agrees_with_deq(torchopt, name, rho):
    p = make(name, rho)
    ours = estimators.make("deq").gradient(p)
    assert rel(estimators.make("torchopt_implicit").gradient(p).grad, ours.grad) <= 1e-6


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("k, tau", [(1, 1.0), (5, 1.0), (4, 0.6)])
def test_torchdeq_phantom_agrees_with_phantom(torchdeq, name, k, tau):
    p = make(name, 0.9)
    ours = estimators.make("phantom", depth=k, damping=tau).gradient(p)
    theirs = estimators.make("torchdeq_phantom", depth=k, damping=tau).gradient(p)
    assert rel(theirs.grad, ours.grad) <= 1e-9


@pytest.mark.parametrize("name", FAMILIES)
def test_torchdeq_one_step_gradient_is_jfb(torchdeq, name):
    p = make(name, 0.5)
    assert rel(estimators.make("torchdeq_phantom").gradient(p).grad, estimators.make("jfb").gradient(p).grad) <= 1e-9


@pytest.mark.parametrize("name", FAMILIES)
def test_torchopt_linear_solvers_agree_with_ours(torchopt, name):
    p = make(name, 0.9)
    dense = estimators.make("torchopt_implicit", linear_solver="inv").gradient(p).grad
    assert rel(dense, estimators.make("deq", adjoint="dense").gradient(p).grad) <= 1e-9
    ns = estimators.make("torchopt_implicit", linear_solver="neumann", depth=5).gradient(p).grad
    assert rel(ns, estimators.make("neumann", depth=5).gradient(p).grad) <= 1e-9


def test_peers_take_a_user_problem_with_parameters_in_a_module(torchdeq, torchopt):
    class ModuleProblem:
        """T(x) = rho tanh(layer(x)) with a torch.nn.Linear layer holding theta."""

        lipschitz = 0.6

        def __init__(self):
            torch.manual_seed(3)
            self.layer = torch.nn.Linear(4, 4).double()
            with torch.no_grad():
                self.layer.weight /= torch.linalg.matrix_norm(self.layer.weight, 2)
            self.target = torch.randn(2, 4, dtype=torch.float64)

        def parameters(self):
            return list(self.layer.parameters())

        def operator(self, x):
            return self.lipschitz * torch.tanh(self.layer(x))

        def loss(self, x):
            return 0.5 * (x - self.target).pow(2).sum()

        def initial_point(self):
            return torch.zeros(2, 4, dtype=torch.float64)

    p = ModuleProblem()
    ref = estimators.make("deq").gradient(p).grad
    for name in ("torchdeq_ift", "torchopt_implicit"):
        assert rel(estimators.make(name).gradient(p).grad, ref) <= 1e-6, name
    assert all(t.grad is None for t in p.parameters())


def test_torchopt_refuses_a_problem_whose_parameters_it_cannot_find(torchopt):
    class Hidden:
        lipschitz = 0.5

        def __init__(self):
            self._store = {"theta": torch.ones(3, dtype=torch.float64, requires_grad=True)}

        def parameters(self):
            return [self._store["theta"]]

        def operator(self, x):
            return 0.5 * torch.tanh(x) + self._store["theta"]

        def loss(self, x):
            return x.sum()

        def initial_point(self):
            return torch.zeros(3, dtype=torch.float64)

    with pytest.raises(ValueError, match=r"parameters\(\)\[0\] \(shape \(3,\)\) is neither"):
        estimators.make("torchopt_implicit").gradient(Hidden())


def test_adapters_are_registered_only_when_the_library_is_installed(monkeypatch):
    monkeypatch.setattr(peers, "available", lambda library: library == "torchopt")
    registered = {}
    done = peers.register_peers(lambda name: lambda cls: registered.setdefault(name, cls))
    assert done == ["torchopt_implicit"] == list(registered)


def test_absent_library_gives_an_install_hint():
    with pytest.raises(ImportError, match=r"needs the peer library 'no_such_lib'.*pip install 'jfbbench\[peers\]'"):
        peers.require("no_such_lib", "torchdeq_ift")


@pytest.mark.parametrize(
    "name, config, match",
    [
        ("torchdeq_phantom", dict(damping=0), r"damping must lie in the half-open interval \(0, 1\], got 0"),
        ("torchdeq_ift", dict(backward_solver="lu"), r"backward_solver must be one of .*; got 'lu'"),
        ("torchdeq_ift", dict(solver="auto"), r"solver must be one of 'picard', 'anderson', 'broyden'; got 'auto'"),
        ("torchopt_implicit", dict(linear_solver="cg"), r"linear_solver must be one of 'normal_cg', 'inv', 'neumann'"),
    ],
)
def test_bad_peer_arguments_are_refused(name, config, match):
    if name not in estimators.names():
        pytest.skip(f"peer library {peers.PEER_LIBRARIES[name]} is not installed ({INSTALL})")
    with pytest.raises(ValueError, match=match):
        estimators.make(name, **config)


def test_torchopt_runs_under_saved_tensor_hooks_and_restores_them(torchopt):
    """torch.func refuses saved-tensor hooks; the adapter suspends them for torchopt's backward
    only, so memory harnesses can measure it, and puts them back."""
    p = make("tanh_layer", 0.9)
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        g = estimators.make("torchopt_implicit").gradient(p).grad
        assert torch._C._autograd._top_saved_tensors_default_hooks(False)[0] is pack
    assert saved and rel(g, estimators.make("deq").gradient(p).grad) <= 1e-6


def test_torchdeq_broyden_forward_agrees_with_ours():
    if "torchdeq_ift" not in estimators.names():
        pytest.skip(f"TorchDEQ is not installed ({INSTALL})")
    p = problems.make("affine", lipschitz=0.9, dim=12, batch=2)
    ours = estimators.make("deq", solver="broyden", tol=1e-10).gradient(p)
    theirs = estimators.make("torchdeq_ift", solver="broyden", tol=1e-10).gradient(p)
    assert float((ours.grad - theirs.grad).norm() / ours.grad.norm()) < 1e-6
