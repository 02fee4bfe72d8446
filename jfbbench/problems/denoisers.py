"""A small DeepInverse DRUNet denoiser, pre-trained briefly by the suite itself.

Pretrained weights cannot be downloaded everywhere, so the suite trains a small
:class:`deepinv.models.DRUNet` on Gaussian denoising of patches of the *training* images
(:data:`jfbbench.data.SPLIT`), for noise levels uniform in [0, sigma_max], and caches the
weights under ``$JFBBENCH_CACHE`` (default ``~/.cache/jfbbench``). A user with internet
access can start from DeepInverse's published weights instead with ``init="download"``
(this needs DeepInverse's architecture: ``nc=(64, 128, 256, 512)``, ``nb=4``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from .. import data
from .._validation import check_positive_int

INITS = ("suite", "random", "download")
PUBLISHED_NC = (64, 128, 256, 512)


def cache_dir() -> Path:
    return Path(os.environ.get("JFBBENCH_CACHE", Path.home() / ".cache" / "jfbbench"))


def make_drunet(nc: tuple[int, ...] = (8, 16, 32, 64), nb: int = 1, init: str = "suite", **pretrain: Any):
    """A grey-level DRUNet (``in_channels = out_channels = 1``) with noise-level map input.

    ``init``: ``"suite"`` (pre-trained by :func:`pretrain_drunet`, cached), ``"random"``
    (DeepInverse's initialisation) or ``"download"`` (DeepInverse's published weights; needs
    internet and ``nc=(64, 128, 256, 512)``, ``nb=4``)."""
    from deepinv.models import DRUNet

    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(map(repr, INITS))}; got {init!r}")
    nc = tuple(int(c) for c in nc)
    if len(nc) != 4 or min(nc) < 1:
        raise ValueError(f"nc must be four positive channel counts, got {nc!r}")
    check_positive_int(nb, "nb")
    if init == "download":
        if nc != PUBLISHED_NC or nb != 4:
            raise ValueError(
                f"init='download' needs nc={PUBLISHED_NC} and nb=4 (the published DRUNet), got nc={nc}, nb={nb}"
            )
        return DRUNet(1, 1, nc=nc, nb=nb, pretrained="download")
    if init == "random":
        return DRUNet(1, 1, nc=nc, nb=nb, pretrained=None)
    return pretrain_drunet(nc, nb, **pretrain)


def pretrain_drunet(
    nc: tuple[int, ...] = (8, 16, 32, 64),
    nb: int = 1,
    steps: int = 1000,
    sigma_max: float = 0.1,
    patch: int = 32,
    batch: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    cache: bool = True,
):
    """Train a DRUNet for ``steps`` Adam steps on min E ||N(x + sigma n, sigma) - x||^2 over
    random patches of the training images, sigma ~ U[0, sigma_max]; cached by settings."""
    from deepinv.models import DRUNet

    key = f"drunet-nc{'-'.join(map(str, nc))}-nb{nb}-steps{steps}-smax{sigma_max:g}-p{patch}-b{batch}-lr{lr:g}-s{seed}"
    path = cache_dir() / f"{key}-{hashlib.sha1(key.encode()).hexdigest()[:8]}.pt"
    torch.manual_seed(seed)
    net = DRUNet(1, 1, nc=tuple(nc), nb=nb, pretrained=None)
    if cache and path.exists():
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return net
    pool = data.patches("train", patch, per_image=64, seed=seed + 1000)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, pool.shape[0], (batch,), generator=g)
        x = pool[idx]
        if torch.rand((), generator=g) < 0.5:
            x = x.flip(-1)
        sigma = sigma_max * torch.rand(batch, generator=g)
        noisy = x + sigma.view(-1, 1, 1, 1) * torch.randn(x.shape, generator=g)
        loss = (net(noisy, sigma) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(net.state_dict(), tmp)
        os.replace(tmp, path)
    return net
