"""Bilevel training with any registered estimator: learning curves and the gap to DEQ steps.

    min_theta  1/n_train sum_i L_i(x*_i(theta)),   x*_i(theta) = T_theta(x*_i(theta); y_i)

One outer step = one gradient from the chosen estimator on a mini-batch of training images
(cycled in a fixed order), written into the parameters' ``.grad`` and handed to the outer
optimiser (Adam or SGD). ``restarted_jfb`` keeps its state per training image
(:class:`~jfbbench.estimators.StateBank`), so each image restarts from where its last visit
left it; with ``warm_start=True``, ``deq``, ``jfb``, ``phantom`` and ``neumann`` do the same
with their forward solve (and DEQ with its adjoint solve). Every estimator is built with
the settings it declares only (``estimators.capabilities(name).accepts``): ``depth``, the
forward solve's, the adjoint's, ``extra_steps``, and ``estimator_kwargs`` (e.g. ``cycles`` of
``trm`` and ``hrm_one_step``).

**Deep supervision** (``deep_supervision`` = N_sup > 1, as the Hierarchical Reasoning Model,
Wang et al. 2025, arXiv 2506.21734, and the Tiny Recursive Model, Jolicoeur-Martineau 2025,
arXiv 2510.04871, train): an outer step is N_sup supervised steps on its batch, each one
gradient and one optimiser step, the k-th started from the detached state the (k - 1)-th
left (kept per sample in the :class:`~jfbbench.estimators.StateBank`, so the batch's next
visit goes on from there as well; with ``reset_state=True`` each outer step starts its batch
from the cold start instead, as the published models reset an example's state when it
enters). At fixed theta that is restarted JFB with one restart
per supervised step (Davy, Briceno-Arias, Pustelnik 2025, arXiv 2506.13239). It needs an
estimator that carries a state: a stateful one (``restarted_jfb``, ``trm``,
``hrm_one_step``) or one that warm-starts its forward solve (``deq``, ``jfb``, ``phantom``,
``neumann`` with ``warm_start=True``, whose carried state is where the next solve starts);
any other (``unrolled``) is refused: unrolling from the carried state is ``restarted_jfb``
with ``extra_steps=0``. The row of an outer step sums the cost of its N_sup supervised
steps (``step_operator_evals``, ``step_vjp_evals``, seconds), ``optimizer_steps`` counts
the optimiser steps so far, and ``surrogate_loss``, ``grad_norm`` and ``forward_residual``
are the last supervised step's; the gap to DEQ and the peak memory are the first's.

Each step appends one row to a tidy table, every quantity at theta_n, *after* the step:

- ``outer_loss`` = l(theta_n) = L(x*(theta_n)) on the step's training batch, x* solved to
  ``tol`` (the same quantity for every estimator); ``surrogate_loss`` = the estimator's own
  L(x_K) at theta_{n-1} (what it differentiated);
- the problem's held-out metrics (``problem.metrics(x)``, names in ``problem.metric_names``)
  at the equilibrium x*(theta_n) of the test split as ``test_<name>`` (imaging: ``test_psnr``,
  ``test_psnr_std``; classification: ``test_accuracy``, a fraction in [0, 1], ``test_loss``),
  the same on the step's training batch as ``train_<name>`` (spreads left out) and, where the
  problem has ``baseline_metrics()``, ``input_<name>`` (imaging: the blurred observations' PSNR);
- cost of the step's gradient: ``step_operator_evals`` (T), ``step_vjp_evals`` (VJP),
  ``step_jvp_evals`` (JVP: ``forward_mode``, ``deq`` with ``adjoint="cg_normal"``; 0 for the
  others) and ``step_cost`` = T + VJP + JVP, their running sums ``operator_evals``,
  ``vjp_evals``, ``jvp_evals``, ``cost``,
  the training wall time (evaluation excluded), ``state_bytes`` (the per-sample states kept)
  and, every ``gap_every`` steps, ``peak_memory_bytes`` of the gradient call (allocator
  peak (:func:`~jfbbench.measure.peak_bytes`: the CPU allocator's, or CUDA's on a GPU), measured on a repeat of the call);
- every ``gap_every`` steps, the relative gap ||g - g_DEQ|| / ||g_DEQ|| between the
  estimator's gradient and a tight DEQ gradient at the same theta_{n-1} on the same batch:
  float64, tolerance ``reference_tol`` (<= 1e-8), its convergence in ``reference_converged``.

A problem without an equilibrium to solve for declares ``eval_steps`` (recursive_reasoning
in its free mode, ``lipschitz=None``): its held-out metrics and ``outer_loss`` are then read
after that many applications of T from the cold start (``test_converged`` empty), not at a
solve that would not converge, and no gap to DEQ is measured.

Row 0 is the initial theta. Resumable: rows are appended with flush + fsync; a checkpoint
(theta, optimiser state, per-sample states, counters) is written atomically beside the table
after each row, and a rerun continues from it. A divergence (non-finite values, or a test
solve that stays far from its tolerance) is recorded in the row's ``status`` and ends the
run, rows kept.

The package, one concept a file: :mod:`.config` (:class:`TrainConfig` and the presets),
:mod:`.trainer` (:class:`Trainer`, the loop that yields rows), :mod:`.run` (:func:`train`:
one run into its resumable table) and :mod:`.grid` (a grid of runs, each its own table, run
by :func:`train_grid` through :mod:`jfbbench.runner`, as sweeps are).
"""

from .config import OPTIMIZERS, PRESETS, TrainConfig, presets_for
from .grid import DEFAULT_OUT, EXTRA_FIELDS, GRID_FIELDS, Run, grid_runs, out_paths, run_training, train_grid
from .run import checkpoint_path, progress_enabled, train
from .trainer import Trainer

__all__ = [
    "DEFAULT_OUT",
    "EXTRA_FIELDS",
    "GRID_FIELDS",
    "OPTIMIZERS",
    "PRESETS",
    "Run",
    "TrainConfig",
    "Trainer",
    "checkpoint_path",
    "grid_runs",
    "out_paths",
    "presets_for",
    "progress_enabled",
    "run_training",
    "train",
    "train_grid",
]
