"""What the benchmark modules share: PyTorch on one thread for the whole module, and a table
of rows (``table_fixture``) printed in the terminal summary and, when an environment variable
names a path, written there as CSV."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """PyTorch on one thread for the module (timings then move with the code, not with the
    machine's load); the previous setting is restored after it. Imported by each module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def report_table(request, rows: list[dict], env_var: str, title: str, header: str, line: Callable[[dict], str]) -> None:
    """Print ``rows`` under ``title`` (one ``line(row)`` each) and write them to the CSV
    path in ``env_var`` when it is set."""
    if not rows:
        return
    lines = [header] + [line(r) for r in rows]
    path = os.environ.get(env_var)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        lines.append(f"written to {path}")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_sep("=", title)
            for text in lines:
                reporter.write_line(text)


def table_fixture(env_var: str, title: str, header: str, line: Callable[[dict], str]):
    """A module-scoped fixture giving the list of the module's rows; at the end of the module
    they are printed in the terminal summary and, with ``<env_var>=path``, written there as
    CSV (:func:`report_table`)."""

    @pytest.fixture(scope="module")
    def table(request):
        rows: list[dict] = []
        yield rows
        report_table(request, rows, env_var, title, header, line)

    return table
