"""Memory of one estimator call: bytes autograd saves for the backward pass (exact, the same on
CPU and GPU; their sum over the call and the peak of those still held), the allocator's peak during the call (CUDA: ``max_memory_allocated``; CPU:
torch.profiler's memory events), the bytes of a state that persists between calls, and the
growth of the process's peak RSS (coarse)."""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch


def _storage_key(t: torch.Tensor) -> tuple:
    """Identifies a tensor's bytes: the same storage, offset, shape, stride and dtype."""
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)


class _Packed:
    """What a saved-tensor hook hands autograd instead of the tensor: a detached view of it (the
    same storage; holding the tensor itself would close a cycle through its ``grad_fn`` when
    autograd saves an output, which Python's collector cannot see, and keep a graph whose
    backward never ran alive for good), and the target of a finaliser that tells the count
    when autograd lets it go."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


def saved_tensor_usage(fn: Callable[[], Any]) -> tuple[Any, int, int]:
    """Run ``fn`` under ``torch.autograd.graph.saved_tensors_hooks`` and count the bytes of the
    tensors autograd saves for backward, two ways. Returns (fn's result, total, peak).

    - total: every tensor saved during the call, summed (a tensor saved again while autograd
      still holds it, same storage, offset, shape and stride, counts once; memory freed and
      reused for a later saved tensor counts again). It grows with the number of graphs
      built, even when each is freed before the next is made (a reversible or forward-mode
      method building one small graph per step).
    - peak: the most bytes of saved tensors held at once. A saved tensor counts from its save
      until autograd frees it (after a backward pass without ``retain_graph``, or when its graph
      is dropped), tracked with a finaliser on the object the hook hands autograd. This is
      the memory a graph costs: it grows with the length of an unrolled graph, not with the
      number of small graphs built and freed in turn.

    Neither sees tensors saved under another saved-tensor hook pushed inside ``fn``: a
    non-reentrant ``torch.utils.checkpoint`` keeps its segments' inputs where these hooks see
    them, but holds the segment it recomputes during backward through its own hook; the
    allocator's peak (:func:`peak_bytes`) sees that segment."""
    holders: dict[tuple, int] = {}
    total = held = peak = 0

    def release(key: tuple, nbytes: int) -> None:
        nonlocal held
        holders[key] -= 1
        if holders[key] == 0:
            del holders[key]
            held -= nbytes

    def pack(t: torch.Tensor) -> _Packed:
        nonlocal total, held, peak
        key, nbytes = _storage_key(t), t.numel() * t.element_size()
        if key not in holders:
            holders[key] = 0
            total += nbytes
            held += nbytes
            peak = max(peak, held)
        holders[key] += 1
        packed = _Packed(t.detach())
        weakref.finalize(packed, release, key, nbytes)
        return packed

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda packed: packed.tensor):
        out = fn()
    return out, total, peak


def saved_tensor_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn`` and sum the bytes of the tensors autograd saves for backward during it (the
    total of :func:`saved_tensor_usage`). Returns (fn's result, bytes)."""
    out, total, _ = saved_tensor_usage(fn)
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


def _flatten(nodes: Any) -> Iterator[Any]:
    for node in nodes:
        yield node
        yield from _flatten(node.children)


#: Above this many profiler events in one call (about 2 GB of Python objects to match them
#: by address), :func:`cpu_peak_bytes` gives up and reports None: a fixed-point solve of
#: thousands of steps with tens of operations each (TorchDEQ's at rho = 0.99) records millions.
MAX_PROFILED_EVENTS = 150_000


def cpu_peak_bytes(fn: Callable[[], Any]) -> tuple[Any, int | None]:
    """Peak of the bytes allocated by PyTorch's CPU allocator during ``fn`` and not yet freed:
    every allocation and free that torch.profiler (``profile_memory=True``) records, matched
    by address and summed in time order, and its maximum taken (frees of blocks allocated
    before the call are left out, so the figure does not depend on what earlier calls left).
    An allocator-level measurement: it sees temporaries, solver buffers and autograd's saved
    tensors alike, whoever made them. None (not measured) when the call recorded more than
    ``MAX_PROFILED_EVENTS`` events."""
    from torch.profiler import ProfilerActivity, profile

    _silence_unknown_block_warning()
    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_stderr():  # kineto prints a line on every start and stop
        prof.start()
    try:
        out = fn()
    finally:
        with _quiet_stderr():
            prof.stop()
    if len(prof.profiler.kineto_results.events()) > MAX_PROFILED_EVENTS:
        return out, None
    allocations = sorted(
        (n.start_time_ns, n.extra_fields.ptr, n.extra_fields.alloc_size)
        for n in _flatten(prof.profiler.kineto_results.experimental_event_tree())
        if n.tag == torch._C._profiler._EventType.Allocation and n.extra_fields.device.type == "cpu"
    )
    live: dict[int, int] = {}
    held = peak = 0
    for _, ptr, size in allocations:
        if size > 0:
            live[ptr] = size
            held += size
            peak = max(peak, held)
        elif ptr in live:  # a block allocated before the call leaves the count unchanged
            held -= live.pop(ptr)
    return out, int(peak)


_WARNED = False


def _silence_unknown_block_warning() -> None:
    """PyTorch warns once per process, on stderr, when a block allocated before profiling is
    freed during it (such frees are left out, which is what :func:`cpu_peak_bytes` wants):
    trigger that warning once, silenced, so that a sweep's output stays clean."""
    global _WARNED
    if _WARNED:
        return
    from torch.profiler import ProfilerActivity, profile

    block = torch.empty(64)
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True):
        del block
    _WARNED = True


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (C++ code writes there directly) for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_bytes(fn: Callable[[], Any], device: torch.device) -> tuple[Any, int | None]:
    """The allocator's peak during ``fn`` above its level before it, on ``device``: CUDA's
    ``max_memory_allocated`` on a GPU, :func:`cpu_peak_bytes` on the CPU (None where that
    call was too long to profile)."""
    if device.type == "cuda":
        return cuda_peak_bytes(fn, device)  # type: ignore[return-value]
    return cpu_peak_bytes(fn)


def tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor in ``obj`` (a tensor, or dicts, lists and tuples of them,
    nested; anything else counts 0); a storage shared by several entries counts once."""
    seen: set[tuple] = set()

    def walk(o: Any) -> int:
        if isinstance(o, torch.Tensor):
            key = _storage_key(o)
            if key in seen:
                return 0
            seen.add(key)
            return o.numel() * o.element_size()
        if isinstance(o, dict):
            return sum(walk(v) for v in o.values())
        if isinstance(o, (list, tuple)):
            return sum(walk(v) for v in o)
        return 0

    return walk(obj)


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def rss_growth_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Growth of the process's peak resident memory during ``fn``: a coarse CPU figure that is
    0 whenever the call stays below an earlier peak."""
    before = _maxrss_bytes()
    out = fn()
    return out, _maxrss_bytes() - before


def available_memory(device: str | torch.device) -> int | None:
    """Bytes that can still be allocated on ``device``: CUDA's free memory
    (``torch.cuda.mem_get_info``), or the host's available memory (psutil) for the CPU; None
    where it cannot be told."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        import psutil

        return int(psutil.virtual_memory().available)
    return None
