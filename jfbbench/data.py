"""Grey-level natural images for the imaging problems: scikit-image's bundled pictures,
downscaled, cropped to patches, with a fixed train/test split *by image* declared here once.

Only this module decides which pictures train and which test, so that no test image is ever
seen by training (nor by the brief pre-training of the learned denoisers).

Three image sets (``images=``): ``default`` (colour and grey pictures converted to grey,
shorter side 128 px: small patches), ``grey`` (every grey photograph scikit-image ships
offline, shorter side up to 256 px: crops of 128 x 128 and more; its smallest picture, ``text``,
is 172 px) and ``grey256`` (the ``grey`` pictures at least 256 px on their shorter side, all
brought to 256 px: crops up to 256 x 256). The test pictures of ``grey`` and ``grey256`` are
none of the ``default`` training pictures, on which the suite's denoiser is pre-trained.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from ._validation import check_positive_int

#: The fixed split, by image (``skimage.data`` names). Colour images are converted to grey.
SPLIT: dict[str, tuple[str, ...]] = {
    "train": ("camera", "astronaut", "coffee", "grass", "moon", "clock", "chelsea", "page"),
    "test": ("coins", "rocket", "cat", "brick"),
}

#: Every grey photograph bundled with scikit-image (``skimage.data``) that loads without a
#: download and is at least 128 px on its shorter side, split by picture. Left out: the
#: synthetic or binary pictures (``binary_blobs``, ``checkerboard``, ``horse``,
#: ``shepp_logan_phantom``) and ``microaneurysms`` (102 x 102 px).
GREY_SPLIT: dict[str, tuple[str, ...]] = {
    "train": ("camera", "clock", "grass", "gravel", "moon", "page", "text"),
    "test": ("coins", "brick", "cell"),
}

#: The ``grey`` pictures whose shorter side is at least 256 px (``page``, 191 px, and ``text``,
#: 172 px, are left out of training), for 256 x 256 crops.
GREY256_SPLIT: dict[str, tuple[str, ...]] = {
    "train": tuple(n for n in GREY_SPLIT["train"] if n not in ("page", "text")),
    "test": GREY_SPLIT["test"],
}

#: The image sets: the split and the shorter side (px) every picture is downscaled to before
#: patches are cut (so that a patch holds edges and texture, not a flat area; a picture
#: already smaller is kept at its size).
IMAGE_SETS: dict[str, tuple[dict[str, tuple[str, ...]], int]] = {
    "default": (SPLIT, 128),
    "grey": (GREY_SPLIT, 256),
    "grey256": (GREY256_SPLIT, 256),
}

#: The shorter side of the ``default`` set.
SHORT_SIDE = 128


def _image_set(images: str) -> tuple[dict[str, tuple[str, ...]], int]:
    if images not in IMAGE_SETS:
        raise ValueError(f"images must be one of {', '.join(map(repr, IMAGE_SETS))}; got {images!r}")
    return IMAGE_SETS[images]


@functools.lru_cache(maxsize=64)
def load_image(name: str, images: str = "default") -> np.ndarray:
    """``skimage.data.<name>()`` as a grey float64 array in [0, 1], downscaled so that its
    shorter side is the image set's (anti-aliased)."""
    import skimage.data
    from skimage.color import rgb2gray
    from skimage.transform import rescale

    split, short_side = _image_set(images)
    known = split["train"] + split["test"]
    if name not in known:
        raise ValueError(f"image must be one of {', '.join(known)}; got {name!r}")
    img = getattr(skimage.data, name)()
    if img.ndim == 3:
        img = rgb2gray(img[..., :3])
    img = img.astype(np.float64)
    if img.max() > 1.0:
        img = img / 255.0
    scale = short_side / min(img.shape)
    if scale < 1.0:
        img = rescale(img, scale, anti_aliasing=True)
    return np.clip(img, 0.0, 1.0)


def patches(
    split: str,
    size: int = 32,
    per_image: int = 1,
    seed: int = 0,
    dtype: Any = torch.float32,
    images: str = "default",
) -> torch.Tensor:
    """``per_image`` random ``size`` x ``size`` crops of every image of ``split`` (of the image
    set ``images``), stacked as a (n_images * per_image, 1, size, size) tensor. Crop positions
    depend on ``seed`` only; flat crops (standard deviation below 0.05) are redrawn, so every
    patch has structure."""
    splits, short_side = _image_set(images)
    if split not in splits:
        raise ValueError(f"split must be one of {', '.join(map(repr, splits))}; got {split!r}")
    largest = min(min(load_image(n, images).shape) for n in splits[split])
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= largest:
        raise ValueError(f"patch size must be an integer in [8, {largest}] for images={images!r}, got {size!r}")
    check_positive_int(per_image, "per_image")
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    out = []
    for name in splits[split]:
        img = load_image(name, images)
        h, w = img.shape
        for _ in range(per_image):
            for _attempt in range(50):
                i, j = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
                crop = img[i : i + size, j : j + size]
                if crop.std() >= 0.05:
                    break
            out.append(crop)
    return torch.from_numpy(np.stack(out)[:, None]).to(dtype)


def psnr(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [0, 1] (DeepInverse's metric), shape (B,)."""
    from deepinv.loss.metric import PSNR

    return PSNR(max_pixel=1.0)(x.detach().clamp(0.0, 1.0), target.detach())
