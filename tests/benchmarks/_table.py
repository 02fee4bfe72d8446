"""What the benchmark modules share: a table of rows printed in the terminal summary and,
when an environment variable names a path, written there as CSV."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path


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
