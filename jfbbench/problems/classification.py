"""What the classification families share: the digits data with its fixed split, a trainable
linear read-out head, the cross-entropy loss and the held-out metrics.

The state x of a classification problem is a hidden representation; the head maps it to
logits, and the outer loss is L(x, theta) = CE(head(x), labels), mean over the labelled
examples selected. The head's weights are parameters like the others: L depends on theta
directly, so the total derivative dL/dtheta = dL/dtheta|_x + (dT/dtheta)^T u holds a term
the implicit gradient of a loss L(x) alone has not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from .._validation import check_positive_int
from .base import Problem

#: Fraction of the digits held out for testing (the split is drawn from the seed).
DIGITS_TEST_FRACTION = 1 / 6
SPLITS = ("train", "test")


@functools.cache
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.as_tensor(d.images, dtype=torch.float64) / 16.0
    return images, torch.as_tensor(d.target, dtype=torch.long)


def digits(seed: int, train_size: int | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """scikit-learn's 1,797 handwritten digits (8 x 8, grey levels 0..16 scaled to [0, 1],
    ten classes; shipped with scikit-learn, nothing downloaded), split into ``train`` and
    ``test`` by a permutation drawn from ``seed`` (a sixth, 300 digits, held out); with
    ``train_size``, only the first ``train_size`` training digits of that permutation are
    kept (training then revisits each digit often). Returns ``{split: (images (n, 8, 8)
    float64, labels (n,) long)}``."""
    images, labels = _digits()
    perm = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
    n_test = round(DIGITS_TEST_FRACTION * images.shape[0])
    n_train = images.shape[0] - n_test
    if train_size is not None:
        n_train = check_positive_int(train_size, "train_size")
        if n_train > images.shape[0] - n_test:
            raise ValueError(f"train_size must be at most {images.shape[0] - n_test} digits, got {train_size!r}")
    parts = {"test": perm[:n_test], "train": perm[n_test : n_test + n_train]}
    return {s: (images[i], labels[i]) for s, i in parts.items()}


def digits_train_presets(default: dict[str, Any], quick: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``jfbbench train`` presets of a family on the digits, with its problem settings:
    ``default`` (results/families: 100 steps of 32 digits, 256 training digits in the
    family's own settings, each visited 12 times) and ``quick`` (3 steps of 8 digits, seconds:
    the tests)."""
    return {
        "default": dict(steps=100, lr=0.01, batch_size=32, gap_every=10, tol=1e-4, problem=default),
        "quick": dict(steps=3, lr=0.01, batch_size=8, gap_every=2, tol=1e-3, problem=quick),
    }


def check_split(split: Any) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


class ClassificationProblem(Problem):
    """Base of the classification families: a linear read-out ``logits = x_flat H^T + c``
    (H, c trained), the loss CE(logits, labels) (mean), :meth:`metrics` on held-out data, and
    :meth:`select` / :meth:`n_images` to choose the examples that make the current batch.

    Subclasses call :meth:`_make_head`, set ``self._data`` (``{split: (inputs, labels)}``;
    :meth:`_use_digits` sets it from the digits) and implement :meth:`_features` (the
    state's rows that the head reads, flattened) and :meth:`_on_select` (what changes with
    the selection).
    """

    #: columns a training run reports on held-out data (values of :meth:`metrics`)
    metric_names: tuple[str, ...] = ("accuracy", "loss")

    def _make_head(self, features: int, classes: int, generator: torch.Generator) -> None:
        w = torch.randn(classes, features, generator=generator, dtype=torch.float64) / features**0.5
        self.head_weight = self._param(w)
        self.head_bias = self._param(torch.zeros(classes, dtype=torch.float64))

    def _use_digits(
        self, shape: Callable[[torch.Tensor], torch.Tensor], batch: int, train_size: int | None, **settings: Any
    ) -> None:
        """Take the digits of this problem's seed (:func:`digits`, ``train_size`` of them for
        training), each image batch reshaped by ``shape`` into the model's inputs; record
        ``settings``, ``batch`` and ``train_size`` (where given) in ``config``; and select the
        first ``batch`` training digits (``batch``: an integer >= 1)."""
        batch = check_positive_int(batch, "batch")
        self._data = {s: (self._to(shape(x)), y.to(self.device)) for s, (x, y) in digits(self.seed, train_size).items()}
        self.config = dict(settings, batch=batch)
        if train_size is not None:
            self.config["train_size"] = train_size
        self.select("train", range(min(batch, self.n_images("train"))))

    def head_parameters(self) -> list[torch.Tensor]:
        return [self.head_weight, self.head_bias]

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """The states the head reads, one row per labelled example (n, features)."""
        return x.reshape(x.shape[0], -1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(x) @ self.head_weight.T + self.head_bias

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(x), self.labels)

    @torch.no_grad()
    def metrics(self, x: torch.Tensor) -> dict[str, float]:
        """``accuracy`` (fraction in [0, 1]) and ``loss`` (mean cross-entropy) of the head at
        the state x of the current selection."""
        logits = self.logits(x)
        return dict(
            accuracy=float((logits.argmax(1) == self.labels).to(torch.float64).mean()),
            loss=float(F.cross_entropy(logits, self.labels)),
        )

    # -- data ----------------------------------------------------------------------------
    def n_images(self, split: str) -> int:
        return self._data[check_split(split)][1].shape[0]

    def select(self, split: str, indices: Any = None) -> None:
        """Make the examples ``indices`` (all when None) of ``split`` the current batch."""
        split = check_split(split)
        n = self.n_images(split)
        idx = list(range(n)) if indices is None else [int(i) for i in indices]
        if not idx or min(idx) < 0 or max(idx) >= n:
            raise ValueError(f"indices must be in [0, {n}) for split {split!r}, got {indices!r}")
        self.split, self.indices = split, idx
        inputs, labels = self._data[split]
        self.inputs, self.labels = inputs[idx], labels[idx]
        self._on_select()

    def _on_select(self) -> None:
        """Hook: what a subclass recomputes when the selection changes."""
