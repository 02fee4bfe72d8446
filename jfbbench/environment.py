"""Where a table was measured: ``<table>.env.json`` beside it.

Seconds, and sometimes bytes and errors, depend on the machine and the software that measured
them, so a table records its environment as benchopt's result files do: jfbbench's version and
git commit, Python's, PyTorch's and the peer libraries' versions, the CPU model (as
``/proc/cpuinfo`` names it) or the GPU's name, the core count, torch's threads and the workers
that measured. Each run that writes rows into a table adds its environment to the sidecar,
unless an identical one is already there (a rerun on the same machine counts its runs);
:func:`differences` says what differs between two tables' environments, for
``jfbbench compare``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

#: Libraries whose versions can change a measurement: PyTorch, the numerical stack, the peers.
LIBRARIES = ("torch", "numpy", "scipy", "deepinv", "torchdeq", "torchopt")
#: Environment variables that change what runs (threads, TF32 on CUDA).
VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "JFBBENCH_TF32", "CUDA_VISIBLE_DEVICES")
#: Keys that describe one run rather than the environment: not compared.
RUN_KEYS = ("runs",)


def sidecar(table: str | Path) -> Path:
    """The environment file of ``table``: ``<table>.env.json``."""
    table = Path(table)
    return table.with_name(table.name + ".env.json")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit(path: str | Path | None = None) -> str | None:
    """The commit of the git checkout that holds ``path`` (default: this package), with
    ``-dirty`` when tracked files differ from it; None outside a git checkout."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head


def cpu_model() -> str:
    """The CPU as ``/proc/cpuinfo`` names it (``model name``), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    """The name of the current CUDA device; None without CUDA."""
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(torch.cuda.current_device())


def collect(workers: int | None = None, threads_per_worker: int | None = None) -> dict[str, Any]:
    """The environment of this process, with the ``workers`` and ``threads_per_worker`` that
    measured (torch's threads in this process when ``threads_per_worker`` is None)."""
    from . import __version__

    return {
        "jfbbench": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        **{lib: _version(lib) for lib in LIBRARIES},
        "cuda": torch.version.cuda,
        "os": platform.platform(terse=True),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu_name(),
        "torch_threads": torch.get_num_threads(),
        "workers": workers if workers is not None else 1,
        "threads_per_worker": threads_per_worker if threads_per_worker is not None else torch.get_num_threads(),
        **{f"env:{var}": os.environ.get(var) for var in VARIABLES},
    }


def read(table: str | Path) -> list[dict[str, Any]]:
    """The environments recorded beside ``table`` (empty when none was)."""
    path = sidecar(table)
    if not path.exists():
        return []
    return list(json.loads(path.read_text())["environments"])


def record(table: str | Path, env: dict[str, Any]) -> Path:
    """Add ``env`` to the environments of ``table`` (or count one more run of an identical
    one) and return the sidecar's path."""
    path = sidecar(table)
    envs = read(table)
    key = {k: v for k, v in env.items() if k not in RUN_KEYS}
    for known in envs:
        if {k: v for k, v in known.items() if k not in RUN_KEYS} == key:
            known["runs"] = int(known.get("runs", 1)) + 1
            break
    else:
        envs.append({**key, "runs": 1})
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"environments": envs}, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def record_run(table: str | Path, cluster: Any = None, summary: Any = None) -> Path | None:
    """Record the environment of this process as one that wrote rows into ``table``: the
    workers of the run's ``summary`` (:class:`jfbbench.runner.Summary`) and the threads per
    task of its ``cluster`` (:class:`jfbbench.runner.Cluster`; on Dask 1 unless set, in this
    process torch's own setting). A run that wrote no row records nothing (returns None)."""
    if summary is not None and not (summary.done or summary.failed):
        return None
    local = cluster is None or cluster.local
    threads = getattr(cluster, "threads_per_worker", None) or (None if local else 1)
    return record(table, collect(getattr(summary, "workers", None), threads))


def _values(envs: list[dict[str, Any]], key: str) -> list[Any]:
    seen: list[Any] = []
    for env in envs:
        if env.get(key) not in seen:
            seen.append(env.get(key))
    return seen


def differences(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[tuple[str, list[Any], list[Any]]]:
    """``(key, values in a, values in b)`` for every key whose values differ between the two
    lists of environments (a table written by several runs may hold several). Empty when both
    are empty or identical."""
    keys = sorted({k for env in [*a, *b] for k in env} - set(RUN_KEYS))
    out = []
    for key in keys:
        va, vb = _values(a, key), _values(b, key)
        if va != vb:
            out.append((key, va, vb))
    return out
