"""pytest-benchmark suite: the solvers' own work per iteration, against one application of T
(forward solvers) or one vector-Jacobian product (GMRES), measured in the same test.

For each case and method, K iterations of the solver (tolerance 0: it never stops early) are
timed against K bare applications of T without a graph (or K VJPs, for GMRES on
A = I - J^T), in alternation (``ROUNDS`` blocks each, ``jfbbench.measure.time_call``):

    overhead = (min solver time / K - min reference time / K) / (min reference time / K)

the extra time per iteration as a fraction of one T (one VJP). Target: <= 0.2 for Anderson
and GMRES at n x batch >= 1e4. ``picard`` is the control (its own work is a comparison every
``check_every`` steps: it should read about 0); ``anderson`` mixes every
``ANDERSON_MIX_EVERY`` steps (the default), ``anderson-classical`` at every step. ``second_passes``: the GMRES steps whose
Gram-Schmidt took a second full pass. Kept out of the default run (marker ``benchmark``)::

    pytest -m benchmark tests/benchmarks/test_solver_overhead.py
    JFBBENCH_SOLVER_OVERHEAD_CSV=results/benchmarks/solver_overhead.csv pytest -m benchmark tests/benchmarks/test_solver_overhead.py

PyTorch runs on one thread.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from _table import one_thread, table_fixture  # noqa: F401  (one_thread: an autouse fixture)

from jfbbench import problems
from jfbbench.measure import time_call
from jfbbench.solvers import fixed_point, gmres

pytestmark = pytest.mark.benchmark(group="solver-overhead", min_rounds=3, max_time=0.5, warmup=True)

#: case -> (problem, settings, images of an imaging batch); n x batch >= 1e4 in each
CASES = {
    "affine_1000x32": ("affine", dict(lipschitz=0.99, dim=1000, batch=32, n_params=32), None),
    "tanh_512x64": ("tanh_layer", dict(lipschitz=0.99, dim=512, batch=64, input_dim=64), None),
    "weighted_tv_128x128x2": ("weighted_tv", dict(lipschitz=0.99, patch=128, dtype=torch.float64), [0, 1]),
    "affine_100x100": ("affine", dict(lipschitz=0.99, dim=100, batch=100, n_params=32), None),
}
METHODS = ["picard", "anderson", "anderson-classical", "broyden", "gmres"]
#: method -> fixed_point's settings (``anderson-classical``: Anderson mixing at every step,
#: against the default's mixing every ``ANDERSON_MIX_EVERY`` steps)
SETTINGS = {"anderson-classical": dict(method="anderson", mix_every=1)}
ITERS = 40
ROUNDS = 3
MIN_RUN_TIME = 0.3


overhead_table = table_fixture(
    "JFBBENCH_SOLVER_OVERHEAD_CSV",
    "solver work per iteration / one T or VJP (target <= 0.2 for anderson, gmres)",
    f"{'case':22s} {'method':9s} {'per iter ms':>11s} {'unit ms':>8s} {'overhead':>8s}",
    lambda r: (
        f"{r['case']:22s} {r['method']:9s} {1e3 * r['per_iteration_s']:11.3f} {1e3 * r['unit_s']:8.3f} {r['overhead']:8.3f}"
    ),
)


def build(case: str):
    name, config, select = CASES[case]
    p = problems.make(name, **config)
    if select is not None:
        p.select("train", select)
    return p


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", list(CASES))
def test_solver_overhead_per_iteration(benchmark, overhead_table, case, method):
    p = build(case)
    x0 = p.initial_point()
    if method == "gmres":
        x = x0.detach().requires_grad_(True)
        fx = p.operator(x)
        b = torch.randn_like(x0)

        def vjp(w):
            return torch.autograd.grad(fx, x, w, retain_graph=True)[0]

        def solver():
            return gmres(lambda w: w - vjp(w), b, 0.0, ITERS, per_sample=True)

        def reference():
            for _ in range(ITERS):
                b - vjp(b)

    else:

        def solver():
            settings = SETTINGS.get(method, dict(method=method))
            return fixed_point(p.operator, x0, 0.0, ITERS, per_sample=True, **settings)

        def reference():
            with torch.no_grad():
                for _ in range(ITERS):
                    p.operator(x0)

    def quiet():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return solver()

    _, stats = quiet()
    assert stats["iterations"] >= ITERS  # it ran all the way (tolerance 0)
    benchmark(quiet)
    if benchmark.stats is None:
        return
    times, refs = [], []
    for _ in range(ROUNDS):
        times.append(time_call(quiet, min_run_time=MIN_RUN_TIME).median_s)
        refs.append(time_call(reference, min_run_time=MIN_RUN_TIME).median_s)
    per_iteration, unit = min(times) / stats["iterations"], min(refs) / ITERS
    row = dict(
        case=case,
        problem=CASES[case][0],
        numel=x0.numel(),
        method=method,
        unit="vjp" if method == "gmres" else "T",
        iterations=stats["iterations"],
        workspace_bytes=stats["workspace_bytes"],
        second_passes=stats.get("reorthogonalised", 0),
        mix_every=stats.get("mix_every") if method.startswith("anderson") else None,
        threads=1,
        per_iteration_s=per_iteration,
        unit_s=unit,
        overhead=(per_iteration - unit) / unit,
    )
    benchmark.extra_info.update(row)
    overhead_table.append(row)
