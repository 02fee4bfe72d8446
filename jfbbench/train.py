"""Bilevel training with any registered estimator: learning curves and the gap to DEQ steps.

    min_theta  1/n_train sum_i L_i(x*_i(theta)),   x*_i(theta) = T_theta(x*_i(theta); y_i)

One outer step = one gradient from the chosen estimator on a mini-batch of training images
(cycled in a fixed order), written into the parameters' ``.grad`` and handed to the outer
optimiser (Adam or SGD). ``restarted_jfb`` keeps its state per training image
(:class:`~jfbbench.estimators.StateBank`), so each image restarts from where its last visit
left it; with ``warm_start=True``, ``deq``, ``jfb``, ``phantom`` and ``neumann`` do the same
with their forward solve (and DEQ with its adjoint solve).

Each step appends one row to a tidy table, every quantity at theta_n, *after* the step:

- ``outer_loss`` = l(theta_n) = L(x*(theta_n)) on the step's training batch, x* solved to
  ``tol`` (the same quantity for every estimator); ``surrogate_loss`` = the estimator's own
  L(x_K) at theta_{n-1} (what it differentiated); ``train_psnr`` at x*(theta_n);
- ``test_psnr`` at the equilibrium x*(theta_n) of the test images (and ``input_psnr``, the
  blurred observations');
- cost of the step's gradient: ``step_operator_evals`` (T), ``step_vjp_evals`` (VJP) and
  ``step_cost`` = T + VJP, their running sums ``operator_evals``, ``vjp_evals``, ``cost``,
  the training wall time (evaluation excluded), ``state_bytes`` (the per-sample states kept)
  and, every ``gap_every`` steps, ``peak_memory_bytes`` of the gradient call (allocator
  peak (:func:`~jfbbench.measure.peak_bytes`: the CPU allocator's, or CUDA's on a GPU), measured on a repeat of the call);
- every ``gap_every`` steps, the relative gap ||g - g_DEQ|| / ||g_DEQ|| between the
  estimator's gradient and a tight DEQ gradient at the same theta_{n-1} on the same batch:
  float64, tolerance ``reference_tol`` (<= 1e-8), its convergence in ``reference_converged``.

Row 0 is the initial theta. Resumable: rows are appended with flush + fsync; a checkpoint
(theta, optimiser state, per-sample states, counters) is written atomically beside the table
after each row, and a rerun continues from it. A divergence (non-finite values, or a test
solve that stays far from its tolerance) is recorded in the row's ``status`` and ends the
run, rows kept.
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
from .measure import compare, peak_bytes
from .solvers import ConvergenceWarning, fixed_point

OPTIMIZERS = ("adam", "sgd")

#: Per-problem presets: ``default`` (32 x 32 patches; minutes on 2 cores), ``large`` (the
#: committed results: the grey image set, 128 x 128 crops for weighted_tv, 64 x 64 for the
#: DRUNet problems) and ``quick`` (seconds; the tests). Problem settings go under ``problem``.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "weighted_tv": {
        "default": dict(
            steps=40, lr=0.15, batch_size=4, gap_every=5, tol=1e-4,
            problem=dict(patch=32, train_per_image=1, test_per_image=3, noise=0.03, weights="per_direction",
                         weight=0.05, mu=0.05, smoothing=0.05),
        ),
        "large": dict(
            steps=40, lr=0.1, batch_size=4, gap_every=5, tol=1e-4,
            problem=dict(images="grey", patch=128, train_per_image=1, test_per_image=2, noise=0.03,
                         weights="per_direction", weight=0.05, mu=0.05, smoothing=0.05),
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
        "large": dict(
            steps=40, lr=0.25, batch_size=4, gap_every=10, tol=1e-4,
            problem=dict(images="grey", patch=64, train_per_image=2, test_per_image=2, noise=0.03, tau=0.3,
                         sigma=0.005),
        ),
        "quick": dict(
            steps=4, lr=0.3, batch_size=2, gap_every=2, tol=1e-3,
            problem=dict(patch=16, kernel_size=5, noise=0.03, pretrain_steps=600, pretrain_lr=3e-3, pretrain_patch=16,
                         lipschitz_iters=3, tau=1.0, sigma=0.01),
        ),
    },
    "drunet_fb": {
        "default": dict(
            steps=30, lr=3e-4, batch_size=4, gap_every=5, tol=1e-4,
            problem=dict(patch=32, test_per_image=3, noise=0.03, tau=1.0, sigma=0.03),
        ),
        "large": dict(
            steps=40, lr=1e-4, batch_size=4, gap_every=10, tol=1e-4,
            problem=dict(images="grey", patch=64, train_per_image=2, test_per_image=2, noise=0.03, tau=1.0,
                         sigma=0.03),
        ),
        "quick": dict(
            steps=4, lr=3e-5, batch_size=4, gap_every=2, tol=1e-3,
            problem=dict(patch=16, kernel_size=5, noise=0.03, pretrain_steps=600, pretrain_lr=3e-3, pretrain_patch=16,
                         lipschitz_iters=3, tau=1.0, sigma=0.03),
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
    warm_start: bool = False
    reference_tol: float = 1e-8
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
        c.adjoint = check_choice(c.adjoint, "adjoint", ("fixed_point", "gmres", "auto"))
        c.extra_steps = check_nonnegative_int(c.extra_steps, "extra_steps")
        if not isinstance(c.warm_start, bool):
            raise ValueError(f"warm_start must be True or False, got {c.warm_start!r}")
        if c.warm_start and not getattr(estimators.factory(c.estimator), "supports_warm_start", False):
            raise ValueError(
                f"warm_start applies to estimators that solve for x* (deq, jfb, phantom, neumann), not {c.estimator!r}"
            )
        c.reference_tol = check_tol(c.reference_tol, "reference_tol")
        if c.reference_tol > 1e-8:
            raise ValueError(f"reference_tol must be <= 1e-8 (the gap's reference DEQ), got {c.reference_tol!r}")
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
        extra.update(dict(adjoint=c.adjoint, adjoint_max_iter=c.max_iter) if c.estimator == "deq" else {})
        extra.update(dict(warm_start=True) if c.warm_start else {})
        self.estimator = estimators.make(c.estimator, depth=c.depth, **common, **extra)
        self.params = self.problem.parameters()
        opt_cls = torch.optim.Adam if c.optimizer == "adam" else torch.optim.SGD
        self.opt = opt_cls(self.params, lr=c.lr)
        self.bank = estimators.StateBank()  # the estimator's per-sample states (stateful estimators)
        self.eval_bank = estimators.StateBank()  # start points of the evaluation solves (not counted)
        self._reference: tuple[Any, Any, Any] | None = None  # (float64 problem, tight DEQ, its bank)
        self.step = 0
        self.counters = dict(operator_evals=0, vjp_evals=0, wall_time=0.0)

    # -- checkpoint ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return dict(
            identity=self.config.identity(),
            step=self.step,
            params=[p.detach().clone() for p in self.params],
            optimizer=self.opt.state_dict(),
            bank=self.bank.state_dict(),
            eval_bank=self.eval_bank.state_dict(),
            counters=dict(self.counters),
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for p, q in zip(self.params, state["params"], strict=True):
                p.copy_(q)
        self.opt.load_state_dict(state["optimizer"])
        self.bank.load_state_dict(state["bank"])
        self.eval_bank.load_state_dict(state["eval_bank"])
        self.step = int(state["step"])
        self.counters = dict(state["counters"])

    # -- evaluation ----------------------------------------------------------------------
    def equilibrium(self, split: str, indices: list[int] | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
        """x*(theta) of ``split`` (the images ``indices``; all when None) by the forward solve
        to ``tol`` (each image to its own tolerance), started from the last equilibrium found
        for those images (a start point only: the result is the same to the tolerance). Not
        counted in the training cost."""
        p, c = self.problem, self.config
        p.select(split, indices)
        keys = [(split, i) for i in p.indices]
        start = self.eval_bank.get(keys, p.initial_point())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            x, st = fixed_point(
                p.operator,
                p.initial_point() if start is None else start,
                c.tol,
                c.max_iter,
                method=c.solver,
                per_sample=None,
            )
        if _finite(x):
            self.eval_bank.put(keys, x)
        return x, st

    def evaluate(self, split: str = "test") -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """x*(theta) on ``split`` by the forward solve (tolerance ``tol``), its per-image PSNR."""
        x, st = self.equilibrium(split)
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
            warm_start=c.warm_start, tol=c.tol, seed=c.seed, preset=c.preset, optimizer=c.optimizer, lr=c.lr,
            batch_size=c.batch_size, step=self.step,
        )  # fmt: skip
        ops, vjps = self.counters["operator_evals"], self.counters["vjp_evals"]
        cols = dict(
            outer_loss=math.nan, surrogate_loss=math.nan, train_psnr=math.nan, test_psnr=math.nan,
            test_psnr_std=math.nan, input_psnr=self._input_psnr(), wall_time=self.counters["wall_time"],
            step_time=math.nan, operator_evals=ops, vjp_evals=vjps, cost=ops + vjps, step_operator_evals=0,
            step_vjp_evals=0, step_cost=0, peak_memory_bytes=math.nan, state_bytes=self.bank.nbytes(),
            forward_residual=math.nan, forward_converged="", grad_norm=math.nan, grad_gap=math.nan,
            grad_cosine=math.nan, reference_tol=c.reference_tol, reference_converged="",
            reference_residual=math.nan, test_converged=True, rho=math.nan, rho_estimate=math.nan,
            weight_mean=math.nan, tau=math.nan, sigma=math.nan, status="ok",
        )  # fmt: skip
        cols.update(self._monitor())
        cols.update(values)
        return {**base, **cols}

    def _input_psnr(self) -> float:
        if not hasattr(self, "_input_psnr_value"):
            p = self.problem
            split, idx = p.split, p.indices
            p.select("test")
            self._input_psnr_value = float(p.psnr(p.y).mean())
            p.select(split, idx)
        return self._input_psnr_value

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

    def _outer_columns(self, idx: list[int]) -> dict[str, Any]:
        """l(theta) = L(x*(theta)) and the PSNR of x*(theta) on the training images ``idx``."""
        x, _ = self.equilibrium("train", idx)
        with torch.no_grad():
            return dict(outer_loss=float(self.problem.loss(x)), train_psnr=float(self.problem.psnr(x).mean()))

    # -- the loop ------------------------------------------------------------------------
    def initial_row(self) -> dict[str, Any]:
        idx = _batches(self.problem.n_images("train"), self.config.batch_size, 1)
        return self._row(**self._outer_columns(idx), **self._test_columns(gap_step=True))

    def _state(self, idx: list[int]) -> Any:
        if not self.estimator.stateful:
            return None
        return self.bank.get(idx, self.estimator.cold_state(self.problem))

    def run(self) -> Iterator[dict[str, Any]]:
        """Yield one row per outer step from ``self.step + 1`` to ``config.steps``; stop after
        a row whose status is not ``ok``."""
        c, p = self.config, self.problem
        while self.step < c.steps:
            self.step += 1
            idx = _batches(p.n_images("train"), c.batch_size, self.step)
            p.select("train", idx)
            state = self._state(idx)
            gap_step = c.gap_every > 0 and (self.step == 1 or self.step % c.gap_every == 0)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                try:
                    est = self.estimator.gradient(p, state=state)
                except (RuntimeError, ValueError) as err:  # e.g. NaN parameters after a bad step
                    yield self._row(status=f"diverged: {type(err).__name__}: {err}".splitlines()[0])
                    return
            step_time = time.perf_counter() - t0
            with torch.no_grad():
                surrogate = float(p.loss(est.x))
            if not _finite(est.grad, est.x, surrogate):
                yield self._row(surrogate_loss=surrogate, status="diverged: non-finite gradient, iterate or loss")
                return
            extra = self._gap_columns(est.grad, idx, state) if gap_step else {}  # at theta_{n-1}; not timed
            t1 = time.perf_counter()
            _set_grads(self.params, est.grad)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            step_time += time.perf_counter() - t1
            if self.estimator.stateful and est.state is not None:
                self.bank.put(idx, est.state)
            ops, vjps = int(est.stats["operator_evals"]), int(est.stats["vjp_evals"])
            self.counters["wall_time"] += step_time
            self.counters["operator_evals"] += ops
            self.counters["vjp_evals"] += vjps
            converged = est.stats.get("converged")
            cols: dict[str, Any] = dict(
                surrogate_loss=surrogate, step_time=step_time,
                operator_evals=self.counters["operator_evals"], vjp_evals=self.counters["vjp_evals"],
                cost=self.counters["operator_evals"] + self.counters["vjp_evals"],
                step_operator_evals=ops, step_vjp_evals=vjps, step_cost=ops + vjps, state_bytes=self.bank.nbytes(),
                forward_residual=float(est.stats["forward_residual"]),
                forward_converged="" if converged is None else bool(converged),
                grad_norm=float(torch.linalg.vector_norm(est.grad)),
            )  # fmt: skip
            cols.update(extra)
            cols.update(self._outer_columns(idx))  # at theta_n, after the step
            cols.update(self._test_columns(gap_step))
            yield self._row(**cols)
            if cols.get("status", "ok") != "ok":
                return

    def _gap_columns(self, grad: torch.Tensor, idx: list[int], state: Any) -> dict[str, Any]:
        """The gap between ``grad`` and a tight float64 DEQ gradient at the same theta on the
        batch ``idx``, and the peak memory of a repeat of the estimator's call."""
        p = self.problem
        _, peak = peak_bytes(lambda: self._repeat(state), torch.device(p.device))
        p.select("train", idx)
        ref, st = self.reference_gradient(idx)
        cmp = compare(grad.to(ref.dtype), ref)
        return dict(
            grad_gap=cmp["rel_error"], grad_cosine=cmp["cosine"], peak_memory_bytes=peak,
            reference_converged=bool(st["converged"]),
            reference_residual=max(float(st["forward_residual"]), float(st.get("adjoint_residual", 0.0))),
        )  # fmt: skip

    def _repeat(self, state: Any) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.estimator.gradient(self.problem, state=state)

    def reference_gradient(self, idx: list[int]) -> tuple[torch.Tensor, dict[str, Any]]:
        """The DEQ gradient at the current theta on the training images ``idx``, in float64
        (a twin of the problem, same seed and settings, parameters copied), forward
        (Anderson) and adjoint (GMRES) solves to ``reference_tol`` within 5 ``max_iter``; each image's solve starts from where its
        last reference solve ended. Returns the gradient and the DEQ's statistics."""
        c = self.config
        if self._reference is None:
            twin = problems.make(c.problem, seed=c.seed, **{**c.problem_kwargs, "dtype": torch.float64})
            deq = estimators.make(
                "deq", tol=c.reference_tol, max_iter=5 * c.max_iter, solver="anderson", adjoint="gmres",
                adjoint_max_iter=5 * c.max_iter, warm_start=True,
            )  # fmt: skip
            self._reference = (twin, deq, estimators.StateBank())
        twin, deq, bank = self._reference
        with torch.no_grad():
            for q, p in zip(twin.parameters(), self.params, strict=True):
                q.copy_(p.detach().to(q.dtype))
        twin.select("train", idx)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = deq.gradient(twin, state=bank.get(idx, deq.cold_state(twin)))
        if _finite(est.grad):
            bank.put(idx, est.state)
        return est.grad, est.stats


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
