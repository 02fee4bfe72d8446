"""Grey-level natural images for the imaging problems: scikit-image's bundled pictures,
downscaled, cropped to patches, with a fixed train/test split *by image* declared here once.

Only this module decides which pictures train and which test, so that no test image is ever
seen by training (nor by the brief pre-training of the learned denoisers).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

#: The fixed split, by image (``skimage.data`` names). Colour images are converted to grey.
SPLIT: dict[str, tuple[str, ...]] = {
    "train": ("camera", "astronaut", "coffee", "grass", "moon", "clock", "chelsea", "page"),
    "test": ("coins", "rocket", "cat", "brick"),
}

#: Every picture is downscaled so that its shorter side is about this many pixels before
#: patches are cut, so that a small patch still holds edges and texture, not a flat area.
SHORT_SIDE = 128


@functools.lru_cache(maxsize=32)
def load_image(name: str) -> np.ndarray:
    """``skimage.data.<name>()`` as a grey float64 array in [0, 1], downscaled so that its
    shorter side is :data:`SHORT_SIDE` pixels (anti-aliased)."""
    import skimage.data
    from skimage.color import rgb2gray
    from skimage.transform import rescale

    known = SPLIT["train"] + SPLIT["test"]
    if name not in known:
        raise ValueError(f"image must be one of {', '.join(known)}; got {name!r}")
    img = getattr(skimage.data, name)()
    if img.ndim == 3:
        img = rgb2gray(img[..., :3])
    img = img.astype(np.float64)
    if img.max() > 1.0:
        img = img / 255.0
    scale = SHORT_SIDE / min(img.shape)
    if scale < 1.0:
        img = rescale(img, scale, anti_aliasing=True)
    return np.clip(img, 0.0, 1.0)


def patches(
    split: str,
    size: int = 32,
    per_image: int = 1,
    seed: int = 0,
    dtype: Any = torch.float32,
) -> torch.Tensor:
    """``per_image`` random ``size`` x ``size`` crops of every image of ``split``, stacked as a
    (n_images * per_image, 1, size, size) tensor. Crop positions depend on ``seed`` only;
    flat crops (standard deviation below 0.05) are redrawn, so every patch has structure."""
    if split not in SPLIT:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLIT))}; got {split!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= SHORT_SIDE:
        raise ValueError(f"patch size must be an integer in [8, {SHORT_SIDE}], got {size!r}")
    if isinstance(per_image, bool) or not isinstance(per_image, int) or per_image < 1:
        raise ValueError(f"per_image must be an integer >= 1, got {per_image!r}")
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    out = []
    for name in SPLIT[split]:
        img = load_image(name)
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
