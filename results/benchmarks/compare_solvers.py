"""Solver overhead per iteration, two versions of ``jfbbench/solvers.py`` side by side in one
process: for each case of the solver-overhead benchmark, K iterations of each version's
solver and K bare applications of T (or K VJPs, for GMRES) are timed in alternation, and each
version's overhead (extra time per iteration / one T or VJP, best of ``--rounds`` blocks) is
printed. Alternation in one process puts both versions under the same load, which a shared
machine moves between two runs by more than the difference sought.

    git show REV:jfbbench/solvers.py > /tmp/solvers_before.py
    python results/benchmarks/compare_solvers.py /tmp/solvers_before.py
    python results/benchmarks/compare_solvers.py /tmp/solvers_before.py --case tanh_512x64 --method gmres

``before`` is the one file ``jfbbench/solvers.py`` of a revision that had it, or the folder of
the package ``jfbbench/solvers/`` of a later one (loaded as a subpackage of ``jfbbench``, whose
other modules it imports):

    mkdir -p /tmp/before && git archive REV jfbbench/solvers | tar -x -C /tmp/before
    python results/benchmarks/compare_solvers.py /tmp/before/jfbbench/solvers
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))

from test_solver_overhead import CASES, ITERS, build  # noqa: E402

import jfbbench.solvers as current  # noqa: E402
from jfbbench.measure import time_call  # noqa: E402


def load(path: Path):
    """The solvers at ``path``: a single module file, or a package folder (as
    ``jfbbench._solvers_before``, so that its relative imports of ``jfbbench`` resolve)."""
    if path.is_dir():
        name = "jfbbench._solvers_before"
        spec = importlib.util.spec_from_file_location(
            name, path / "__init__.py", submodule_search_locations=[str(path)]
        )
    else:
        name = "solvers_before"
        spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="the other solvers.py, or solvers/ package folder")
    parser.add_argument("--case", action="append", choices=list(CASES), help="only these cases")
    parser.add_argument("--method", action="append", choices=["picard", "anderson", "broyden", "gmres"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    before = load(args.before)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    print(f"{'case':22s} {'method':9s} {'unit ms':>8s} {'before':>7s} {'now':>7s}")
    for case in args.case or list(CASES):
        p = build(case)
        x0 = p.initial_point()
        x = x0.detach().requires_grad_(True)
        fx = p.operator(x)
        b = torch.randn_like(x0)

        def vjp(w, fx=fx, x=x):
            return torch.autograd.grad(fx, x, w, retain_graph=True)[0]

        for method in args.method or ["anderson", "gmres"]:
            if method == "gmres":
                runs = {
                    name: (
                        lambda mod=mod, b=b, vjp=vjp: mod.gmres(lambda w: w - vjp(w), b, 0.0, ITERS, per_sample=True)
                    )
                    for name, mod in (("before", before), ("now", current))
                }

                def reference(b=b):
                    for _ in range(ITERS):
                        b - vjp(b)

            else:
                runs = {
                    name: (
                        lambda mod=mod, p=p, x0=x0, method=method: mod.fixed_point(
                            p.operator, x0, 0.0, ITERS, method=method, per_sample=True
                        )
                    )
                    for name, mod in (("before", before), ("now", current))
                }

                def reference(p=p, x0=x0):
                    with torch.no_grad():
                        for _ in range(ITERS):
                            p.operator(x0)

            times: dict[str, list[float]] = {"before": [], "now": [], "reference": []}
            for _ in range(args.rounds):
                for name, fn in runs.items():
                    times[name].append(time_call(fn, min_run_time=0.3).median_s)
                times["reference"].append(time_call(reference, min_run_time=0.3).median_s)
            steps = runs["now"]()[1]["iterations"]
            unit = min(times["reference"]) / ITERS
            over = {name: (min(times[name]) / steps - unit) / unit for name in runs}
            print(f"{case:22s} {method:9s} {1e3 * unit:8.3f} {over['before']:7.3f} {over['now']:7.3f}", flush=True)


if __name__ == "__main__":
    main()
