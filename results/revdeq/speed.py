"""Reversible DEQ's time per coupled step against unrolling's time per step, at the same depth on
the same problem, with the earlier implementation and the two groupings of the backward's
products as variants of the same run.

torch.utils.benchmark, one thread, the process's CPU time (``time.process_time``: the machine is
shared, and wall time counts the time other jobs hold the core). Each variant is measured in
ROUNDS blocked_autorange blocks of at least MIN_RUN_TIME seconds, interleaved with the other
variants of the same (problem, depth); median and IQR over the pooled blocks, and their minimum
(the least disturbed). Ratios are to unrolled at the same depth in the same run.

Usage: PYTHONPATH=. python results/revdeq/speed.py [out.csv] [--quick]   (--quick: two problems, depth 16)
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils import benchmark

from jfbbench import environment, estimators, problems
from jfbbench.estimators import revdeq as revdeq_module
from jfbbench.estimators.base import CountingOperator, Estimate

BETA = 0.5
DEPTHS = (16, 64)
ROUNDS = 10  # each variant measured ROUNDS times, interleaved with the others, MIN_RUN_TIME seconds each
MIN_RUN_TIME = 0.05
#: (problem, settings): the three small analytic families at their default sizes, weighted TV at
#: 128 x 128 (as results/memory), and three families whose T shares a cached theta-only graph
CASES: list[tuple[str, dict[str, Any]]] = [
    ("affine", dict(lipschitz=0.9)),
    ("tikhonov", dict(lipschitz=0.9)),
    ("tanh_layer", dict(lipschitz=0.9)),
    ("weighted_tv", dict(lipschitz=0.9, patch=128)),
    ("conv_deq", dict(lipschitz=0.9)),
    ("ignn", dict(lipschitz=0.9)),
    ("mondeq", dict(lipschitz=0.9)),
]
FIELDS = ["problem", "rho", "state_size", "dtype", "estimator", "variant", "depth", "median_s", "iqr_s", "min_s",
          "blocks", "s_per_step", "ratio_to_unrolled", "ratio_to_unrolled_min", "operator_evals", "vjp_evals",
          "reconstruction_ok", "reconstruction_error", "grad_rel_diff"]  # fmt: skip


class OldRevDEQ(revdeq_module.RevDEQ):
    """The backward loop revdeq had before: J(y_{n+1})^T gz alone (graph retained), then one
    product through both evaluations to z_n and theta; unscaled adjoints. For measurement only."""

    def _gradient(self, problem: Any, params: list[torch.Tensor], state: Any) -> Estimate:
        op = CountingOperator(problem)
        beta, keep = self.beta, 1.0 - self.beta
        x0 = problem.initial_point().detach()
        norm = torch.linalg.vector_norm
        with torch.no_grad():
            y, z = x0, x0
            z_max = y_max = norm(x0)
            for _ in range(self.depth):
                y = keep * y + beta * op(z)
                z = keep * z + beta * op(y)
                z_max, y_max = torch.maximum(z_max, norm(z)), torch.maximum(y_max, norm(y))
        z_out = z.detach().requires_grad_(True)
        loss_grads = torch.autograd.grad(problem.loss(z_out), [z_out, *params], allow_unused=True)
        gz, gy = loss_grads[0], torch.zeros_like(z)
        grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(loss_grads[1:], params, strict=True)]
        for _ in range(self.depth):
            y_leaf = y.detach().requires_grad_(True)
            f_y = op(y_leaf)
            z = torch.add(z, f_y.detach(), alpha=-beta).div_(keep)
            (j_y,) = torch.autograd.grad(f_y, y_leaf, gz, retain_graph=True)
            gy = torch.add(gy, j_y, alpha=beta)
            z_leaf = z.detach().requires_grad_(True)
            f_z = op(z_leaf)
            y = torch.add(y, f_z.detach(), alpha=-beta).div_(keep)
            out = torch.autograd.grad([f_y, f_z], [z_leaf, *params], [gz, gy], allow_unused=True)
            torch._foreach_add_(
                grads,
                [d if d is not None else torch.zeros_like(g) for d, g in zip(out[1:], grads, strict=True)],
                alpha=beta,
            )
            gz = torch.add(out[0], gz, alpha=keep / beta).mul_(beta)
            gy = gy.mul_(keep)
        err = float(norm(z - x0)) / max(float(z_max), torch.finfo(x0.dtype).tiny)
        err_y = float(norm(y - x0)) / max(float(y_max), torch.finfo(x0.dtype).tiny)
        ok = math.isfinite(err) and math.isfinite(err_y) and max(err, err_y) <= torch.finfo(x0.dtype).eps ** 0.5
        grad = torch.cat([g.reshape(-1) for g in grads]).detach()
        stats = dict(operator_evals=op.evals, vjp_evals=2 * self.depth, reconstruction_ok=ok, reconstruction_error=err)
        return Estimate(grad=grad, x=z_out.detach(), stats=stats)


def revdeq(depth: int, grouping: str | None = None, direct: bool | None = None) -> Callable[[Any], Estimate]:
    """revdeq as the package has it, the grouping forced or not, the direct engine call on
    (None: as found) or off."""
    est = estimators.make("revdeq", depth=depth, beta=BETA)
    est.vjp_grouping = grouping

    def run(problem: Any) -> Estimate:
        saved = revdeq_module._direct_engine
        if direct is False:
            revdeq_module._direct_engine = False
        try:
            return est.gradient(problem)
        finally:
            revdeq_module._direct_engine = saved

    return run


def variants(depth: int) -> list[tuple[str, str, Callable[[Any], Estimate]]]:
    return [
        ("unrolled", "", estimators.make("unrolled", depth=depth).gradient),
        ("revdeq", "", revdeq(depth)),
        ("revdeq", "split", revdeq(depth, "split")),
        ("revdeq", "joint", revdeq(depth, "joint")),
        ("revdeq", "autograd.grad", revdeq(depth, direct=False)),
        ("revdeq", "before", OldRevDEQ(depth=depth, beta=BETA).gradient),
    ]


def measure(problem: Any, depth: int) -> list[dict[str, Any]]:
    runs = variants(depth)
    estimates = [fn(problem) for _, _, fn in runs]  # also warms the problem's caches
    reference = estimates[1].grad
    blocks: list[list[benchmark.Measurement]] = [[] for _ in runs]
    for _ in range(ROUNDS):
        for i, (_, _, fn) in enumerate(runs):
            timer = benchmark.Timer(
                "fn(problem)", globals=dict(fn=fn, problem=problem), num_threads=1, timer=time.process_time
            )
            blocks[i].append(timer.blocked_autorange(min_run_time=MIN_RUN_TIME))
    merged = [benchmark.Measurement.merge(m)[0] for m in blocks]
    unrolled, unrolled_min = merged[0].median, min(merged[0].times)
    x = problem.initial_point()
    rows = []
    for (name, label, _), est, m in zip(runs, estimates, merged, strict=True):
        diff = float(torch.linalg.vector_norm(est.grad - reference) / torch.linalg.vector_norm(reference))
        rows.append(dict(
            problem=problem.name, rho=problem.lipschitz, state_size=x.numel(), dtype=str(x.dtype).replace("torch.", ""),
            estimator=name, variant=label, depth=depth, median_s=m.median, iqr_s=m.iqr, min_s=min(m.times),
            blocks=len(m.times), s_per_step=m.median / depth, ratio_to_unrolled=m.median / unrolled,
            ratio_to_unrolled_min=min(m.times) / unrolled_min,
            operator_evals=est.stats["operator_evals"], vjp_evals=est.stats["vjp_evals"],
            reconstruction_ok=est.stats.get("reconstruction_ok", ""),
            reconstruction_error=est.stats.get("reconstruction_error", ""),
            grad_rel_diff=diff if name == "revdeq" else "",
        ))  # fmt: skip
    return rows


def main(out: str, quick: bool = False) -> None:
    torch.set_num_threads(1)
    cases = CASES[:2] if quick else CASES
    depths = DEPTHS[:1] if quick else DEPTHS
    environment.sidecar(out).unlink(missing_ok=True)
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        writer.writeheader()
        for name, settings in cases:
            problem = problems.make(name, **settings)
            for depth in depths:
                for row in measure(problem, depth):
                    writer.writerow(row)
                    if row["variant"] in ("", "before"):
                        print(
                            f"{name:11s} N={depth:3d} {row['estimator']:8s} {row['variant']:7s} "
                            f"{row['s_per_step'] * 1e6:10.1f} us/step  x{row['ratio_to_unrolled']:.2f} "
                            f"(min x{row['ratio_to_unrolled_min']:.2f})",
                            flush=True,
                        )
                fh.flush()
    environment.record(out, environment.collect())


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(args[0] if args else "results/revdeq/speed.csv", quick="--quick" in sys.argv)
