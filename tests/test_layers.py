"""The package is layered (docs/architecture.md): every module imports, no import runs back up
a layer, and no two of jfbbench's parts import each other, directly or round a circle.

Imports are read from the source (``ast``), those inside functions included, so a lazy import
that runs up a layer is caught as well. A *part* is a top-level module or package of jfbbench
(``solvers``, ``theory``, ``cli``, ...); the root package ``jfbbench`` is a part of its own.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from functools import cache
from itertools import pairwise
from pathlib import Path

import pytest

import jfbbench

ROOT = Path(jfbbench.__file__).parent

#: What sits above each layer (training is ``train`` until it becomes a package).
COMPOSERS = {"sweep", "training", "train", "theory", "front"}
ABOVE_MEASUREMENT = COMPOSERS | {"plots", "cli"}
ABOVE_ESTIMATORS = ABOVE_MEASUREMENT | {"measure", "runner"}
ABOVE_PROBLEMS = ABOVE_ESTIMATORS | {"estimators"}
ABOVE_NUMERICS = ABOVE_PROBLEMS | {"problems"}
FOUNDATION = {"_validation", "_registry", "_journal", "data", "tables"}
LIVE_OBJECTS = {"problems", "estimators", "solvers", "linalg", "measure", "runner"}

#: (part, parts it must not import, why, and a reason when a rule is known broken: xfail until fixed).
RULES = [
    ("problems", ABOVE_PROBLEMS, "a problem knows nothing of estimators or of what measures them", None),
    ("solvers", ABOVE_NUMERICS, "solvers know tensors and callables only", None),
    ("linalg", ABOVE_NUMERICS, "linear algebra knows tensors and callables only", None),
    ("linalg", {"solvers"}, "linalg is beneath the solvers (dense_jacobian lives in linalg)", None),
    ("estimators", ABOVE_ESTIMATORS, "an estimator knows the problem protocol and the solvers only", None),
    ("measure", ABOVE_MEASUREMENT | {"runner"}, "measurement wraps one estimator call", None),
    ("runner", ABOVE_NUMERICS | {"solvers", "linalg"}, "the runner runs tasks it is handed", None),
    ("sweep", {"theory", "training", "train", "front", "plots", "cli"}, "a sweep measures and writes rows", None),
    ("training", {"sweep", "theory", "front", "plots", "cli"}, "training steps and writes rows", None),
    ("train", {"sweep", "theory", "front", "plots", "cli"}, "training steps and writes rows", None),
    ("theory", {"training", "train", "front", "plots", "cli"}, "the theory measures and checks bounds", None),
    ("front", {"sweep", "training", "train", "theory", "plots", "cli", "runner"}, "the front reads tables", None),
    ("plots", LIVE_OBJECTS | {"cli"}, "figures are drawn from tables alone", None),
    *((part, ABOVE_NUMERICS | LIVE_OBJECTS, "the foundation imports nothing of jfbbench", None) for part in FOUNDATION),
]


@cache
def modules() -> dict[str, Path]:
    """Every module of jfbbench: dotted name -> source file."""
    found = {"jfbbench": ROOT / "__init__.py"}
    for info in pkgutil.walk_packages([str(ROOT)], prefix="jfbbench."):
        rel = Path(*info.name.split(".")[1:])
        found[info.name] = ROOT / rel / "__init__.py" if info.ispkg else (ROOT / rel).with_suffix(".py")
    return found


def part(module: str) -> str:
    """``jfbbench.theory.checks`` -> ``theory``; ``jfbbench`` -> ``jfbbench``."""
    return module.split(".")[1] if "." in module else module


def imported(module: str) -> list[tuple[str, int]]:
    """The jfbbench modules ``module`` imports, with the line of each import."""
    path = modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "jfbbench"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != "jfbbench":
                continue
            for alias in node.names:  # ``from . import estimators`` imports a module, not the root
                sub = f"{target}.{alias.name}"
                out.append((sub if sub in modules() else target, node.lineno))
    return out


def edges() -> list[tuple[str, str, str, int]]:
    """(importer part, imported part, importer module, line) for imports between parts."""
    return [(part(m), part(t), m, line) for m in modules() for t, line in imported(m) if part(t) != part(m)]


@pytest.mark.parametrize("module", sorted(modules()))
def test_every_module_imports(module):
    importlib.import_module(module)


def _rule_params():
    for importer, forbidden, why, xfail in RULES:
        marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
        yield pytest.param(
            importer, frozenset(forbidden), why, marks=marks, id=f"{importer}-not-{'-'.join(sorted(forbidden))[:40]}"
        )


@pytest.mark.parametrize("importer, forbidden, why", list(_rule_params()))
def test_no_import_runs_up_a_layer(importer, forbidden, why):
    bad = [f"{m}:{line} imports jfbbench.{t}" for p, t, m, line in edges() if p == importer and t in forbidden]
    assert not bad, f"{why}; but " + "; ".join(bad)


def test_only_the_command_line_imports_the_command_line():
    bad = [f"{m}:{line}" for p, t, m, line in edges() if t == "cli" and p not in {"cli", "__main__"}]
    assert not bad, "jfbbench.cli is imported by " + ", ".join(bad)


def test_no_import_cycle_between_parts():
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for p, t, m, line in edges():
        graph.setdefault(p, set()).add(t)
        where.setdefault((p, t), f"{m}:{line}")
    cycles = []
    for start in sorted(graph):  # a path from start back to start through other parts
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    cycles.append(path + [start])
                elif nxt not in seen and nxt > start:  # each cycle once, from its smallest part
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    described = [" -> ".join(c) + " (" + ", ".join(where[a, b] for a, b in pairwise(c)) + ")" for c in cycles]
    assert not cycles, f"{len(cycles)} import cycles, e.g. " + "; ".join(described[:5])


def test_the_rules_see_lazy_and_relative_imports():
    """The reader resolves ``from .. import x``, ``from ..x import y`` and imports inside
    functions (the layering would pass vacuously otherwise)."""
    theory = {t for t, _ in imported("jfbbench.theory.validate")}
    assert {"jfbbench.problems", "jfbbench.sweep", "jfbbench.theory.checks"} <= theory  # sweep: inside a function
    assert {"jfbbench.estimators", "jfbbench.problems"} <= {t for t, _ in imported("jfbbench")}
    assert ("cli", "jfbbench") in {(p, t) for p, t, _, _ in edges()}  # ``from .. import __version__``
