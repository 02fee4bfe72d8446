"""Runtime of one estimator call with ``torch.utils.benchmark`` (warm-up, repeated blocks,
median and interquartile range; CUDA synchronised by the timer)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Timing:
    median_s: float
    iqr_s: float
    repeats: int


def time_call(fn: Callable[[], Any], min_run_time: float = 0.2, warmup: int = 1) -> Timing:
    """Median and IQR of ``fn()``'s wall time over blocks measured for at least
    ``min_run_time`` seconds in all."""
    # importing torch.utils.benchmark loads cpp_extension, which logs a warning on machines
    # without a CUDA toolkit; it does not concern timing
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import torch.utils.benchmark as tbench

    for _ in range(warmup):
        fn()
    m = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads()).blocked_autorange(
        min_run_time=min_run_time
    )
    return Timing(median_s=float(m.median), iqr_s=float(m.iqr), repeats=m.number_per_run * len(m.raw_times))
