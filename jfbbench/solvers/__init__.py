"""Forward fixed-point and adjoint linear solvers.

The fixed-point loop lives here once; estimators call these functions. Each solver returns
its result and a dict of statistics, in the manner of TorchDEQ's solvers:

- ``iterations``: evaluations of f (forward) or matrix-vector products (adjoint);
- ``relative_residual`` (the largest over the samples when they stop one by one),
  ``residual`` (forward: ||f(x) - x|| of the whole tensor), ``converged``;
- ``iterations_mean``, ``iterations_max``: per-sample iteration counts;
- ``workspace_bytes``: the bytes of the solver's own buffers (Anderson's history, the
  GMRES basis and Hessenberg, Broyden's low-rank factors), not counting x itself;
- ``method``: the method that finished the solve (``auto`` switches between them) and
  ``switches``: the methods in the order they ran;
- ``reorthogonalised`` (GMRES): the steps whose Gram-Schmidt took a second pass.

A solve that stops at ``max_iter`` says ``converged=False`` and warns.

**Samples.** With ``per_sample=True`` dimension 0 of the state is a batch of independent
samples (as TorchDEQ assumes): each sample is held to the tolerance on its own
(||f(x_i) - x_i|| <= tol ||f(x_i)||), is frozen once it meets it, and Anderson, Broyden and
GMRES keep one history / one Krylov basis per sample (batched linear algebra: ``bmm`` over
the samples). ``per_sample=False`` (and ``None``) treats the state as one vector, which is
always correct. Nothing is guessed from the shape: only the caller knows whether the rows are
independent (the estimators ask the problem, whose ``batched`` attribute declares it).

**Overhead.** No Python loop runs over basis vectors or history entries: Gram-Schmidt is
classical (one pair of batched matmuls), with a second pass only where a bound from the
basis's measured loss of orthogonality asks for it (on a CPU; always on other devices, which
keeps them free of host synchronisations), the Hessenberg's QR is updated with Givens
rotations held as one small orthogonal matrix per sample, Anderson writes f(x) - x straight
into its history at every step and, once the history is full, mixes only every
``ANDERSON_MIX_EVERY`` steps (fixed-point steps between), adding the Gram rows of the steps
since the last mixing in one batched product. Convergence is read on the host every
``check_every`` iterations only (the per-sample masks and residual estimates stay on the
device in between), so a CUDA solve synchronises once per ``check_every`` steps; the
fixed-point loops check sooner where the measured rate says the tolerance is that close
(GMRES may make up to ``check_every - 1`` more steps than it needed).

**Robustness.** No least-squares solve assumes full rank: Anderson's weights solve a
regularised (scaled) Gram system and fall back to a plain fixed-point step where that system
is singular or its solution is not finite; GMRES's triangular factor has its zero pivots
(a basis that ran out: converged or zero samples) replaced so that the corresponding
coefficients are zero. Every buffer takes the dtype and device of the state.

**Layout.** One concept a file: ``_progress`` (the per-sample bookkeeping and statistics every
solve shares), ``_batched`` (the batched products of the histories and bases), one file per
forward method (``picard``, ``anderson``, ``broyden``: a ``Stepper`` each), ``forward`` (the
loop of :func:`fixed_point` and the table ``STEPPERS`` of the methods), ``auto`` (the rule that
chooses between them, forward and adjoint), ``krylov`` (GMRES and its Gram-Schmidt) and
``adjoint`` (:func:`adjoint_fixed_point`, :func:`adjoint_solve`). A new forward method is one
new file and one entry of ``STEPPERS``.
"""

from ._progress import RATE_WINDOW, ConvergenceWarning, sample_count
from .adjoint import ADJOINT_METHODS, adjoint_fixed_point, adjoint_solve
from .anderson import ANDERSON_MEMORY, ANDERSON_MIX_EVERY
from .auto import ANDERSON_GAIN, FIXED_POINT_ENOUGH, KRYLOV_GAIN
from .broyden import BROYDEN_MEMORY
from .forward import FORWARD_METHODS, STEPPERS, Stepper, fixed_point
from .krylov import ORTHOGONALITY, gmres

__all__ = [
    "ADJOINT_METHODS",
    "ANDERSON_GAIN",
    "ANDERSON_MEMORY",
    "ANDERSON_MIX_EVERY",
    "BROYDEN_MEMORY",
    "FIXED_POINT_ENOUGH",
    "FORWARD_METHODS",
    "KRYLOV_GAIN",
    "ORTHOGONALITY",
    "RATE_WINDOW",
    "STEPPERS",
    "ConvergenceWarning",
    "Stepper",
    "adjoint_fixed_point",
    "adjoint_solve",
    "fixed_point",
    "gmres",
    "sample_count",
]
