"""An implicit graph neural network on the chains benchmark: one state that couples every node."""

from __future__ import annotations

from typing import Any

import torch

from .._validation import check_positive_int
from .base import PiecewiseLinear, orthogonal
from .classification import ClassificationProblem, check_split
from .weight_cache import GraphCache

#: Fraction of the nodes whose labels train (drawn from the seed); the others test.
TRAIN_FRACTION = 0.2
#: Initial value of the bias b: most units start active (see the class docstring).
BIAS_SHIFT = 0.5


def chains(
    n_chains: int, chain_length: int, classes: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    r"""The chains benchmark of Gu et al. (2020): ``classes`` x ``n_chains`` disjoint paths of
    ``chain_length`` nodes; a chain's class is written only at its first node (one-hot
    feature; every other node's features are 0) and every node of the chain carries it as its
    label, so the information has to travel the whole chain. Returns (A, X, y, split): the
    symmetrically normalised adjacency with self-loops A = D^{-1/2} (Adj + I) D^{-1/2}
    (N x N, float64), the features X (classes x N), the labels y (N,) and the node indices of
    ``train`` (a fraction ``TRAIN_FRACTION``, at least one node, drawn from ``seed``) and
    ``test`` (the rest).
    """
    n = classes * n_chains * chain_length
    adj = torch.eye(n, dtype=torch.float64)
    x = torch.zeros(classes, n, dtype=torch.float64)
    y = torch.empty(n, dtype=torch.long)
    for chain in range(classes * n_chains):
        first, label = chain * chain_length, chain % classes
        idx = torch.arange(first, first + chain_length)
        adj[idx[:-1], idx[1:]] = adj[idx[1:], idx[:-1]] = 1.0
        x[label, first] = 1.0
        y[idx] = label
    d = adj.sum(1).rsqrt()
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train = max(1, round(TRAIN_FRACTION * n))
    split = {"train": perm[:n_train].sort().values, "test": perm[n_train:].sort().values}
    return d[:, None] * adj * d[None, :], x, y, split


def perron_frobenius(adjacency: torch.Tensor) -> float:
    """lambda_pf(A) = ||A||_2 of a symmetric, entrywise nonnegative adjacency A; ValueError
    for any other A (its norm is not its Perron-Frobenius eigenvalue) or for lambda_pf = 0
    (no scaling of W then reaches a contraction factor rho > 0)."""
    a = adjacency.detach().to(torch.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or not torch.equal(a, a.T) or bool((a < 0).any()):
        raise ValueError(f"adjacency must be a square, symmetric, nonnegative matrix, got shape {tuple(a.shape)}")
    lam = float(torch.linalg.eigvalsh(a).abs().max()) if a.numel() else 0.0
    if not lam > 0.0:
        raise ValueError(
            f"adjacency has Perron-Frobenius eigenvalue {lam!r}: no scaling of W reaches the declared lipschitz"
        )
    return lam


class IGNN(PiecewiseLinear, ClassificationProblem):
    r"""Implicit graph neural network (Gu, Chang, Zhu, Sojoudi, El Ghaoui, *Implicit Graph
    Neural Networks*, NeurIPS 2020, arXiv 2009.06211) on the chains benchmark (:func:`chains`):

        T_theta(Z) = relu(W Z A + U X + b 1^T),   W = rho V / (||V||_2 lambda_pf(A)),

    Z of shape (1, hidden, nodes): one state for the whole graph (``batched = False``: A
    couples every node, no row of Z is an independent sample; the leading axis holds the one
    graph), theta = (V, U, b, H, c), the read-out
    logits of node j = Z[:, j]^T H^T + c and L = cross-entropy over the labelled nodes of the
    selected split (mean). Settings ``hidden``, ``chain_length``, ``n_chains`` (chains per
    class) and ``classes``.

    **rho exact.** vec(dT/dZ) = diag(relu') (A^T kron W), so ||dT/dZ||_2 <= ||W||_2 ||A||_2 and
    ||A||_2 = lambda_pf(A) for a symmetric nonnegative A (:func:`perron_frobenius`); with
    ||W||_2 = rho / lambda_pf(A) (spectral normalisation of V) T is a rho-contraction for every
    theta. V starts near-orthogonal (singular values 1, then 0.95 ... 0.9), b at
    ``BIAS_SHIFT`` = 0.5 (most units active): every row of W has norm >= 0.9 rho / lambda_pf,
    and at the equilibrium of the model as created ||J(Z*)||_2 >= 0.96 rho (measured at
    rho = 0.5, 0.9, 0.99).

    **During training.** W is re-normalised from V inside :meth:`operator` (once per value of
    V), so rho holds at every step; :meth:`current_lipschitz` reports ||W||_2 lambda_pf(A).

    The training data are the whole graph: ``n_images(split)`` is 1 and :meth:`select` picks
    which nodes' labels the loss and the metrics read; the state is the same.
    """

    name = "ignn"
    theory_note = "relu: dT/dZ jumps where a pre-activation crosses 0"  # the state is Z
    batched = False
    #: ``jfbbench train`` presets (one graph: a batch of 1): ``default`` (results/families: 10
    #: chains per class, 200 nodes; 5-30 s a run on one core) and ``quick`` (seconds; the tests).
    train_presets = {
        "default": dict(steps=150, lr=0.01, batch_size=1, gap_every=10, tol=1e-4, problem=dict(n_chains=10)),
        "quick": dict(
            steps=3, lr=0.01, batch_size=1, gap_every=2, tol=1e-3, problem=dict(hidden=4, chain_length=4, n_chains=2)
        ),
    }

    def __init__(
        self,
        lipschitz: float = 0.9,
        hidden: int = 16,
        chain_length: int = 10,
        n_chains: int = 4,
        classes: int = 2,
        seed: int = 0,
        dtype: Any = torch.float64,
        device: Any = "cpu",
    ) -> None:
        super().__init__(lipschitz, seed, dtype, device)
        hidden = check_positive_int(hidden, "hidden")
        chain_length = check_positive_int(chain_length, "chain_length", minimum=2)  # a chain has two ends
        n_chains = check_positive_int(n_chains, "n_chains")
        classes = check_positive_int(classes, "classes", minimum=2)
        g = self.generator()
        adj, x, y, split = chains(n_chains, chain_length, classes, self.seed)
        self.lambda_pf = perron_frobenius(adj)
        self.A, self.X = self._to(adj), self._to(x)
        sigma = torch.cat([torch.ones(1), torch.linspace(0.95, 0.9, hidden - 1)]).to(torch.float64)
        self.V = self._param(orthogonal(hidden, g) * sigma[:hidden])
        self.U = self._param(torch.randn(hidden, classes, generator=g, dtype=torch.float64))
        self.b = self._param(BIAS_SHIFT + 0.1 * torch.randn(hidden, 1, generator=g, dtype=torch.float64))
        self._make_head(hidden, classes, g)
        self._labels = y.to(self.device)
        self._nodes = {s: i.to(self.device) for s, i in split.items()}
        self._weight = GraphCache()
        self.config = dict(hidden=hidden, chain_length=chain_length, n_chains=n_chains, classes=classes)
        self.select("train")

    # -- data: one graph, the split picks labelled nodes ---------------------------------
    def n_images(self, split: str) -> int:
        check_split(split)
        return 1

    def select(self, split: str, indices: Any = None) -> None:
        """Make the labelled nodes of ``split`` those the loss and metrics read (``indices``
        may only name the one graph, 0)."""
        split = check_split(split)
        if indices is not None and [int(i) for i in indices] != [0]:
            raise ValueError(f"indices must be [0] (the one graph) or None for split {split!r}, got {indices!r}")
        self.split, self.indices = split, [0]
        self.nodes = self._nodes[split]
        self.labels = self._labels[self.nodes]

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return x[0][:, self.nodes].T

    # -- the model -----------------------------------------------------------------------
    def weight(self) -> torch.Tensor:
        """W = rho V / (||V||_2 lambda_pf(A)), differentiable in V."""

        def build() -> tuple[torch.Tensor]:
            return (self.V * (self.lipschitz / (self.lambda_pf * torch.linalg.matrix_norm(self.V, 2))),)

        return self._weight.get([self.V], build)[0]

    def current_lipschitz(self) -> float:
        with torch.no_grad():
            return float(torch.linalg.matrix_norm(self.weight().to(torch.float64), 2)) * self.lambda_pf

    def parameters(self) -> list[torch.Tensor]:
        return [self.V, self.U, self.b, *self.head_parameters()]

    def operator(self, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.weight() @ z @ self.A + self.U @ self.X + self.b)

    def initial_point(self) -> torch.Tensor:
        return torch.zeros(1, self.V.shape[0], self.A.shape[0], dtype=self.dtype, device=self.device)
