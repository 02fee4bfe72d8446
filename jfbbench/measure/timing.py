"""Runtime of one estimator call with ``torch.utils.benchmark`` (warm-up, repeated blocks,
median and interquartile range over the blocks; CUDA synchronised by the timer)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .._validation import check_depth

#: Timed blocks every timing has at least: below this many the spread is not reported.
MIN_BLOCKS = 3


@dataclass
class Timing:
    """``median_s``: the median over the timed blocks of the mean time of a call in the block;
    ``iqr_s``: their interquartile range (NaN with fewer than ``MIN_BLOCKS`` blocks);
    ``repeats``: the number of timed blocks; ``calls``: the timed calls in all."""

    median_s: float
    iqr_s: float
    repeats: int
    calls: int


def time_call(
    fn: Callable[[], Any], min_run_time: float = 0.2, warmup: int = 1, min_blocks: int = MIN_BLOCKS
) -> Timing:
    """Time ``fn()`` in blocks of calls (``torch.utils.benchmark.Timer.blocked_autorange``, which
    sizes the blocks) for at least ``min_run_time`` seconds in all, and at least
    ``min_blocks`` blocks: a call longer than ``min_run_time`` is timed ``min_blocks`` times,
    so ``min_run_time`` is a floor of the time spent, not a cap. The spread (IQR) is NaN
    where fewer than :data:`MIN_BLOCKS` blocks were timed (``min_blocks`` set lower)."""
    min_blocks = check_depth(min_blocks, "min_blocks")
    # importing torch.utils.benchmark loads cpp_extension, which logs a warning on machines
    # without a CUDA toolkit; it does not concern timing
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import torch.utils.benchmark as tbench

    for _ in range(warmup):
        fn()
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    blocks = [timer.blocked_autorange(min_run_time=min_run_time)]
    size = blocks[0].number_per_run
    while sum(len(b.raw_times) for b in blocks) < min_blocks:
        blocks.append(timer.timeit(size))
    (m,) = tbench.Measurement.merge(blocks)  # one time per block: the mean call in it
    n = len(m.times)
    return Timing(
        median_s=float(m.median),
        iqr_s=float(m.iqr) if n >= MIN_BLOCKS else math.nan,
        repeats=n,
        calls=n * size,
    )
