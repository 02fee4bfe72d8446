"""One training run's loop: :class:`Trainer` holds the problem, estimator, optimiser and
per-sample states, and yields one row per outer step (see :mod:`jfbbench.training`)."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from .. import estimators, problems
from ..measure import compare, peak_bytes
from ..solvers import ConvergenceWarning, fixed_point
from .config import TrainConfig, carries_state


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


#: the products a training step's cost adds up: applications of T, vector-Jacobian and
#: Jacobian-vector products (forward_mode, deq with adjoint="cg_normal")
COUNTED = ("operator_evals", "vjp_evals", "jvp_evals")


def _count(value: Any) -> int | float:
    """An evaluation count as an int where it is whole (a VJP through part of a cycle is a fraction)."""
    v = float(value)
    return int(v) if v.is_integer() else v


def _finite(*values: Any) -> bool:
    for v in values:
        if isinstance(v, torch.Tensor):
            if not bool(torch.isfinite(v).all()):
                return False
        elif isinstance(v, float) and not math.isfinite(v):
            return False
    return True


class _Diverged(Exception):
    """A supervised step that failed: the columns of the row that records it."""

    def __init__(self, **columns: Any) -> None:
        super().__init__(columns.get("status", "diverged"))
        self.columns = columns


class Trainer:
    """Holds one run's problem, estimator, optimiser and state; :meth:`run` yields rows."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = c = config.resolved()
        torch.manual_seed(c.seed)
        self.problem = problems.make(c.problem, seed=c.seed, **c.problem_kwargs)
        for attr in ("select", "n_images", "metrics"):
            if not hasattr(self.problem, attr):
                raise ValueError(
                    f"problem {c.problem!r} has no {attr}(): training needs select(), n_images() and metrics()"
                )
        #: the held-out metrics (``test_<name>``), those read on the training batch too
        #: (``train_<name>``: all but spreads ``*_std``) and the baseline's (``input_<name>``)
        names = getattr(self.problem, "metric_names", None)
        if names is None:  # undeclared: the keys of the metrics at the cold start
            with torch.no_grad():
                names = tuple(self.problem.metrics(self.problem.initial_point()))
        self.metric_names = tuple(names)
        self.train_metric_names = tuple(m for m in self.metric_names if not m.endswith("_std"))
        self.capabilities = estimators.capabilities(c.estimator)
        #: whether the estimator's state goes from one visit of an image (and one supervised
        #: step) to the next
        self.stateful = carries_state(c.estimator, c.warm_start)
        self.estimator = estimators.make(c.estimator, **c.estimator_settings())
        #: held-out metrics after this many applications of T from the cold start instead of at
        #: x* (a problem without an equilibrium declares it: recursive_reasoning's free mode)
        self.eval_steps: int | None = getattr(self.problem, "eval_steps", None)
        self.params = self.problem.parameters()
        opt_cls = torch.optim.Adam if c.optimizer == "adam" else torch.optim.SGD
        self.opt = opt_cls(self.params, lr=c.lr)
        self.bank = estimators.StateBank()  # the estimator's per-sample states (stateful estimators)
        self.eval_bank = estimators.StateBank()  # start points of the evaluation solves (not counted)
        self._reference: tuple[Any, Any, Any] | None = None  # (float64 problem, tight DEQ, its bank)
        self.step = 0
        self.counters = dict(operator_evals=0, vjp_evals=0, jvp_evals=0, wall_time=0.0)

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
        self.counters = {"jvp_evals": 0, **state["counters"]}  # a checkpoint from before JVPs were counted

    # -- evaluation ----------------------------------------------------------------------
    def equilibrium(self, split: str, indices: list[int] | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
        """x*(theta) of ``split`` (the images ``indices``; all when None) by the forward solve
        to ``tol`` (each image to its own tolerance), started from the last equilibrium found
        for those images (a start point only: the result is the same to the tolerance). Not
        counted in the training cost. Where the problem declares ``eval_steps`` (no equilibrium
        to solve for), T applied that many times from the cold start instead (``converged``
        None)."""
        p, c = self.problem, self.config
        p.select(split, indices)
        if self.eval_steps is not None:
            with torch.no_grad():
                x = p.initial_point()
                for _ in range(self.eval_steps):
                    x = p.operator(x)
            return x, dict(converged=None, relative_residual=math.nan, iterations=self.eval_steps)
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
                per_sample=problems.is_batched(p),
            )
        if _finite(x):
            self.eval_bank.put(keys, x)
        return x, st

    def evaluate(self, split: str = "test") -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """x*(theta) on ``split`` by the forward solve (tolerance ``tol``), its per-image PSNR
        (imaging problems; :meth:`metrics` for any problem)."""
        x, st = self.equilibrium(split)
        return x, self.problem.psnr(x), st

    def metrics(self, split: str = "test") -> tuple[torch.Tensor, dict[str, float], dict[str, Any]]:
        """x*(theta) on ``split`` by the forward solve (tolerance ``tol``) and the problem's
        metrics there."""
        x, st = self.equilibrium(split)
        return x, dict(self.problem.metrics(x)), st

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
            problem=c.problem, estimator=c.estimator, depth=c.depth if self.capabilities.uses_depth else "",
            warm_start=c.warm_start, tol=c.tol, seed=c.seed, preset=c.preset, optimizer=c.optimizer, lr=c.lr,
            batch_size=c.batch_size, deep_supervision=c.deep_supervision, reset_state=c.reset_state,
            **c.estimator_kwargs, step=self.step,
            optimizer_steps=self.step * c.deep_supervision,
        )  # fmt: skip
        ops, vjps, jvps = (self.counters[k] for k in ("operator_evals", "vjp_evals", "jvp_evals"))
        cols = dict(
            outer_loss=math.nan, surrogate_loss=math.nan, **dict.fromkeys(self.metric_columns("train"), math.nan),
            **dict.fromkeys(self.metric_columns("test"), math.nan), **self._baseline(), wall_time=self.counters["wall_time"],
            step_time=math.nan, operator_evals=ops, vjp_evals=vjps, jvp_evals=jvps, cost=ops + vjps + jvps,
            step_operator_evals=0, step_vjp_evals=0, step_jvp_evals=0, step_cost=0, peak_memory_bytes=math.nan, state_bytes=self.bank.nbytes(),
            forward_residual=math.nan, forward_converged="", grad_norm=math.nan, grad_gap=math.nan,
            grad_cosine=math.nan, reference_tol=c.reference_tol, reference_converged="",
            reference_residual=math.nan, test_converged=True, rho=math.nan, rho_estimate=math.nan,
            weight_mean=math.nan, tau=math.nan, sigma=math.nan, status="ok",
        )  # fmt: skip
        cols.update(self._monitor())
        cols.update(values)
        return {**base, **cols}

    def metric_columns(self, split: str) -> list[str]:
        """The columns of the metrics read on ``split`` (``test_<name>``, ``train_<name>``)."""
        return [f"{split}_{m}" for m in (self.metric_names if split == "test" else self.train_metric_names)]

    def _baseline(self) -> dict[str, float]:
        """``input_<metric>``: the problem's ``baseline_metrics()`` on the test split (imaging: the
        PSNR of the observations), computed once; none where the problem has no baseline."""
        if not hasattr(self, "_baseline_values"):
            p = self.problem
            self._baseline_values: dict[str, float] = {}
            if hasattr(p, "baseline_metrics"):
                split, idx = p.split, p.indices
                p.select("test")
                self._baseline_values = {f"input_{k}": float(v) for k, v in p.baseline_metrics().items()}
                p.select(split, idx)
        return self._baseline_values

    def _test_columns(self, gap_step: bool) -> dict[str, Any]:
        x, values, st = self.metrics("test")
        cols: dict[str, Any] = {f"test_{k}": v for k, v in values.items()}
        cols["test_converged"] = "" if st["converged"] is None else bool(st["converged"])
        if not _finite(x, *values.values()):
            cols["status"] = "diverged: non-finite test state or metrics"
        elif st["converged"] is not None and not (st["relative_residual"] < 1e-2):
            cols["status"] = f"diverged: test forward solve relative residual {st['relative_residual']:.2e}"
        elif gap_step and not getattr(self.problem, "contraction_guaranteed", True):
            cols["rho_estimate"] = self.problem.estimate_lipschitz(x, iters=10)
        return cols

    def _outer_columns(self, idx: list[int]) -> dict[str, Any]:
        """l(theta) = L(x*(theta)) and the metrics of x*(theta) on the training images ``idx``
        (``train_<metric>``, spreads left out)."""
        x, _ = self.equilibrium("train", idx)
        with torch.no_grad():
            values = self.problem.metrics(x)
            loss = float(self.problem.loss(x))
        return dict(outer_loss=loss, **{f"train_{m}": float(values[m]) for m in self.train_metric_names})

    # -- the loop ------------------------------------------------------------------------
    def initial_row(self) -> dict[str, Any]:
        idx = _batches(self.problem.n_images("train"), self.config.batch_size, 1)
        return self._row(**self._outer_columns(idx), **self._test_columns(gap_step=True))

    def _state(self, idx: list[int]) -> Any:
        if not self.stateful:
            return None
        return self.bank.get(idx, self.estimator.cold_state(self.problem))

    def run(self) -> Iterator[dict[str, Any]]:
        """Yield one row per outer step from ``self.step + 1`` to ``config.steps``; stop after
        a row whose status is not ``ok``. An outer step is ``deep_supervision`` supervised
        steps on its batch (:meth:`supervised_step`), its row their sums."""
        c, p = self.config, self.problem
        while self.step < c.steps:
            self.step += 1
            idx = _batches(p.n_images("train"), c.batch_size, self.step)
            gap_step = c.gap_every > 0 and (self.step == 1 or self.step % c.gap_every == 0)
            ops = vjps = jvps = 0
            step_time = 0.0
            cols: dict[str, Any] = {}
            for k in range(c.deep_supervision):
                try:
                    est, surrogate, t, extra = self.supervised_step(
                        idx, gap=gap_step and k == 0, cold=c.reset_state and k == 0
                    )
                except _Diverged as d:
                    yield self._row(**d.columns)
                    return
                ops += _count(est.stats["operator_evals"])
                vjps += _count(est.stats["vjp_evals"])
                jvps += _count(est.stats.get("jvp_evals", 0))
                step_time += t
                cols.update(extra)  # the first supervised step's, at theta_{n-1}
            self.counters["wall_time"] += step_time
            self.counters["operator_evals"] += ops
            self.counters["vjp_evals"] += vjps
            self.counters["jvp_evals"] += jvps
            converged = est.stats.get("converged")
            cols.update(
                surrogate_loss=surrogate, step_time=step_time,
                operator_evals=self.counters["operator_evals"], vjp_evals=self.counters["vjp_evals"],
                jvp_evals=self.counters["jvp_evals"], cost=sum(self.counters[k] for k in COUNTED),
                step_operator_evals=ops, step_vjp_evals=vjps, step_jvp_evals=jvps, step_cost=ops + vjps + jvps, state_bytes=self.bank.nbytes(),
                forward_residual=float(est.stats["forward_residual"]),
                forward_converged="" if converged is None else bool(converged),
                grad_norm=float(torch.linalg.vector_norm(est.grad)),
            )  # fmt: skip
            try:  # at theta_n, after the step
                cols.update(self._outer_columns(idx))
                cols.update(self._test_columns(gap_step))
            except (RuntimeError, ValueError) as err:  # e.g. parameters the problem cannot take
                cols["status"] = f"diverged: {type(err).__name__}: {err}".splitlines()[0]
            yield self._row(**cols)
            if cols.get("status", "ok") != "ok":
                return

    def supervised_step(
        self, idx: list[int], gap: bool = False, cold: bool = False
    ) -> tuple[Any, float, float, dict[str, Any]]:
        """One gradient of the estimator on the training images ``idx``, started from their
        states in the bank (stateful estimators; the cold start when ``cold``), and one
        optimiser step with it; the state it
        leaves goes back to the bank, the start of the next supervised step (deep
        supervision) or of the images' next visit. Returns the estimate, the surrogate loss
        L(x_K) at the parameters before the step, the seconds of the gradient and the step, and,
        when ``gap``, the gap and memory columns (:meth:`_gap_columns`, not timed). Raises
        :class:`_Diverged` on a failed call or a non-finite result."""
        p = self.problem
        p.select("train", idx)
        state = None if cold else self._state(idx)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            try:
                est = self.estimator.gradient(p, state=state)
            except (RuntimeError, ValueError) as err:  # e.g. NaN parameters after a bad step
                raise _Diverged(status=f"diverged: {type(err).__name__}: {err}".splitlines()[0]) from None
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            surrogate = float(p.loss(est.x))
        if not _finite(est.grad, est.x, surrogate):
            raise _Diverged(surrogate_loss=surrogate, status="diverged: non-finite gradient, iterate or loss")
        extra = self._gap_columns(est.grad, idx, state) if gap else {}  # at theta_{n-1}; not timed
        t1 = time.perf_counter()
        _set_grads(self.params, est.grad)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        seconds += time.perf_counter() - t1
        if self.stateful and est.state is not None:
            self.bank.put(idx, est.state)
        return est, surrogate, seconds, extra

    def _gap_columns(self, grad: torch.Tensor, idx: list[int], state: Any) -> dict[str, Any]:
        """The gap between ``grad`` and a tight float64 DEQ gradient at the same theta on the
        batch ``idx``, and the peak memory of a repeat of the estimator's call. No gap where the
        problem has no equilibrium (``eval_steps``): the memory alone."""
        p = self.problem
        _, peak = peak_bytes(lambda: self._repeat(state), torch.device(p.device))
        if self.eval_steps is not None:
            return dict(peak_memory_bytes=peak)
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
