"""What the imaging problems share: deblurring y = A x + noise on grey-level natural-image
patches, batched over images, with a train and a test set.

A is DeepInverse's :class:`deepinv.physics.Blur` (circular padding, so that A is square and
its norm is the largest modulus of the kernel's discrete Fourier transform) with a Gaussian or
a motion kernel; the noise is DeepInverse's :class:`deepinv.physics.GaussianNoise`. The images
come from :mod:`jfbbench.data` (fixed split by image).

The problem's x is the batch of images currently selected (:meth:`ImagingProblem.select`), of
shape (B, 1, H, W); the outer loss is L(x) = 1/(2B) ||x - x_true||^2 and the cold start is
the observation y.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import data
from .._validation import check_positive_int
from .base import Problem

KERNELS = ("gaussian", "motion")


def _check_range(value: Any, name: str, lo: float, hi: float, *, lo_open: bool = True, hi_open: bool = True) -> float:
    """A number in the interval (lo, hi) (bounds open or closed); the error names it."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    ok_lo = v > lo if lo_open else v >= lo
    ok_hi = v < hi if hi_open else v <= hi
    if math.isnan(v) or not (ok_lo and ok_hi):
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ValueError(f"{name} must lie in {left}{lo:g}, {hi:g}{right}, got {value!r}")
    return v


def blur_kernel(kind: str, size: int, width: float, seed: int) -> torch.Tensor:
    """A (1, 1, k, k) blur kernel from DeepInverse, summing to one: ``gaussian`` with standard
    deviation ``width`` pixels (DeepInverse's ``gaussian_blur``), or ``motion``
    (DeepInverse's :class:`MotionBlurGenerator`, a random camera-shake trajectory, psf
    ``size`` x ``size``, trajectory length ``width`` / 10 of the psf)."""
    from deepinv.physics.blur import gaussian_blur
    from deepinv.physics.generator import MotionBlurGenerator

    if kind == "gaussian":
        k = gaussian_blur(sigma=(width, width))
        if k.shape[-1] > size:  # crop to the requested support, renormalise
            c, h = k.shape[-1] // 2, size // 2
            k = k[..., c - h : c - h + size, c - h : c - h + size]
    else:
        gen = MotionBlurGenerator(psf_size=(size, size), rng=torch.Generator().manual_seed(seed), l=width / 10)
        k = gen.step(1, seed=seed)["filter"]
    k = k.to(torch.float64)
    return k / k.sum()


class ImagingProblem(Problem):
    r"""Deblurring y = A x + n on patches of natural images, solved by forward-backward
    iterations; subclasses define the operator T_theta and the parameters.

    Settings: ``kernel`` (``gaussian`` or ``motion``), ``kernel_size`` (odd, smaller than the
    patch), ``blur`` (Gaussian standard deviation in pixels, or the motion length in tenths of
    the psf), ``noise`` (standard deviation of the Gaussian noise, in [0, 0.5)),
    ``patch`` (side, >= 8), ``train_per_image`` and ``test_per_image`` (crops per picture),
    ``images`` (the image set of :mod:`jfbbench.data`: ``default``, ``grey`` or ``grey256``).
    The ``seed`` draws the crops, the noise and (for ``motion``) the kernel.

    The images of the batch are independent samples (``batched``): the blur, the priors and
    the denoisers (convolutional, without batch statistics) act on each image alone, so
    each image may stop at its own tolerance.
    """

    batched = True

    def __init__(
        self,
        lipschitz: float,
        kernel: str = "gaussian",
        kernel_size: int = 7,
        blur: float = 1.5,
        noise: float = 0.02,
        patch: int = 32,
        train_per_image: int = 1,
        test_per_image: int = 1,
        images: str = "default",
        seed: int = 0,
        dtype: Any = torch.float32,
        device: Any = "cpu",
    ) -> None:
        super().__init__(lipschitz, seed, dtype, device)
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(map(repr, KERNELS))}; got {kernel!r}")
        kernel_size = check_positive_int(kernel_size, "kernel_size")
        patch = check_positive_int(patch, "patch")
        if kernel_size % 2 == 0 or kernel_size < 3:
            raise ValueError(f"kernel_size must be an odd integer >= 3, got {kernel_size!r}")
        if patch < 8 or patch < 2 * kernel_size:
            raise ValueError(
                f"patch={patch} is too small for kernel_size={kernel_size}: "
                f"images must be at least 8 pixels and twice the kernel size ({2 * kernel_size})"
            )
        blur = _check_range(blur, "blur", 0.0, 10.0 * kernel_size, hi_open=False)
        noise = _check_range(noise, "noise", 0.0, 0.5, lo_open=False)
        train_per_image = check_positive_int(train_per_image, "train_per_image")
        test_per_image = check_positive_int(test_per_image, "test_per_image")

        from deepinv.physics import Blur, GaussianNoise

        self.kernel = self._to(blur_kernel(kernel, kernel_size, blur, self.seed))
        self.physics = Blur(filter=self.kernel, padding="circular", device=self.device)
        # the data are drawn on the CPU (its generator), then moved: the same seed gives the
        # same measurements y on every device
        on_cpu = Blur(filter=self.kernel.cpu(), padding="circular", device="cpu")
        noise_model = GaussianNoise(sigma=noise, rng=torch.Generator(device="cpu").manual_seed(self.seed + 1))
        self._data: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for split, per in (("train", train_per_image), ("test", test_per_image)):
            x_true = data.patches(split, patch, per, seed=self.seed, dtype=torch.float64, images=images)
            x_true = x_true.to(dtype=self.dtype)
            with torch.no_grad():
                y = on_cpu.A(x_true)
                y = noise_model(y) if noise > 0 else y
            self._data[split] = (self._to(x_true), self._to(y.detach()))
        # ||A||_2 of a circular convolution: the largest modulus of the kernel's DFT
        padded = torch.zeros(patch, patch, dtype=torch.float64)
        k = self.kernel.detach().to(torch.float64)[0, 0]
        padded[: k.shape[0], : k.shape[1]] = k
        self.a_norm2 = float(torch.fft.fft2(padded).abs().max()) ** 2
        self.noise = noise
        self.config = dict(
            kernel=kernel, kernel_size=kernel_size, blur=blur, noise=noise, patch=patch,
            train_per_image=train_per_image, test_per_image=test_per_image,
        )  # fmt: skip
        if images != "default":
            self.config["images"] = images
        self.select("train")

    # -- data ----------------------------------------------------------------------------
    def n_images(self, split: str) -> int:
        return self._data[split][0].shape[0]

    def select(self, split: str, indices: Any = None) -> None:
        """Make the images ``indices`` (all when None) of ``split`` the problem's batch."""
        if split not in self._data:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        x_true, y = self._data[split]
        idx = list(range(x_true.shape[0])) if indices is None else [int(i) for i in indices]
        if not idx or min(idx) < 0 or max(idx) >= x_true.shape[0]:
            raise ValueError(f"indices must be in [0, {x_true.shape[0]}) for split {split!r}, got {indices!r}")
        self.split, self.indices = split, idx
        self.target, self.y = x_true[idx], y[idx]

    # -- the model -----------------------------------------------------------------------
    def data_gradient(self, x: torch.Tensor) -> torch.Tensor:
        """A^T (A x - y)."""
        return self.physics.A_adjoint(self.physics.A(x) - self.y)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x - self.target).pow(2).sum() / x.shape[0]

    def initial_point(self) -> torch.Tensor:
        return self.y.clone()

    def psnr(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image PSNR (dB) of x against the selected ground truth."""
        return data.psnr(x, self.target)

    #: what :meth:`metrics` returns (a training run's ``test_psnr``, ``test_psnr_std``, ``train_psnr``)
    metric_names: tuple[str, ...] = ("psnr", "psnr_std")

    @torch.no_grad()
    def metrics(self, x: torch.Tensor) -> dict[str, float]:
        """Mean and standard deviation over the selected images of the PSNR (dB) of x."""
        psnr = self.psnr(x)
        return dict(psnr=float(psnr.mean()), psnr_std=float(psnr.std()) if psnr.numel() > 1 else 0.0)

    @torch.no_grad()
    def baseline_metrics(self) -> dict[str, float]:
        """The PSNR of the selected observations y themselves (a training run's ``input_psnr``)."""
        return dict(psnr=float(self.psnr(self.y).mean()))

    def estimate_lipschitz(self, x: torch.Tensor | None = None, iters: int = 30) -> float:
        """||dT/dx (x)||_2 by power iteration (at the cold start when x is None)."""
        from ..linalg import jacobian_spectral_norm

        x = self.initial_point() if x is None else x
        return jacobian_spectral_norm(self.operator, x.detach(), iters=iters, tol=1e-4, seed=self.seed)
