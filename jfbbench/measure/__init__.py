"""What a harness records about one estimate: error against the DEQ reference, runtime and
memory. Every function here wraps one estimator call; sweeps and benchmarks compose them."""

from .error import Reference, compare, float64_reference, reference_gradient
from .memory import (
    available_memory,
    cpu_peak_bytes,
    cuda_peak_bytes,
    peak_bytes,
    rss_growth_bytes,
    saved_tensor_bytes,
    saved_tensor_usage,
    tensor_bytes,
)
from .record import measure
from .timing import Timing, time_call

__all__ = [
    "Reference",
    "Timing",
    "available_memory",
    "compare",
    "cpu_peak_bytes",
    "cuda_peak_bytes",
    "float64_reference",
    "measure",
    "peak_bytes",
    "reference_gradient",
    "rss_growth_bytes",
    "saved_tensor_bytes",
    "saved_tensor_usage",
    "tensor_bytes",
    "time_call",
]
