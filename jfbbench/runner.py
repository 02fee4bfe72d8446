"""Where grid tasks run: in this process, or on a Dask cluster (a ``LocalCluster`` of this
machine's cores, an existing scheduler, or SLURM/PBS workers started by ``dask-jobqueue``).

The one route from ``--workers`` (``--scheduler``, ``--scheduler-file``,
``--threads-per-worker``, ``--retries``) to where tasks run, for sweeps and training alike:
the command line builds a :class:`Cluster`, the library (:func:`jfbbench.sweep.run`,
:func:`jfbbench.training.train_grid`) hands it with its tasks to :func:`run_tasks`.

A task is a function of its settings that returns its result. The runner hands each result
to ``on_result`` in this process as soon as it completes. Two kinds of task use it:

- **tasks that hand rows back**: a sweep point (:func:`jfbbench.sweep.measure_task`) returns
  its row, and this process is the one writer of the sweep's table: it appends each row as it
  comes, so workers need no shared disk and the table's lock, journal and grid record live in
  one process;
- **tasks that own a table**: a training run (:func:`jfbbench.training.run_training`) writes
  its own resumable table and the checkpoint beside it, and returns only a summary. A run's
  rows come over minutes, and resuming needs each row on disk together with the checkpoint
  written after it (theta, optimiser state, per-sample states); rows handed back at the end
  would lose a killed run's progress, and streaming them back from a worker would need a
  channel the runner does not have. The task holds the table's lock, so each training table
  still has one writer (and training grids on several machines need ``out`` on a shared
  filesystem).

A task that raises becomes a failed result (``status`` = ``error: <type>: <message>``) and
the grid goes on; a task whose worker dies (killed, out of memory) is rescheduled by Dask on
another worker, up to ``retries`` times, and is otherwise reported as lost (nothing is
written: a rerun measures it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from ._validation import check_nonnegative_int, check_positive_int

#: Seconds to wait for a Dask scheduler (``--scheduler``, ``--scheduler-file``) to answer as
#: one before giving up, whatever listens at its address.
SCHEDULER_TIMEOUT_S = 20.0


@dataclass
class Cluster:
    """Where to run: nothing set = this process; ``workers`` = a LocalCluster of that many
    processes on this machine; ``scheduler`` (an address such as ``tcp://host:8786``) or
    ``scheduler_file`` = an existing Dask cluster. ``threads_per_worker`` is torch's
    intra-op thread count in each task (on Dask: 1 when None; in this process: torch's own
    setting when None); ``retries`` how often a task lost with its worker is resubmitted."""

    workers: int | None = None
    scheduler: str | None = None
    scheduler_file: str | None = None
    threads_per_worker: int | None = None
    retries: int = 2

    def __post_init__(self) -> None:
        given = [n for n, v in (("--workers", self.workers), ("--scheduler", self.scheduler),
                                ("--scheduler-file", self.scheduler_file)) if v is not None]  # fmt: skip
        if len(given) > 1:
            raise ValueError(f"give one of --workers, --scheduler, --scheduler-file, got {' and '.join(given)}")
        if self.workers is not None:
            check_positive_int(self.workers, "--workers")
        if self.threads_per_worker is not None:
            check_positive_int(self.threads_per_worker, "--threads-per-worker")
        check_nonnegative_int(self.retries, "--retries")
        if self.scheduler_file is not None:
            scheduler_address(self.scheduler_file)

    @property
    def local(self) -> bool:
        return self.workers is None and self.scheduler is None and self.scheduler_file is None

    def check(self, timeout: float | None = None) -> None:
        """Refuse, before any task runs, a scheduler that does not answer as a Dask scheduler
        within ``timeout`` seconds (default :data:`SCHEDULER_TIMEOUT_S`); nothing to check for
        this process or a local cluster."""
        if self.scheduler is not None:
            probe_scheduler(self.scheduler, "--scheduler", timeout)
        elif self.scheduler_file is not None:
            where = f"{scheduler_address(self.scheduler_file)} (from --scheduler-file {self.scheduler_file!r})"
            probe_scheduler(scheduler_address(self.scheduler_file), where, timeout)


def scheduler_address(path: str) -> str:
    """The address a Dask scheduler file holds (``dask scheduler --scheduler-file`` writes it),
    or a one-line ValueError saying what is wrong with the file."""
    what = f"--scheduler-file {path!r}"
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise ValueError(f"{what} cannot be read: {exc.strerror} (dask scheduler --scheduler-file writes it)") from None
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{what} is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "dask scheduler --scheduler-file writes a JSON file with the scheduler's address"
        ) from None
    address = info.get("address") if isinstance(info, dict) else None
    if not isinstance(address, str) or not address:
        raise ValueError(
            f'{what} holds no scheduler address (a JSON object with an "address" such as "tcp://host:8786")'
        )
    return address


def probe_scheduler(address: str, what: str = "--scheduler", timeout: float | None = None) -> None:
    """Ask ``address`` who it is (Dask's ``identity`` call) and raise a one-line ValueError
    unless a Dask scheduler answers within ``timeout`` seconds (default
    :data:`SCHEDULER_TIMEOUT_S`): nothing listening, another server (HTTP, SSH) or a Dask
    worker are all refused, and the wait never passes the timeout."""
    from concurrent.futures import ThreadPoolExecutor

    from distributed.core import rpc

    timeout = SCHEDULER_TIMEOUT_S if timeout is None else float(timeout)
    label = what if what != "--scheduler" else f"--scheduler {address!r}"

    async def identity() -> Any:
        async with rpc(address, timeout=timeout) as remote:
            return await remote.identity()

    def ask() -> Any:
        return asyncio.run(asyncio.wait_for(identity(), timeout))

    try:  # a thread of its own: the caller may be inside an event loop (a notebook)
        with ThreadPoolExecutor(1) as pool:
            info = pool.submit(ask).result()
    except (TimeoutError, asyncio.TimeoutError):
        raise ValueError(f"{label}: no Dask scheduler answered within {timeout:g} s") from None
    except Exception as exc:  # refused, reset, a reply that is not Dask's (an HTTP or SSH server), a bad address
        text = str(exc).strip().splitlines()
        raise ValueError(
            f"{label}: no Dask scheduler answered ({type(exc).__name__}: {text[0][:200] if text else ''})".rstrip()
        ) from None
    kind = info.get("type") if isinstance(info, dict) else None
    if kind != "Scheduler":
        raise ValueError(f"{label}: a {kind or 'server'} answered, not a Dask scheduler")


@dataclass
class Summary:
    """What a grid run did: results written, tasks failed (rows with an error status) and
    tasks lost with their workers (not written; a rerun measures them)."""

    done: int = 0
    failed: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    workers: int = 1
    dashboard: str | None = None


def call_task(fn: Callable[[Any], Any], task: Any, threads: int | None) -> tuple[bool, Any, int]:
    """Run one task where it lands (a worker or this process): (ok, result or error text,
    torch threads used)."""
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return True, fn(task), torch.get_num_threads()
    except Exception as exc:  # a deterministic failure: recorded, the grid goes on
        text = str(exc).strip().splitlines()
        return False, f"error: {type(exc).__name__}: {text[0] if text else ''}".rstrip(": "), torch.get_num_threads()


def _label(task: Any) -> str:
    key = getattr(task, "key", None)
    return ",".join(map(str, key())) if callable(key) else repr(task)


class _Bar:
    """One tqdm bar over all tasks: done, failed, running."""

    def __init__(self, total: int, progress: bool | None, desc: str) -> None:
        from tqdm.auto import tqdm

        if progress is None:
            progress = sys.stderr.isatty()
        self.bar = tqdm(total=total, disable=not progress, unit="task", desc=desc)
        self.failed = 0
        self.running = 0

    def update(self, ok: bool) -> None:
        self.failed += not ok
        self.bar.update(1)
        self.show()

    def show(self) -> None:
        self.bar.set_postfix(failed=self.failed, running=self.running, refresh=False)

    def close(self) -> None:
        self.bar.close()


@contextmanager
def dask_client(cluster: Cluster):
    """A ``distributed.Client`` for ``cluster``; a LocalCluster is started (on 127.0.0.1,
    dashboard on a free port) and closed with it."""
    import dask
    from distributed import Client, LocalCluster

    local = None
    if not (cluster.scheduler is None and cluster.scheduler_file is None):
        where = cluster.scheduler or f"in {cluster.scheduler_file}"
        try:
            if cluster.scheduler_file is not None:
                client = Client(scheduler_file=cluster.scheduler_file, timeout=f"{SCHEDULER_TIMEOUT_S}s")
            else:
                client = Client(cluster.scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s")
        except Exception as exc:
            text = str(exc).strip().splitlines()
            raise ValueError(
                f"cannot reach the Dask scheduler {where}: {text[0] if text else type(exc).__name__}"
            ) from None
    else:
        with dask.config.set({"distributed.scheduler.allowed-failures": cluster.retries}):
            local = LocalCluster(
                n_workers=cluster.workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                silence_logs=logging.ERROR,
            )
        client = Client(local)
    try:
        yield client
    finally:
        client.close()
        if local is not None:
            local.close()


def run_tasks(
    tasks: Sequence[Any],
    fn: Callable[[Any], Any],
    on_result: Callable[[Any], None],
    cluster: Cluster | None = None,
    failed_result: Callable[[Any, str], Any] | None = None,
    progress: bool | None = None,
    desc: str = "grid",
) -> Summary:
    """Run ``fn(task)`` for every task, in this process or on ``cluster``, and pass each
    result to ``on_result`` (here, as it completes). A dict result gets the columns
    ``workers`` and ``threads_per_worker``. A task that raises is passed on as
    ``failed_result(task, "error: ...")`` (skipped when that is None)."""
    cluster = cluster or Cluster()
    summary = Summary()
    bar = _Bar(len(tasks), progress, desc)

    def deliver(task: Any, ok: bool, result: Any, threads: int) -> None:
        if not ok:
            summary.failed.append(f"{_label(task)}: {result}")
            if failed_result is None:
                bar.update(False)
                return
            result = failed_result(task, result)
        if isinstance(result, dict):
            result.update(workers=summary.workers, threads_per_worker=threads)
        on_result(result)
        summary.done += ok
        bar.update(ok)

    try:
        if cluster.local or not tasks:
            bar.running = 1
            for task in tasks:
                deliver(task, *call_task(fn, task, cluster.threads_per_worker))
            return summary
        _run_on_dask(tasks, fn, deliver, cluster, summary, bar)
        return summary
    finally:
        bar.close()


def _run_on_dask(tasks, fn, deliver, cluster: Cluster, summary: Summary, bar: _Bar) -> None:
    from distributed import as_completed

    with dask_client(cluster) as client:
        summary.dashboard = client.dashboard_link
        summary.workers = len(client.scheduler_info()["workers"])
        print(
            f"dask: {summary.workers} workers at {client.scheduler.address}, dashboard {summary.dashboard}",
            file=sys.stderr,
        )
        futures = {
            client.submit(
                call_task, fn, task, cluster.threads_per_worker or 1, retries=cluster.retries, pure=False
            ): task
            for task in tasks
        }
        last = 0.0
        for future in as_completed(futures):
            task = futures.pop(future)
            try:
                ok, result, threads = future.result()
            except Exception as exc:  # the task was lost with its worker more than `retries` times
                summary.lost.append(f"{_label(task)}: {type(exc).__name__}: {exc}")
                bar.update(False)
                continue
            finally:
                future.release()
            if time.monotonic() - last > 1.0:
                last = time.monotonic()
                summary.workers = len(client.scheduler_info()["workers"])
                bar.running = sum(len(v) for v in client.processing().values())
            deliver(task, ok, result, threads)
