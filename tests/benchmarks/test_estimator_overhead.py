"""pytest-benchmark suite: how much an estimator costs beyond the operator work it must do.

For each estimator and depth K, one ``gradient`` call is timed against the operator work its
statistics say it did, done by hand on the same problem and state in the same test:

    reference = vjp_evals x [T(x) with the graph + one VJP]  +  (operator_evals - vjp_evals) x [T(x) without graph]

(on ``tanh_layer``, W = rho V / ||V||_2 is built and back-propagated once per call in both,
as T reuses it: the reference's VJPs go to W, then one VJP from W to V).

that is K graph steps for ``unrolled`` and ``restarted_jfb``, and K graph steps plus the
forward solve's iterations for ``jfb``. "One VJP" back-propagates a cotangent through one
application of T to x and to the parameters, as autograd does at each unrolled step. The two
are timed in alternation (``ROUNDS`` blocks each, with ``jfbbench.measure.time_call``) and the
ratio is min(estimator medians) / min(reference medians): on a shared machine, load only adds
time, so the least-disturbed block of each is compared. A ratio near 1 means the estimator adds
little beyond the operator work (target <= 1.25). ``deq`` is left out: it has no depth, and
its adjoint VJPs (in x only) are not the unit measured here.

pytest-benchmark also times each gradient call and each unit of operator work, so that
``--benchmark-autosave`` / ``--benchmark-compare`` track them across commits. Kept out of the
default run (marker ``benchmark``)::

    pytest -m benchmark tests/benchmarks                          # tables in the terminal
    JFBBENCH_OVERHEAD_CSV=results/benchmarks/overhead.csv pytest -m benchmark tests/benchmarks

PyTorch runs on one thread (timings then move with the code, not with the machine's load).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from _table import one_thread, table_fixture  # noqa: F401  (one_thread: an autouse fixture)

from jfbbench import estimators, problems
from jfbbench.measure import time_call

pytestmark = pytest.mark.benchmark(group="overhead", min_rounds=5, max_time=0.5, warmup=True, warmup_iterations=1)

#: case name -> (problem, settings): two where the operator work dominates (tanh_layer's T
#: is a 256 x 256 matrix product after the spectral normalisation of W, an SVD made once per
#: call; affine's is one matrix product), and a small one where the Python overhead shows.
CASES = {
    "tanh_256x64": ("tanh_layer", dict(lipschitz=0.9, dim=256, input_dim=64, batch=64, seed=0)),
    "affine_256x64": ("affine", dict(lipschitz=0.9, dim=256, n_params=64, batch=64, seed=0)),
    "tanh_16x4": ("tanh_layer", dict(lipschitz=0.9, dim=16, input_dim=8, batch=4, seed=0)),
}
ESTIMATORS = ["unrolled", "jfb", "restarted_jfb"]
DEPTHS = [8, 32]
#: restarted_jfb is measured from the state left by this many calls
RESTARTS = 3
#: alternating timing blocks of the estimator and of its reference work
ROUNDS = 5
MIN_RUN_TIME = 0.2


overhead_table = table_fixture(
    "JFBBENCH_OVERHEAD_CSV",
    "estimator overhead: one gradient / its operator work (target <= 1.25)",
    f"{'case':13s} {'estimator':14s} {'K':>3s} {'time ms':>9s} {'ref ms':>9s} {'ratio':>6s}",
    lambda r: (
        f"{r['case']:13s} {r['estimator']:14s} {r['depth']:3d} {1e3 * r['time_s']:9.3f} {1e3 * r['reference_s']:9.3f} {r['ratio']:6.3f}"
    ),
)


class Case:
    """A problem of ``CASES`` with its equilibrium and the two units of operator work."""

    def __init__(self, case: str) -> None:
        name, config = CASES[case]
        self.problem = problems.make(name, **config)
        self.params = self.problem.parameters()
        self.x = estimators.make("jfb").gradient(self.problem).x
        self.w = torch.randn_like(self.x)

    def operator_and_vjp(self):
        """T(x) with the graph, then one VJP to x and to the parameters."""
        xr = self.x.detach().requires_grad_(True)
        return torch.autograd.grad(self.problem.operator(xr), [xr, *self.params], self.w)

    def graph_steps(self, n: int):
        """n x [T(x) with the graph + one VJP to x and to T's inputs], with what T derives
        from the parameters (tanh_layer's W = rho V / ||V||_2, an SVD) built once and
        back-propagated once, as in one gradient call: a problem with a ``weight()``
        rebuilds it per call, not per step."""
        derive = getattr(self.problem, "weight", None)
        if derive is None:
            for _ in range(n):
                self.operator_and_vjp()
            return
        w = derive()  # cached with its graph: T reuses it while the graph lives
        others = [q for q in self.params if q is not getattr(self.problem, "V", None)]
        total = torch.zeros_like(w)
        for _ in range(n):
            xr = self.x.detach().requires_grad_(True)
            grads = torch.autograd.grad(self.problem.operator(xr), [xr, w, *others], self.w)
            total = total + grads[1]
        torch.autograd.grad(w, self.problem.V, total)

    def operator_no_graph(self):
        """T(x) without a graph, as in the forward solve."""
        with torch.no_grad():
            return self.problem.operator(self.x)


@pytest.mark.parametrize("case", list(CASES))
def test_reference_operator_and_vjp(benchmark, case):
    benchmark(Case(case).operator_and_vjp)


@pytest.mark.parametrize("case", list(CASES))
def test_reference_operator_no_graph(benchmark, case):
    benchmark(Case(case).operator_no_graph)


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("case", list(CASES))
def test_estimator_overhead(benchmark, overhead_table, case, estimator, depth):
    c = Case(case)
    est = estimators.make(estimator, depth=depth)
    state = None
    if est.stateful:
        for _ in range(RESTARTS):
            state = est.gradient(c.problem, state=state).state

    def gradient():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return est.gradient(c.problem, state=state)

    stats = gradient().stats
    n_graph = stats["vjp_evals"]
    n_no_graph = stats["operator_evals"] - n_graph

    def reference():
        c.graph_steps(n_graph)
        for _ in range(n_no_graph):
            c.operator_no_graph()

    benchmark(gradient)
    if benchmark.stats is None:
        return  # --benchmark-disable: no timing, no ratio
    times, refs = [], []
    for _ in range(ROUNDS):
        times.append(time_call(gradient, min_run_time=MIN_RUN_TIME).median_s)
        refs.append(time_call(reference, min_run_time=MIN_RUN_TIME).median_s)
    row = dict(
        case=case,
        problem=CASES[case][0],
        config=" ".join(f"{k}={v}" for k, v in CASES[case][1].items()),
        estimator=estimator,
        depth=depth,
        threads=1,
        operator_vjp_steps=n_graph,
        operator_no_graph_steps=n_no_graph,
        time_s=min(times),
        reference_s=min(refs),
        ratio=min(times) / min(refs),
        pytest_benchmark_median_s=float(benchmark.stats.stats.median),
    )
    benchmark.extra_info.update(row)
    overhead_table.append(row)
