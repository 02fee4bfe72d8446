"""What a harness records about one estimate: error against the DEQ reference, runtime and
memory. Every function here wraps one estimator call; sweeps and benchmarks compose them."""

from .error import Reference, compare, reference_gradient
from .memory import cuda_peak_bytes, profiled_peak_bytes, rss_growth_bytes, saved_tensor_bytes
from .record import measure
from .timing import Timing, time_call

__all__ = [
    "Reference",
    "Timing",
    "compare",
    "cuda_peak_bytes",
    "measure",
    "profiled_peak_bytes",
    "reference_gradient",
    "rss_growth_bytes",
    "saved_tensor_bytes",
    "time_call",
]
