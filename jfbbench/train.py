"""Bilevel training with any registered estimator: learning curves and the gap to DEQ steps.

    min_theta  1/|train| sum_i L_i(x*_i(theta)),   x*_i(theta) = T_theta(x*_i(theta); y_i)

One outer step = one gradient from the chosen estimator on a mini-batch of training images
(cycled in a fixed order), written into the parameters' ``.grad`` and handed to the outer
optimiser (Adam or SGD). ``restarted_jfb`` keeps its state per training image
(:class:`~jfbbench.estimators.StateBank`), so each image restarts from where its last visit
left it.

Each step appends one row to a tidy table: outer loss, train and test PSNR (test at the DEQ
equilibrium of the current theta, solved to ``tol``), wall time of the training work alone
(evaluation excluded), cumulative operator and VJP counts, and every ``gap_every`` steps the
relative gap ||g - g_DEQ|| / ||g_DEQ|| between the estimator's gradient and the DEQ gradient
at the same theta on the same batch. Row 0 is the initial theta.

Resumable: rows are appended with flush + fsync; a checkpoint (theta, optimiser state,
restarted-JFB states, counters) is written atomically beside the table after each row, and a
rerun continues from it. A divergence (non-finite values, or a test solve that stays far
from its tolerance) is recorded in the row's ``status`` and ends the run, rows kept.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import estimators, problems
from ._journal import CsvJournal
from ._validation import check_choice, check_depth, check_nonnegative_int, check_seed, check_tol
from .measure import compare
from .solvers import ConvergenceWarning, fixed_point

OPTIMIZERS = ("adam", "sgd")

#: Per-problem presets: ``default`` (the committed results; minutes on 2 cores) and
#: ``quick`` (seconds; the tests). Problem settings go under ``problem``.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "weighted_tv": {
        "default": dict(
            steps=40, lr=0.15, batch_size=4, gap_every=5, tol=1e-4,
            problem=dict(patch=32, train_per_image=1, test_per_image=3, noise=0.03, weights="per_direction",
                         weight=0.05, mu=0.05, smoothing=0.05),
        ),
        "quick": dict(
            steps=6, lr=0.3, batch_size=2, gap_every=3, tol=1e-4,
            problem=dict(patch=16, kernel_size=5, noise=0.03, weight=0.05, mu=0.1, smoothing=0.1),
        ),
    },
    "pnp_fb": {
        "default": dict(
            steps=40, lr=0.25, batch_size=4, gap_every=5, tol=1e-4,
            problem=dict(patch=32, test_per_image=3, noise=0.03, tau=0.3, sigma=0.005),
        ),
        "quick": dict(
            steps=4, lr=0.3, batch_size=2, gap_every=2, tol=1e-3,
            problem=dict(patch=16, kernel_size=5, noise=0.03, nc=(4, 4, 4, 4), pretrain_steps=5, lipschitz_iters=3,
                         tau=0.3, sigma=0.005),
        ),
    },
    "drunet_fb": {
        "default": dict(
            steps=30, lr=3e-4, batch_size=4, gap_every=5, tol=1e-4,
            problem=dict(patch=32, test_per_image=3, noise=0.03, tau=1.0, sigma=0.03),
        ),
        "quick": dict(
            steps=3, lr=1e-3, batch_size=2, gap_every=2, tol=1e-3,
            problem=dict(patch=16, kernel_size=5, noise=0.03, nc=(4, 4, 4, 4), pretrain_steps=5, lipschitz_iters=3),
        ),
    },
}  # fmt: skip


@dataclass
class TrainConfig:
    """One training run. ``None`` fields take the preset's value for the problem."""

    problem: str
    estimator: str
    depth: int = 1
    seed: int = 0
    preset: str = "default"
    steps: int | None = None
    lr: float | None = None
    optimizer: str = "adam"
    batch_size: int | None = None
    gap_every: int | None = None
    tol: float | None = None
    max_iter: int = 2000
    solver: str = "anderson"
    adjoint: str = "gmres"
    extra_steps: int = 0
    problem_kwargs: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> TrainConfig:
        """Fill the ``None`` fields from the preset and check every value."""
        if self.problem not in PRESETS:
            raise ValueError(
                f"problem must be one of {', '.join(map(repr, PRESETS))} for training; got {self.problem!r}"
            )
        estimators.factory(self.estimator)  # a registered name or package.module:factory
        preset = PRESETS[self.problem]
        check_choice(self.preset, "preset", tuple(preset))
        p = preset[self.preset]
        c = copy.deepcopy(self)
        for name in ("steps", "lr", "batch_size", "gap_every", "tol"):
            if getattr(c, name) is None:
                setattr(c, name, p[name])
        c.problem_kwargs = {**p["problem"], **self.problem_kwargs}
        c.depth = check_depth(c.depth)
        c.seed = check_seed(c.seed)
        c.steps = check_nonnegative_int(c.steps, "steps")
        c.batch_size = check_depth(c.batch_size, "batch_size")
        c.gap_every = check_nonnegative_int(c.gap_every, "gap_every")
        c.tol = check_tol(c.tol)
        c.max_iter = check_depth(c.max_iter, "max_iter")
        c.optimizer = check_choice(c.optimizer, "optimizer", OPTIMIZERS)
        c.adjoint = check_choice(c.adjoint, "adjoint", ("fixed_point", "gmres"))
        c.extra_steps = check_nonnegative_int(c.extra_steps, "extra_steps")
        if not (isinstance(c.lr, (int, float)) and math.isfinite(c.lr) and c.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {c.lr!r}")
        return c

    def identity(self) -> dict[str, Any]:
        """The columns that name a run (everything but ``steps``, which a rerun may extend)."""
        d = asdict(self)
        d.pop("steps")
        d["problem_kwargs"] = repr(sorted(d["problem_kwargs"].items()))
        return d


def _batches(n_images: int, batch_size: int, step: int) -> list[int]:
    """The training images of outer step ``step`` (>= 1): a fixed cyclic order."""
    b = min(batch_size, n_images)
    start = (step - 1) * b
    return [(start + j) % n_images for j in range(b)]


def _set_grads(params: list[torch.Tensor], flat: torch.Tensor) -> None:
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.dtype).clone()
        offset += n


def _finite(*values: Any) -> bool:
    for v in values:
        if isinstance(v, torch.Tensor):
            if not bool(torch.isfinite(v).all()):
                return False
        elif isinstance(v, float) and not math.isfinite(v):
            return False
    return True


def checkpoint_path(out: Path) -> Path:
    return out.with_suffix(".ckpt.pt")


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


class Trainer:
    """Holds one run's problem, estimator, optimiser and state; :meth:`run` yields rows."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = c = config.resolved()
        torch.manual_seed(c.seed)
        self.problem = problems.make(c.problem, seed=c.seed, **c.problem_kwargs)
        for attr in ("select", "n_images", "psnr"):
            if not hasattr(self.problem, attr):
                raise ValueError(f"problem {c.problem!r} has no {attr}(): training needs an imaging problem")
        common = dict(tol=c.tol, max_iter=c.max_iter, solver=c.solver)
        extra: dict[str, Any] = dict(extra_steps=c.extra_steps) if c.estimator == "restarted_jfb" else {}
        deq_settings = dict(adjoint=c.adjoint, adjoint_max_iter=c.max_iter)
        extra.update(deq_settings if c.estimator == "deq" else {})
        self.estimator = estimators.make(c.estimator, depth=c.depth, **common, **extra)
        self.deq = estimators.make("deq", **common, **deq_settings)
        self.params = self.problem.parameters()
        opt_cls = torch.optim.Adam if c.optimizer == "adam" else torch.optim.SGD
        self.opt = opt_cls(self.params, lr=c.lr)
        self.bank = estimators.StateBank()
        self.step = 0
        self.counters = dict(operator_evals=0, vjp_evals=0, wall_time=0.0)

    # -- checkpoint ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        n = self.problem.n_images("train")
        bank = {i: self.bank.get([i])[0] for i in range(n) if i in self.bank}
        return dict(
            identity=self.config.identity(),
            step=self.step,
            params=[p.detach().clone() for p in self.params],
            optimizer=self.opt.state_dict(),
            bank=bank,
            counters=dict(self.counters),
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for p, q in zip(self.params, state["params"], strict=True):
                p.copy_(q)
        self.opt.load_state_dict(state["optimizer"])
        for i, s in state["bank"].items():
            self.bank.put([i], s.unsqueeze(0))
        self.step = int(state["step"])
        self.counters = dict(state["counters"])

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self, split: str = "test") -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """x*(theta) on ``split`` by the forward solve (tolerance ``tol``), its per-image PSNR."""
        self.problem.select(split)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            x, st = fixed_point(
                self.problem.operator, self.problem.initial_point(), self.config.tol, self.config.max_iter,
                method=self.config.solver,
            )  # fmt: skip
        return x, self.problem.psnr(x), st

    def _monitor(self) -> dict[str, float]:
        out: dict[str, float] = {}
        p = self.problem
        if hasattr(p, "current_lipschitz"):
            out["rho"] = p.current_lipschitz()
        if hasattr(p, "weights") and callable(p.weights):
            out["weight_mean"] = float(p.weights().detach().mean())
        if hasattr(p, "tau") and hasattr(p, "sigma"):
            out["tau"] = float(p.tau().detach().reshape(-1)[0])
            out["sigma"] = float(p.sigma().detach().reshape(-1)[0])
        return out

    def _row(self, **values: Any) -> dict[str, Any]:
        c = self.config
        base = dict(
            problem=c.problem, estimator=c.estimator, depth=c.depth if self.estimator.uses_depth else "",
            seed=c.seed, preset=c.preset, optimizer=c.optimizer, lr=c.lr, batch_size=c.batch_size, step=self.step,
        )  # fmt: skip
        cols = dict(
            outer_loss=math.nan, train_psnr=math.nan, test_psnr=math.nan, test_psnr_std=math.nan,
            wall_time=self.counters["wall_time"], step_time=math.nan,
            operator_evals=self.counters["operator_evals"], vjp_evals=self.counters["vjp_evals"],
            step_operator_evals=0, forward_residual=math.nan, grad_norm=math.nan, grad_gap=math.nan,
            grad_cosine=math.nan, test_converged=True, rho=math.nan, rho_estimate=math.nan, weight_mean=math.nan,
            tau=math.nan, sigma=math.nan, status="ok",
        )  # fmt: skip
        cols.update(self._monitor())
        cols.update(values)
        return {**base, **cols}

    def _test_columns(self, gap_step: bool) -> dict[str, Any]:
        x, psnr, st = self.evaluate("test")
        cols: dict[str, Any] = dict(
            test_psnr=float(psnr.mean()), test_psnr_std=float(psnr.std()) if psnr.numel() > 1 else 0.0,
            test_converged=bool(st["converged"]),
        )  # fmt: skip
        if not _finite(x, psnr) or not (st["relative_residual"] < 1e-2):
            cols["status"] = f"diverged: test forward solve relative residual {st['relative_residual']:.2e}"
        elif gap_step and not getattr(self.problem, "contraction_guaranteed", True):
            cols["rho_estimate"] = self.problem.estimate_lipschitz(x, iters=10)
        return cols

    # -- the loop ------------------------------------------------------------------------
    def initial_row(self) -> dict[str, Any]:
        return self._row(**self._test_columns(gap_step=True))

    def run(self) -> Iterator[dict[str, Any]]:
        """Yield one row per outer step from ``self.step + 1`` to ``config.steps``; stop after
        a row whose status is not ``ok``."""
        c, p = self.config, self.problem
        while self.step < c.steps:
            self.step += 1
            idx = _batches(p.n_images("train"), c.batch_size, self.step)
            p.select("train", idx)
            state = self.bank.get(idx) if self.estimator.stateful else None
            gap_step = c.gap_every > 0 and (self.step == 1 or self.step % c.gap_every == 0)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                try:
                    est = self.estimator.gradient(p, state=state)
                except (RuntimeError, ValueError) as err:  # e.g. NaN parameters after a bad step
                    yield self._row(status=f"diverged: {type(err).__name__}: {err}".splitlines()[0])
                    return
            with torch.no_grad():
                loss = float(p.loss(est.x))
                train_psnr = float(p.psnr(est.x).mean())
            if not _finite(est.grad, est.x, loss):
                yield self._row(outer_loss=loss, status="diverged: non-finite gradient, iterate or loss")
                return
            step_time = time.perf_counter() - t0
            gap = self._gap(est.grad) if gap_step else {}  # at theta_n, before the step; not timed
            t1 = time.perf_counter()
            _set_grads(self.params, est.grad)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            step_time += time.perf_counter() - t1
            if self.estimator.stateful and est.state is not None:
                self.bank.put(idx, est.state)
            self.counters["wall_time"] += step_time
            self.counters["operator_evals"] += int(est.stats["operator_evals"])
            self.counters["vjp_evals"] += int(est.stats["vjp_evals"])
            cols: dict[str, Any] = dict(
                outer_loss=loss, train_psnr=train_psnr, step_time=step_time,
                operator_evals=self.counters["operator_evals"], vjp_evals=self.counters["vjp_evals"],
                step_operator_evals=int(est.stats["operator_evals"]),
                forward_residual=float(est.stats["forward_residual"]),
                grad_norm=float(torch.linalg.vector_norm(est.grad)),
            )  # fmt: skip
            cols.update(gap)
            cols.update(self._test_columns(gap_step))
            yield self._row(**cols)
            if cols.get("status", "ok") != "ok":
                return

    def _gap(self, grad: torch.Tensor) -> dict[str, Any]:
        """Relative gap and cosine between ``grad`` and the DEQ gradient at the same theta, on
        the batch currently selected."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ref = self.deq.gradient(self.problem).grad
        c = compare(grad, ref)
        return dict(grad_gap=c["rel_error"], grad_cosine=c["cosine"])


def _same_run(row: dict[str, str], config: TrainConfig) -> bool:
    want = dict(problem=config.problem, estimator=config.estimator, seed=str(config.seed), preset=config.preset)
    return all(row.get(k) == v for k, v in want.items())


def _finished_rows(config: TrainConfig, out: Path) -> list[dict[str, Any]] | None:
    ckpt = checkpoint_path(out)
    if not (out.exists() and ckpt.exists()):
        return None
    rows = CsvJournal(out).rows()
    if not rows or not _same_run(rows[0], config):
        return None
    last = rows[-1]
    if int(last["step"]) < config.steps and last.get("status", "ok") == "ok":
        return None
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    if state["identity"] != config.identity() or int(state["step"]) != int(last["step"]):
        return None
    return rows


def train(config: TrainConfig, out: str | Path | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """Run (or resume) one training run; returns its rows. With ``out``, rows are appended to
    that CSV as they come and a checkpoint ``<out>.ckpt.pt`` is kept beside it; a rerun with
    the same settings continues after the last checkpointed step (and a larger ``steps``
    extends a finished run). A run whose last row is a divergence is not retried."""
    from tqdm.auto import tqdm

    if out is not None:  # a finished (or diverged) run: return its rows without building anything
        done = _finished_rows(config.resolved(), Path(out))
        if done is not None:
            return done
    trainer = Trainer(config)
    c = trainer.config
    table = CsvJournal(Path(out)) if out is not None else None
    rows: list[dict[str, Any]] = []
    ckpt = checkpoint_path(Path(out)) if out is not None else None
    if table is not None and ckpt is not None:
        existing = table.rows()
        if existing and not _same_run(existing[0], c):
            raise ValueError(
                f"out={str(out)!r} already holds a different run ({existing[0].get('estimator')!r}); choose another path"
            )
        if existing and ckpt.exists():
            state = torch.load(ckpt, map_location="cpu", weights_only=False)
            if state["identity"] != c.identity():
                raise ValueError(
                    f"checkpoint {str(ckpt)!r} was written with other settings; remove it or choose another out"
                )
            trainer.load_state_dict(state)
            rows = [r for r in existing if int(r["step"]) <= trainer.step]
            if len(rows) != len(existing):
                table.rewrite(rows)
            if rows and rows[-1].get("status", "ok") != "ok":
                return rows
        elif existing:  # rows but no checkpoint: nothing to resume from, start again
            table.path.unlink()
            table.columns = None

    def record(row: dict[str, Any]) -> None:
        rows.append(row)
        if table is not None and ckpt is not None:
            table.append(row)
            _save_checkpoint(ckpt, trainer.state_dict())

    if not rows:
        record(trainer.initial_row())
    bar = tqdm(
        total=c.steps, initial=trainer.step, disable=not progress, desc=f"{c.problem}/{c.estimator}", leave=False
    )
    with bar:
        for row in trainer.run():
            record(row)
            bar.set_postfix(test_psnr=f"{row['test_psnr']:.2f}", refresh=False)
            bar.update(1)
    return rows


def progress_enabled() -> bool:
    return sys.stderr.isatty()
