"""Memory of one estimator call: bytes autograd saves for the backward pass (exact, the same on
CPU and GPU), the CUDA allocator's peak, and the growth of the process's peak RSS (coarse)."""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable
from typing import Any

import torch


def saved_tensor_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn`` and count the bytes of the tensors autograd saves for backward, with
    ``torch.autograd.graph.saved_tensors_hooks``. A tensor saved several times (same storage,
    offset, shape and stride) counts once. Returns (fn's result, bytes)."""
    seen: set[tuple] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, total


def cuda_peak_bytes(fn: Callable[[], Any], device: torch.device) -> tuple[Any, int | None]:
    """Peak CUDA memory allocated during ``fn`` above what was allocated before it
    (``reset_peak_memory_stats`` / ``max_memory_allocated``); None off CUDA."""
    if device.type != "cuda":
        return fn(), None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    out = fn()
    torch.cuda.synchronize(device)
    return out, int(torch.cuda.max_memory_allocated(device) - base)


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def rss_growth_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Growth of the process's peak resident memory during ``fn``: a coarse CPU figure that is
    0 whenever the call stays below an earlier peak."""
    before = _maxrss_bytes()
    out = fn()
    return out, _maxrss_bytes() - before


def profiled_peak_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Peak of the bytes held by PyTorch's CPU allocator during ``fn``, above what was held
    before it, from the memory events of ``torch.profiler`` (``profile_memory=True``):
    allocations minus frees, accumulated in time order (an operator's own net allocation
    counts at its start). Includes every tensor made during the call (solver workspaces,
    saved activations, temporaries), not only what autograd saves. Slows the call: measure
    apart from timing."""
    import os

    from torch.profiler import ProfilerActivity, profile

    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    steps = []
    for e in prof.events():
        delta = e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        if delta:
            steps.append((e.time_range.start, delta))
    steps.sort()
    current = peak = 0
    for _, delta in steps:
        current += delta
        peak = max(peak, current)
    return out, int(peak)
