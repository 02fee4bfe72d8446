r"""A recursive reasoning model (HRM / TRM style) on 4 x 4 Sudoku, with a declared contraction.

The Hierarchical Reasoning Model (Wang et al., 2025, arXiv 2506.21734) and the Tiny Recursive
Model (Jolicoeur-Martineau, 2025, arXiv 2510.04871) recurse on an answer embedding y and a
latent z: n latent updates z <- f(x, y, z), then one answer update y <- g(y, z). One such
cycle is this family's operator T, on the state s = (y, z).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .._validation import check_choice, check_positive_int
from . import _sudoku
from .base import Problem, orthogonal
from .tanh_layer import _check_preactivation

Tensor = torch.Tensor

PUZZLES = ("sudoku4",)
#: Digits of a 4 x 4 Sudoku (the read-out's classes) and input tokens (0 = hidden, 1..4).
DIGITS = _sudoku.SIDE
TOKENS = DIGITS + 1
#: Singular values of a normalised weight off its fixed direction: from 0.95 down to 0.9.
OFF_DIRECTION = (0.95, 0.9)
#: The weight names of one network, in the order of ``parameters()``.
NET_WEIGHTS = ("M", "W1", "W2", "b")


def cycle_bound_matrix(scale: float, n_latent: int) -> Tensor:
    r"""The 2 x 2 matrix N of bounds on the blocks of dT/d(y, z) when f and g are
    ``scale``-Lipschitz in their input v = y + z (+ x):

        N = [[c (1 + alpha), c beta], [alpha, beta]],
        alpha = a (1 + a + ... + a^{n-1}) >= ||dz_n/dy||,  beta = a^n >= ||dz_n/dz||,

    a = c = ``scale``. Then ||dT/ds||_2 <= ||N||_2 (see :class:`RecursiveReasoning`)."""
    a = c = float(scale)
    alpha = a * sum(a**k for k in range(n_latent))
    beta = a**n_latent
    return torch.tensor([[c * (1.0 + alpha), c * beta], [alpha, beta]], dtype=torch.float64)


def cycle_bound(scale: float, n_latent: int) -> float:
    """||N||_2 of :func:`cycle_bound_matrix`: a Lipschitz constant of one cycle on (y, z)."""
    return float(torch.linalg.matrix_norm(cycle_bound_matrix(scale, n_latent), 2))


def solve_scale(rho: float, n_latent: int) -> float:
    """The scale l with ||N(l)||_2 = rho, by bisection (||N(l)||_2 increases with l: the
    entries of N are polynomials in l with nonnegative coefficients, and the 2-norm of a
    nonnegative matrix grows with its entries)."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if cycle_bound(mid, n_latent) <= rho:
            lo = mid
        else:
            hi = mid
    return lo


def fixing_orthogonal(n: int, e: Tensor, generator: torch.Generator) -> Tensor:
    """An n x n matrix that fixes the unit vector e (singular value 1) and maps its orthogonal
    complement by a Haar rotation scaled by singular values from 0.95 to 0.9: ||Q||_2 = 1,
    attained at e, and simple (so the spectral normalisation is differentiable)."""
    raw = torch.cat([e[:, None], torch.randn(n, n - 1, generator=generator, dtype=torch.float64)], dim=1)
    basis, _ = torch.linalg.qr(raw)
    basis = basis * torch.sign(basis[:, :1].T @ e)[0]  # first column = +e
    inner = orthogonal(n - 1, generator) * torch.linspace(*OFF_DIRECTION, n - 1, dtype=torch.float64)
    return basis @ torch.block_diag(torch.ones(1, 1, dtype=torch.float64), inner) @ basis.T


def _check_split(split: Any) -> str:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


class RecursiveReasoning(Problem):
    r"""One TRM cycle as the operator: on the state s = (y, z) (answer embedding, latent), each
    (cells x hidden) per puzzle and stored as one tensor s = cat(y, z) of shape
    (n_puzzles, 16, 2 hidden),

        latent_update:  z <- f(x, y, z) = N_f(y + z + e(x)),  y unchanged,
        answer_update:  y <- g(y, z)    = N_g(y + z),          z unchanged,
        T(s) = answer_update(latent_update^n(s)),

    as in the Tiny Recursive Model (Jolicoeur-Martineau, 2025, arXiv 2510.04871), whose one
    network takes x + y + z for the latent and y + z for the answer; the Hierarchical
    Reasoning Model (Wang et al., 2025, arXiv 2506.21734) has the same two updates (its
    low-level state z, high-level state y), with separate networks, as here. Each network is
    a two-layer MLP-mixer block on the 16 cells,

        N(v) = tanh(l M_hat v W1_hat^T + b) W2_hat^T,

    M (16 x 16) mixing cells, W1, W2 (hidden x hidden) mixing channels, hats = division by
    the spectral norm, so N is l-Lipschitz (tanh is 1-Lipschitz). e(x) = E[x] embeds the
    puzzle's tokens (0 = hidden cell, 1..4). The read-out head H (hidden x 4) gives each
    cell's digit logits y H; the loss is the cross-entropy on the hidden cells (mean over
    them), so the head's gradient dL/dH is a term of every estimator's total derivative.
    The ``n_puzzles`` training puzzles are the current ones at creation; ``n_test`` held-out
    puzzles (none equal to a training one) are reached with :meth:`select`, and
    :meth:`metrics` gives the solved fraction and the cell accuracy.
    theta = (M, W1, W2, b of f; the same of g; E; H). The samples (puzzles) are independent
    (``batched = True``).

    **The declared rho.** Normalising f and g to rho each does not make the cycle a
    rho-contraction: each update leaves one half of the state unchanged (its Jacobian on s
    has an identity block, norm >= 1), and z_n depends on y through all n latent updates.
    With ||df/dy||, ||df/dz||, ||dg/dy||, ||dg/dz|| <= l, the chain rule bounds the blocks
    of dT/ds = [[dy'/dy, dy'/dz], [dz'/dy, dz'/dz]]:

        ||dz_n/dz|| <= beta = l^n,  ||dz_n/dy|| <= alpha = l (1 + l + ... + l^{n-1}),
        ||dy'/dy|| = ||g_y + g_z dz_n/dy|| <= l (1 + alpha),  ||dy'/dz|| <= l beta,

    and a block matrix is bounded by the 2-norm of the matrix of its block norms
    (||J s|| <= ||N (||s_y||, ||s_z||)|| <= ||N|| ||s||), so ||dT/ds||_2 <= ||N(l)||_2 at
    every s. l is set by bisection so that ||N(l)||_2 = rho exactly (``config["scale"]``):
    e.g. l = 0.39 for rho = 0.9 and n = 3. Training never moves rho (the weights are
    normalised at every call).

    **Tight at creation.** The bound is attained when the blocks act as their norms along
    one direction: every normalised weight starts fixing a shared unit direction (the mean
    over cells for M, a random unit vector w for W1 and W2; singular value 1 there, 0.95 to
    0.9 elsewhere, :func:`fixing_orthogonal`), and ``preactivation`` = p scales E and the
    biases so that the first pre-activations have norm <= (1 - rho) p per puzzle, keeping
    tanh' near 1 at the fixed point. Then ||J(s*)||_2 (``rho_loc``) is within 1 % of rho
    (measured: >= 0.995 rho over rho in [0.5, 0.99] and n in [1, 6] at p = 0.5). The
    spectral radius of J(s*) is that of N, below its norm because N is not normal: about
    0.9-0.97 rho for n = 1 and 0.7-0.75 rho for n >= 3. Sweep rows report both.

    **Free mode** (``lipschitz=None``): the weights are not normalised (Gaussian, variance
    1 / fan-in, as in the published models, which do not constrain the recursion), inputs
    at unit scale; ``self.lipschitz`` is ||dT/ds||_2 estimated by power iteration at the
    cold start and ``contraction_guaranteed = False``: the problem is outside the theory and
    the exact gradient of T cycles is backpropagation through them (``unrolled``). The
    iteration may have no equilibrium, so training reads the held-out metrics after
    ``eval_cycles`` cycles from the cold start (``eval_steps``; None in the rho modes, which
    are read at x*).
    """

    name = "recursive_reasoning"
    batched = True
    #: ``jfbbench train`` presets: ``default`` (results/reasoning/train: 256 training and 64
    #: held-out puzzles with 6 hidden cells, width 16; about a minute a run on one core) and
    #: ``quick`` (seconds; the tests). No ``preactivation`` shrink: it makes rho tight at the
    #: start, which training does not need, and its small start (y* near 0, loss log 4)
    #: stalls the first hundred steps.
    train_presets = {
        "default": dict(
            steps=150, lr=0.01, batch_size=16, gap_every=10, tol=1e-4,
            problem=dict(n_puzzles=256, n_test=64, hidden=16, hidden_cells=6, preactivation=None),
        ),
        "quick": dict(
            steps=3, lr=0.01, batch_size=4, gap_every=2, tol=1e-4,
            problem=dict(n_puzzles=8, n_test=8, hidden=4, hidden_cells=6, preactivation=None),
        ),
    }  # fmt: skip

    def __init__(
        self,
        lipschitz: float | None = 0.9,
        n_latent: int = 3,
        hidden: int = 8,
        puzzle: str = "sudoku4",
        n_puzzles: int = 4,
        n_test: int = 16,
        hidden_cells: int = 8,
        preactivation: float | None = 0.5,
        lipschitz_iters: int = 30,
        eval_cycles: int = 16,
        seed: int = 0,
        dtype: Any = torch.float64,
        device: Any = "cpu",
    ) -> None:
        free = lipschitz is None
        super().__init__(0.5 if free else lipschitz, seed, dtype, device)
        self.n_latent = check_positive_int(n_latent, "n_latent")
        self.hidden = h = check_positive_int(hidden, "hidden")
        self.puzzle = check_choice(puzzle, "puzzle", PUZZLES)
        n_puzzles = check_positive_int(n_puzzles, "n_puzzles")
        n_test = check_positive_int(n_test, "n_test")
        if isinstance(hidden_cells, bool) or not isinstance(hidden_cells, int) or not 1 <= hidden_cells <= 12:
            raise ValueError(f"hidden_cells must be an integer in [1, 12] (of 16 cells), got {hidden_cells!r}")
        preactivation = _check_preactivation(preactivation)
        self.contraction_guaranteed = not free
        g = self.generator()
        puzzles, solutions = _sudoku.sudoku4(n_puzzles, hidden_cells, g)
        cells = _sudoku.CELLS
        embed = torch.randn(TOKENS, h, generator=g, dtype=torch.float64)
        head = torch.randn(h, DIGITS, generator=g, dtype=torch.float64) / h**0.5
        if free:
            self.scale = 1.0
            nets = [
                dict(
                    M=torch.randn(cells, cells, generator=g, dtype=torch.float64) / cells**0.5,
                    W1=torch.randn(h, h, generator=g, dtype=torch.float64) / h**0.5,
                    W2=torch.randn(h, h, generator=g, dtype=torch.float64) / h**0.5,
                    b=0.1 * torch.randn(h, generator=g, dtype=torch.float64),
                )
                for _ in range(2)
            ]
        else:
            self.scale = solve_scale(self.lipschitz, self.n_latent)
            mean = torch.full((cells,), cells**-0.5, dtype=torch.float64)
            w = torch.randn(h, generator=g, dtype=torch.float64)
            w = w / torch.linalg.vector_norm(w)
            nets = [
                dict(
                    M=fixing_orthogonal(cells, mean, g),
                    W1=fixing_orthogonal(h, w, g),
                    W2=fixing_orthogonal(h, w, g),
                    b=torch.randn(h, generator=g, dtype=torch.float64),
                )
                for _ in range(2)
            ]
            if preactivation is not None:
                target = (1.0 - self.lipschitz) * preactivation
                f, gn = nets
                first = self.scale * torch.einsum("ij,pjh->pih", f["M"], embed[puzzles]) @ f["W1"].T + f["b"]
                shrink = target / float(torch.linalg.vector_norm(first, dim=(1, 2)).max())
                embed, f["b"] = embed * shrink, f["b"] * shrink
                gn["b"] = gn["b"] * target / (cells**0.5 * float(torch.linalg.vector_norm(gn["b"])))
        self.f = {k: self._param(v) for k, v in nets[0].items()}
        self.g = {k: self._param(v) for k, v in nets[1].items()}
        self.E = self._param(embed)
        self.H = self._param(head)
        # held-out puzzles last, so that they change nothing drawn before them
        test = _sudoku.sudoku4(n_test, hidden_cells, g, exclude=puzzles)
        self._data = {"train": (puzzles, solutions), "test": test}
        self.select("train")
        self.config = dict(
            n_latent=self.n_latent,
            hidden=h,
            puzzle=self.puzzle,
            n_puzzles=n_puzzles,
            n_test=n_test,
            hidden_cells=hidden_cells,
            preactivation=preactivation,
        )
        eval_cycles = check_positive_int(eval_cycles, "eval_cycles")
        #: where training reads its held-out metrics: None at the equilibrium x*; in the free
        #: mode, which may have none, after ``eval_cycles`` cycles from the cold start
        self.eval_steps: int | None = eval_cycles if free else None
        if free:
            iters = check_positive_int(lipschitz_iters, "lipschitz_iters")
            self.lipschitz = self.estimate_lipschitz(iters=iters)
            self.config.update(rho_estimate=self.lipschitz, eval_cycles=eval_cycles)
        else:
            self.config.update(scale=self.scale)

    # -- the two updates and the cycle ------------------------------------------------------

    def _net_weights(self, net: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(l M_hat, W1_hat, W2_hat, b), or the raw weights in the free mode."""
        if not self.contraction_guaranteed:
            return net["M"], net["W1"], net["W2"], net["b"]

        def unit(w: Tensor) -> Tensor:
            return w / torch.linalg.matrix_norm(w, 2)

        return self.scale * unit(net["M"]), unit(net["W1"]), unit(net["W2"]), net["b"]

    @staticmethod
    def _apply(weights: tuple[Tensor, Tensor, Tensor, Tensor], v: Tensor) -> Tensor:
        m, w1, w2, b = weights
        return torch.tanh(torch.einsum("ij,pjh->pih", m, v) @ w1.T + b) @ w2.T

    def unpack(self, s: Tensor) -> tuple[Tensor, Tensor]:
        """(y, z) from the state s = cat(y, z) (last dimension)."""
        return s[..., : self.hidden], s[..., self.hidden :]

    def embedding(self) -> Tensor:
        """e(x): the puzzles' tokens embedded, (n_puzzles, 16, hidden)."""
        return self.E[self.puzzles]

    def latent_update(self, s: Tensor, weights: tuple[Tensor, ...] | None = None) -> Tensor:
        """z <- f(x, y, z) = N_f(y + z + e(x)); y unchanged."""
        y, z = self.unpack(s)
        z = self._apply(weights or self._net_weights(self.f), y + z + self.embedding())
        return torch.cat([y, z], dim=-1)

    def answer_update(self, s: Tensor, weights: tuple[Tensor, ...] | None = None) -> Tensor:
        """y <- g(y, z) = N_g(y + z); z unchanged."""
        y, z = self.unpack(s)
        return torch.cat([self._apply(weights or self._net_weights(self.g), y + z), z], dim=-1)

    def operator(self, s: Tensor) -> Tensor:
        """T(s) = answer_update(latent_update^n(s)): one cycle."""
        wf = self._net_weights(self.f)
        for _ in range(self.n_latent):
            s = self.latent_update(s, wf)
        return self.answer_update(s, self._net_weights(self.g))

    # -- loss, read-out, protocol -------------------------------------------------------------

    def logits(self, s: Tensor) -> Tensor:
        """Each cell's digit logits y H, (n_puzzles, 16, 4)."""
        return self.unpack(s)[0] @ self.H

    def loss(self, s: Tensor) -> Tensor:
        """Cross-entropy of the read-out on the hidden cells (mean over them)."""
        return F.cross_entropy(self.logits(s)[self.mask], self.solutions[self.mask] - 1)

    #: what a training run reports on held-out puzzles (the keys of :meth:`metrics`)
    metric_names: tuple[str, ...] = ("accuracy", "cell_accuracy", "loss")

    @torch.no_grad()
    def metrics(self, s: Tensor) -> dict[str, float]:
        """At the state s of the selected puzzles: ``accuracy``, the fraction of puzzles whose
        hidden cells are all read out right (solved); ``cell_accuracy``, the fraction of hidden
        cells read out right; ``loss``, the cross-entropy on the hidden cells."""
        right = (self.logits(s).argmax(-1) + 1 == self.solutions) | ~self.mask
        return dict(
            accuracy=float(right.all(dim=1).double().mean()),
            cell_accuracy=float(right[self.mask].double().mean()),
            loss=float(self.loss(s)),
        )

    # -- data: training and held-out puzzles ---------------------------------------------------

    def n_images(self, split: str) -> int:
        """How many puzzles ``split`` (``"train"``: ``n_puzzles``, ``"test"``: ``n_test``) holds."""
        return self._data[_check_split(split)][0].shape[0]

    def select(self, split: str, indices: Any = None) -> None:
        """Make the puzzles ``indices`` (all when None) of ``split`` the current ones: the state,
        ``puzzles``, ``solutions`` and the loss then refer to them."""
        split = _check_split(split)
        n = self.n_images(split)
        idx = list(range(n)) if indices is None else [int(i) for i in indices]
        if not idx or min(idx) < 0 or max(idx) >= n:
            raise ValueError(f"indices must be in [0, {n}) for split {split!r}, got {indices!r}")
        self.split, self.indices = split, idx
        puzzles, solutions = self._data[split]
        self.puzzles, self.solutions = puzzles[idx].to(self.device), solutions[idx].to(self.device)
        self.mask = self.puzzles == 0
        self.x0 = self._to(torch.zeros(len(idx), _sudoku.CELLS, 2 * self.hidden))

    def parameters(self) -> list[Tensor]:
        return [*(self.f[k] for k in NET_WEIGHTS), *(self.g[k] for k in NET_WEIGHTS), self.E, self.H]

    def initial_point(self) -> Tensor:
        return self.x0.clone()

    def estimate_lipschitz(self, x: Tensor | None = None, iters: int = 30) -> float:
        """||dT/ds (x)||_2 by power iteration (at the cold start when x is None)."""
        from ..linalg import jacobian_spectral_norm

        x = self.initial_point() if x is None else x
        return jacobian_spectral_norm(self.operator, x.detach(), iters=iters, tol=1e-6, seed=self.seed)
