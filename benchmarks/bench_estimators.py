"""asv suites: the cost and the accuracy of each gradient estimator, tracked across commits.

One class, parameterised over (problem, estimator, depth), so that asv's dashboard draws one
line per combination and ``asv compare`` lists them side by side:

- ``time_gradient``: wall time of one ``estimator.gradient(problem)`` call;
- ``peakmem_gradient``: peak resident memory of the benchmark process during that call (asv's
  measure: it includes the interpreter and PyTorch, so read it for changes, not for its level;
  ``track_saved_bytes`` is the exact figure of what the estimator keeps for backward);
- ``track_rel_error``: ||g - g_DEQ|| / ||g_DEQ|| against the tight DEQ reference;
- ``track_saved_bytes``: the bytes autograd saves for backward during the call;
- ``track_operator_evals``: evaluations of T in the call.

The DEQ reference (a tight Anderson + GMRES solve) is computed once in ``setup_cache`` and
never timed. ``restarted_jfb`` is measured at its steady state: ``setup`` makes
``RESTARTS`` calls first and the measured call starts from the state they leave. ``deq``
takes no depth, so it is measured at depth 1 only (asv shows the other depths as n/a).

PyTorch runs on one thread here, so that timings move with the code and not with the load
of the machine. Keep the grid small: ``asv run --quick --python=same`` must stay a matter
of minutes on two cores.
"""

from __future__ import annotations

import warnings

import torch

from jfbbench import estimators, problems
from jfbbench.measure import compare, reference_gradient, saved_tensor_bytes

torch.set_num_threads(1)

#: Problem configurations (name -> settings of ``problems.make``), small enough for CI.
PROBLEMS: dict[str, dict] = {
    "affine": dict(lipschitz=0.9, dim=64, batch=8, seed=0),
    "tanh_layer": dict(lipschitz=0.9, dim=64, batch=16, seed=0),
}
ESTIMATORS = ["deq", "unrolled", "jfb", "restarted_jfb"]
DEPTHS = [1, 8, 32]
#: Calls made before measuring ``restarted_jfb``: it is measured from a warm state.
RESTARTS = 3


def _make(name: str, settings: dict, depth: int, first_depth: int):
    """``estimators.make(name, depth=depth, **settings)``; an estimator without a depth is
    measured at ``first_depth`` only (asv shows the other depths as n/a)."""
    if not estimators.capabilities(name).uses_depth and depth != first_depth:
        raise NotImplementedError(f"{name} takes no depth")  # asv: skipped, shown as n/a
    return estimators.make(name, depth=depth, **settings)


def _quiet_gradient(estimator, problem, state):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimator.gradient(problem, state=state)


class EstimatorSuite:
    """Cost and accuracy of one gradient call, per (problem, estimator, depth)."""

    params = (list(PROBLEMS), ESTIMATORS, DEPTHS)
    param_names = ["problem", "estimator", "depth"]
    timeout = 120
    # time_*: a handful of samples is enough for a call of milliseconds
    repeat = (1, 10, 4.0)
    rounds = 2
    warmup_time = 0.1

    def setup_cache(self) -> dict[str, torch.Tensor]:
        """The DEQ reference gradient of each problem: computed once, never timed."""
        refs = {}
        for name, config in PROBLEMS.items():
            ref = reference_gradient(problems.make(name, **config))
            if not ref.converged:
                raise RuntimeError(f"the DEQ reference of {name} did not converge: {ref.stats}")
            refs[name] = ref.grad
        return refs

    def _estimator(self, estimator: str, depth: int):
        """The estimator a parameter names, at ``depth``."""
        return _make(estimator, {}, depth, DEPTHS[0])

    def setup(self, refs: dict[str, torch.Tensor], problem: str, estimator: str, depth: int) -> None:
        self.estimator = self._estimator(estimator, depth)
        self.problem = problems.make(problem, **PROBLEMS[problem])
        self.reference = refs[problem]
        self.state = None
        if self.estimator.stateful:
            for _ in range(RESTARTS):
                self.state = _quiet_gradient(self.estimator, self.problem, self.state).state

    def _call(self):
        return _quiet_gradient(self.estimator, self.problem, self.state)

    def time_gradient(self, refs, problem, estimator, depth):
        self._call()

    def peakmem_gradient(self, refs, problem, estimator, depth):
        self._call()

    def track_rel_error(self, refs, problem, estimator, depth):
        return compare(self._call().grad, self.reference)["rel_error"]

    track_rel_error.unit = "relative"

    def track_saved_bytes(self, refs, problem, estimator, depth):
        return saved_tensor_bytes(self._call)[1]

    track_saved_bytes.unit = "bytes"

    def track_operator_evals(self, refs, problem, estimator, depth):
        return self._call().stats["operator_evals"]

    track_operator_evals.unit = "evaluations"


#: The field's estimators beside JFB, each with the setting it is measured at (a label of
#: the form "name" or "name key=value"): reversible DEQ (beta = 0.5, the more stable), SHINE
#: with refinement, DEQ with the two CG adjoints, checkpointed and forward-mode unrolling.
FIELD_ESTIMATORS = {
    "revdeq beta=0.5": ("revdeq", dict(beta=0.5)),
    "shine refine=4": ("shine", dict(refine=4)),
    "deq adjoint=cg": ("deq", dict(adjoint="cg")),
    "deq adjoint=cg_normal": ("deq", dict(adjoint="cg_normal")),
    "unrolled checkpoint=4": ("unrolled", dict(checkpoint=4)),
    "forward_mode": ("forward_mode", {}),
}
#: Their depths (revdeq: coupled steps; the estimators without a depth run at the first only).
FIELD_DEPTHS = [8, 32]


class FieldEstimatorSuite(EstimatorSuite):
    """The same measures for the estimators of :data:`FIELD_ESTIMATORS`, per (problem,
    estimator setting, depth): ``track_jvp_evals`` counts the Jacobian-vector products
    (forward_mode, cg_normal) beside ``track_operator_evals``."""

    params = (list(PROBLEMS), list(FIELD_ESTIMATORS), FIELD_DEPTHS)
    param_names = ["problem", "estimator", "depth"]

    def _estimator(self, estimator: str, depth: int):
        name, settings = FIELD_ESTIMATORS[estimator]
        return _make(name, settings, depth, FIELD_DEPTHS[0])

    def track_jvp_evals(self, refs, problem, estimator, depth):
        return self._call().stats.get("jvp_evals", 0)

    track_jvp_evals.unit = "evaluations"
