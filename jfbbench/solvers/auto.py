"""The ``auto`` rule: when fixed-point steps are enough, when Anderson (forward) or GMRES
(adjoint) takes over, and when a method that does not pay for its own work is given up.

Every decision reads iteration counts and measured rates of the residual, never wall time: the
same call takes the same path on a loaded machine.
"""

from __future__ import annotations

import math

import torch

from ._progress import RATE_WINDOW, _predicted, _Progress
from .anderson import ANDERSON_MEMORY

Tensor = torch.Tensor

#: GMRES is kept by ``auto`` only where its measured rate is at least this power of
#: fixed-point iteration's, the spectral radius of J read from the Ritz values of its first
#: cycle (it must save about 10% of the matvecs to pay for its own work)
KRYLOV_GAIN = 1.1
#: Anderson is kept by ``auto`` only where its measured rate is at least this power of the
#: rate of the fixed-point steps just before it: it must cut the steps by a third, to pay for
#: its own work per step (0.1-0.5 of one T at n x batch >= 1e4, memory 10, mixing every
#: ``ANDERSON_MIX_EVERY`` steps: ``results/benchmarks/solver_overhead.csv``) against a
#: fixed-point rate that is optimistic (measured early, when the fast components die first).
#: On a spectrum near a circle (a tight tanh layer) it saves a few per cent of the steps:
#: given up there
ANDERSON_GAIN = 1.5
#: ``auto`` stays with fixed-point iteration where it will converge within this many more
#: iterations at its measured rate
FIXED_POINT_ENOUGH = 30


def _fixed_point_too_slow(progress: _Progress, rate: float) -> bool:
    """Whether fixed-point steps at their measured ``rate`` would take more than
    ``FIXED_POINT_ENOUGH`` more iterations to bring the residual under the tolerance (False
    where the rate is not measurable yet)."""
    return not math.isnan(rate) and _predicted(progress.worst, progress.tol, rate) > FIXED_POINT_ENOUGH


def _auto_forward(
    current: str,
    progress: _Progress,
    since: int,
    picard_rate: float,
    evals: int,
    switches: list[str],
    memory: int | None,
) -> str | None:
    """The method ``auto`` should switch to now, or None to go on. Anderson is judged once,
    ``2 * probe`` iterations after it started, against the rate of the fixed-point steps just
    before it (``ANDERSON_GAIN``); a method given up is not tried again."""
    probe = max(RATE_WINDOW, (memory or ANDERSON_MEMORY) + 1)
    if evals - since < probe or len(switches) > 2:
        return None
    if current == "picard":
        return "anderson" if _fixed_point_too_slow(progress, progress.rate(since, RATE_WINDOW)) else None
    judged = progress.history[-2][0] - since >= 2 * probe if len(progress.history) > 1 else True
    if current == "anderson" and evals - since >= 2 * probe and not judged:
        rate = progress.rate(since)
        if not (rate < picard_rate**ANDERSON_GAIN):
            return "picard"
    return None


def _krylov_does_not_pay(hessenberg: Tensor, before: Tensor, after: Tensor, k: int) -> bool:
    """Whether one GMRES cycle of k steps on A = I - J^T reduced the residual (from
    ``before`` to ``after``, per sample) by less than fixed-point iteration would, at the
    rate max |1 - theta| over the Ritz values theta of A (the spectral radius of J), to the
    power ``KRYLOV_GAIN``."""
    b, a = float(torch.linalg.vector_norm(before)), float(torch.linalg.vector_norm(after))
    if not (b > 0 and a > 0 and k >= 2):
        return False
    theta = torch.linalg.eigvals(hessenberg.cpu())
    radius = float((1 - theta).abs().max())
    if not (0 < radius < 1):
        return False
    return (a / b) ** (1.0 / k) >= radius**KRYLOV_GAIN
