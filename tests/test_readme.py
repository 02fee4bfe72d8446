"""The README's and the user guide's examples run as written: every Python block on its own,
in a fresh interpreter and an empty folder (a block that needs a download, a GPU or an
optional library says so on its first line, ``# needs: WHAT (why)``, and is skipped where
WHAT is missing, with the reason); their command lines write outside the committed
``results/``, and the guide's custom sweep runs."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import jfbbench
from jfbbench.cli import expand_multi_values, main

ROOT = Path(jfbbench.__file__).resolve().parent.parent
#: The pages a new user copies commands from: the README, getting started and the user guide.
PAGES = [ROOT / "README.md", ROOT / "docs" / "getting_started.md", *sorted((ROOT / "docs" / "guide").glob("*.md"))]
NEEDS = re.compile(r"^# needs: (\S+)(?: \((.*)\))?")


def blocks(language: str) -> list[tuple[str, str]]:
    """(page, code) of every ``language`` block of :data:`PAGES`."""
    out = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        out += [(page.name, code) for code in re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)]
    return out


def missing(need: str) -> bool:
    """Whether what a block needs is absent here: ``download`` (never assumed), ``cuda``, or a
    module."""
    if need == "download":
        return True
    if need == "cuda":
        return not torch.cuda.is_available()
    return importlib.util.find_spec(need) is None


def python_blocks() -> list:
    out = []
    for i, (page, code) in enumerate(blocks("python")):
        first = code.splitlines()[0]
        need = NEEDS.match(first)
        marks = []
        if need and missing(need.group(1)):
            marks.append(pytest.mark.skip(reason=f"needs {need.group(1)}: {need.group(2) or 'absent here'}"))
        out.append(pytest.param(code, id=f"{page}-{i}-{first[:30]}", marks=marks))
    return out


def test_the_pages_have_python_blocks():
    assert len(blocks("python")) >= 8


@pytest.mark.parametrize("code", python_blocks())
def test_a_python_block_runs_on_its_own(code, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stdout + res.stderr


def commands() -> list[list[str]]:
    """The ``jfbbench ...`` command lines of the README's bash blocks (continuations joined,
    comments dropped)."""
    out = []
    for _, block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if "jfbbench" in words:
                out.append(words[words.index("jfbbench") + 1 :])
    return out


def test_no_example_command_writes_into_the_committed_results():
    """Each command's --out is outside results/, and a command without --out writes to its
    default, which is outside results/ too."""
    defaults = {name: cmd.params for name, cmd in main.commands.items()}
    checked = 0
    for args in commands():
        params = {p.name: p for p in defaults.get(args[0], [])}
        if "out" not in params:
            continue
        out = args[args.index("--out") + 1] if "--out" in args else str(params["out"].default or "")
        assert not out.startswith("results"), " ".join(["jfbbench", *args])
        checked += 1
    assert checked >= 6


def test_the_guide_custom_sweep_runs(tmp_path, monkeypatch):
    """The guide's parquet sweep, as written (untimed, to keep the test short)."""
    (args,) = [a for a in commands() if a[0] == "sweep" and any(w.endswith(".parquet") for w in a)]
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, expand_multi_values([*args, "--no-timing"]))
    assert res.exit_code == 0, res.output
    out = args[args.index("--out") + 1]
    table = pd.read_parquet(out)
    assert (table["status"] == "ok").all() and f"{len(table)} rows measured, 0 reused" in res.output
