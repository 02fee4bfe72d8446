"""What the estimators give at the equilibrium of one problem, over the depths K.

:func:`measure_equilibrium` runs JFB-K, unrolled-K, restarted JFB-K and DEQ at the
equilibrium :func:`~jfbbench.theory.equilibrium.find_equilibrium` computed (errors against the
exact gradient, bytes saved for backward, the forward iterates);
:func:`measurements_from_table` reads the same from an existing sweep table.
:mod:`jfbbench.theory.checks` judges the bounds against these numbers; nothing here decides
what holds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from .. import estimators
from ..measure import saved_tensor_bytes
from .equilibrium import NOISE_EPS, Equilibrium

Tensor = torch.Tensor

DEFAULT_DEPTHS = tuple(range(1, 65))
DEFAULT_RESTART_DEPTHS = (1, 2, 4, 8)


@dataclass
class Measurements:
    """What the estimators gave on one problem configuration, keyed by depth K.

    ``restart[K]`` lists (m, gap_m, ||s_m - x*||) for the calls m = 0, 1, ... of restarted
    JFB-K at fixed theta (gap_m = ||g_m - g^JFB_K||, s_m the start of call m); ``forward[K]``
    is (||x_K - x*||, ||x_{K+1} - x_K||) for the Picard iterates from the cold start.
    ``restart_lipschitz[K]`` is ||dg_K/ds (x*)||_2 (:func:`start_gradient_lipschitz`).
    ``deq_bytes`` and ``jfb1_bytes`` are the bytes DEQ and JFB-1 save for backward,
    ``step_bytes`` those of one application of T with a graph to x and theta (B6).
    """

    jfb_error: dict[int, float] = field(default_factory=dict)
    unrolled_error: dict[int, float] = field(default_factory=dict)
    jfb_bytes: dict[int, float] = field(default_factory=dict)
    unrolled_bytes: dict[int, float] = field(default_factory=dict)
    restarted_bytes: dict[int, float] = field(default_factory=dict)
    deq_bytes: float | None = None
    jfb1_bytes: float | None = None
    step_bytes: float | None = None
    restart: dict[int, list[tuple[int, float, float]]] = field(default_factory=dict)
    restart_lipschitz: dict[int, float] = field(default_factory=dict)
    forward: dict[int, tuple[float, float]] = field(default_factory=dict)
    floor: float = 0.0  #: round-off floor of gradient errors
    floor_x: float = 0.0  #: round-off floor of iterate distances
    source: str = "measured"


class _StartingAt:
    """``problem`` with ``initial_point()`` replaced by a given point (x*): JFB-K's forward
    solve then starts at the equilibrium and stops at once, instead of re-solving to 100 eps
    at every depth."""

    def __init__(self, problem: Any, x: Tensor) -> None:
        self._problem = problem
        self._x = x.detach()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._problem, name)

    def initial_point(self) -> Tensor:
        return self._x.clone()


def _quiet_gradient(est: estimators.Estimator, problem: Any, state: Tensor | None = None) -> tuple[Any, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return saved_tensor_bytes(lambda: est.gradient(problem, state=state))


def forward_distances(problem: Any, eq: Equilibrium, depths: Iterable[int]) -> dict[int, tuple[float, float]]:
    """(||x_K - x*||, ||x_{K+1} - x_K||) for x_{k+1} = T(x_k) from the cold start (B3)."""
    wanted = sorted(set(int(k) for k in depths))
    out: dict[int, tuple[float, float]] = {}
    if not wanted:
        return out
    with torch.no_grad():
        x = eq.x0.clone()
        for k in range(1, wanted[-1] + 1):
            x = problem.operator(x)
            if k in wanted:
                nxt = problem.operator(x)
                out[k] = (float((x - eq.x_star).norm()), float((nxt - x).norm()))
    return out


def restart_sequence(
    problem: Any, eq: Equilibrium, depth: int, calls: int, target: Tensor
) -> tuple[list[tuple[int, float, float]], int]:
    """Calls m = 0..calls-1 of restarted JFB-K at fixed theta: (m, ||g_m - target||,
    ||s_m - x*||), and the saved bytes of the first call."""
    est = estimators.make("restarted_jfb", depth=depth)
    state, out, first_bytes = None, [], 0
    for m in range(calls):
        start = eq.x0 if state is None else state
        e, nbytes = _quiet_gradient(est, problem, state)
        if m == 0:
            first_bytes = nbytes
        out.append((m, float((e.grad - target).norm()), float((start - eq.x_star).norm())))
        state = e.state
    return out, first_bytes


def _restart_calls(depth: int, max_depth: int) -> int:
    """m = 0..ceil(max_depth / K), at least m = 0..2: the restarts cover as many steps as the
    deepest K, and B5 has calls m >= 2 to test beyond the m <= 1 its constant is fitted on."""
    return max(3, math.ceil(max_depth / depth) + 1)


def start_gradient_lipschitz(problem: Any, x_star: Tensor, depth: int, iters: int = 300, tol: float = 1e-10) -> float:
    """||dg_K/ds (x*)||_2 for g_K(s) = grad_theta L(T^K(s)), the gradient restarted JFB-K
    returns from the start s: the local Lipschitz constant of the start-to-gradient map at
    the equilibrium (B5's a priori constant; exact Lipschitz constant when T is affine in x
    with B independent of x and L quadratic). Power iteration on G^T G with double backward:
    G^T y is a vector-Jacobian product of g_K, G w one of y -> G^T y."""
    params = list(problem.parameters())
    s = x_star.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        x = s
        for _ in range(int(depth)):
            x = problem.operator(x)
        grads = torch.autograd.grad(problem.loss(x), params, create_graph=True, allow_unused=True)
        g = torch.cat([gr.reshape(-1) for gr in grads if gr is not None and gr.requires_grad])
        if g.numel() == 0:
            return 0.0
        y = torch.zeros_like(g, requires_grad=True)
        (gty,) = torch.autograd.grad(g, s, y, create_graph=True, allow_unused=True)
        if gty is None or not gty.requires_grad:
            return 0.0
        gen = torch.Generator(device="cpu").manual_seed(0)
        w = torch.randn(s.shape, generator=gen, dtype=s.dtype).to(s.device)
        w = w / torch.linalg.vector_norm(w)
        sigma = 0.0
        for _ in range(iters):
            (gw,) = torch.autograd.grad(gty, y, w, retain_graph=True)
            (gtgw,) = torch.autograd.grad(g, s, gw, retain_graph=True)
            norm = float(torch.linalg.vector_norm(gtgw))
            if norm == 0.0:
                return 0.0
            new, w = norm**0.5, (gtgw / norm).detach()
            if abs(new - sigma) <= tol * new:
                return new
            sigma = new
    return sigma


def step_bytes(problem: Any, x: Tensor) -> int:
    """Bytes autograd saves for one application of T at ``x`` with a graph to x and theta:
    what an implicit backward may keep beyond JFB-1's graph (which needs theta only)."""
    with torch.enable_grad():
        return saved_tensor_bytes(lambda: problem.operator(x.detach().clone().requires_grad_(True)))[1]


def deq_memory(problem: Any, x_star: Tensor, tol: float | None, jfb1_bytes: float | None = None) -> dict[str, float]:
    """B6's DEQ check: the saved bytes of DEQ and of JFB-1 (measured unless given), both from
    x*, and of one application of T."""
    at_eq = _StartingAt(problem, x_star)
    _, deq = _quiet_gradient(estimators.make("deq", tol=tol), at_eq)
    if jfb1_bytes is None:
        _, jfb1_bytes = _quiet_gradient(estimators.make("jfb", depth=1, tol=tol), at_eq)
    return dict(deq_bytes=deq, jfb1_bytes=jfb1_bytes, step_bytes=step_bytes(problem, x_star))


def measure_equilibrium(
    problem: Any,
    eq: Equilibrium,
    depths: Sequence[int] = DEFAULT_DEPTHS,
    restart_depths: Sequence[int] = DEFAULT_RESTART_DEPTHS,
) -> Measurements:
    """Run JFB-K and unrolled-K for every K in ``depths`` (error against ``eq.grad`` and
    saved bytes), restarted JFB-K sequences for K in ``restart_depths``, the saved bytes of
    DEQ, JFB-1 and one application of T (:func:`deq_memory`), and the forward iterates.
    JFB's forward solve starts at x* and runs to 100 eps, so that its error is resolved down
    to round-off."""
    dtype = eq.x_star.dtype
    tol = 100 * float(torch.finfo(dtype).eps) if dtype == torch.float64 else None
    meas = Measurements(
        floor=NOISE_EPS * eq.eps * eq.grad_scale,
        floor_x=NOISE_EPS * eq.eps * eq.x_scale,
    )
    jfb_grads: dict[int, Tensor] = {}
    at_eq = _StartingAt(problem, eq.x_star)
    for k in sorted(set(depths) | set(restart_depths)):
        e, nbytes = _quiet_gradient(estimators.make("jfb", depth=k, tol=tol), at_eq)
        jfb_grads[k] = e.grad
        if k in depths:
            meas.jfb_error[k] = float((e.grad - eq.grad).norm())
            meas.jfb_bytes[k] = nbytes
    for k in depths:
        e, nbytes = _quiet_gradient(estimators.make("unrolled", depth=k), problem)
        meas.unrolled_error[k] = float((e.grad - eq.grad).norm())
        meas.unrolled_bytes[k] = nbytes
    max_depth = max(depths)
    for k in restart_depths:
        meas.restart[k], meas.restarted_bytes[k] = restart_sequence(
            problem, eq, k, _restart_calls(k, max_depth), jfb_grads[k]
        )
    for key, value in deq_memory(problem, eq.x_star, tol, meas.jfb_bytes.get(1)).items():
        setattr(meas, key, value)
    meas.forward = forward_distances(problem, eq, depths)
    # last: its double-backward graphs may be retained by a problem's caches (tanh_layer keeps
    # W with its graph while that graph is alive), which would change the bytes counted above
    for k in restart_depths:
        meas.restart_lipschitz[k] = start_gradient_lipschitz(problem, eq.x_star, k)
    return meas


def measurements_from_table(problem: Any, eq: Equilibrium, rows: pd.DataFrame) -> Measurements:
    """Measurements from a sweep table's rows of one problem configuration: JFB-K and
    unrolled errors and saved bytes (restarts = 0), restarted JFB's bytes; the forward
    iterates (B3) and restart sequences (B5) at the table's depths are recomputed.

    The table's errors are against the iterative DEQ reference (tolerance 1e-13) with
    estimators solving to 1e-12, so the floor is raised to 1e-12 / (1 - rho_loc) of the
    gradient scale."""
    meas = Measurements(
        floor=max(NOISE_EPS * eq.eps, 1e-12 / max(1.0 - eq.rho_loc, 0.01)) * eq.grad_scale,
        floor_x=NOISE_EPS * eq.eps * eq.x_scale,
        source="table",
    )
    restarts = rows["restarts"].fillna(0).astype(int) if "restarts" in rows else pd.Series(0, index=rows.index)
    for est, err_d, mem_d in (
        ("jfb", meas.jfb_error, meas.jfb_bytes),
        ("unrolled", meas.unrolled_error, meas.unrolled_bytes),
    ):
        sub = rows[(rows["estimator"] == est) & (restarts == 0) & rows["depth"].notna()]
        for _, r in sub.iterrows():
            k = int(r["depth"])
            err_d[k] = (
                float(r["abs_error"])
                if "abs_error" in r and pd.notna(r["abs_error"])
                else float(r["rel_error"]) * float(r["ref_grad_norm"])
            )
            if pd.notna(r.get("memory_bytes")):
                mem_d[k] = float(r["memory_bytes"])
    deq_rows = rows[(rows["estimator"] == "deq") & rows["memory_bytes"].notna()] if "memory_bytes" in rows else rows[:0]
    if len(deq_rows):
        meas.deq_bytes = float(deq_rows["memory_bytes"].max())
        meas.jfb1_bytes = meas.jfb_bytes.get(1)
        meas.step_bytes = step_bytes(problem, eq.x_star)
    sub = rows[(rows["estimator"] == "restarted_jfb") & rows["depth"].notna()]
    for _, r in sub.iterrows():
        if pd.notna(r.get("memory_bytes")):
            meas.restarted_bytes[int(r["depth"])] = float(r["memory_bytes"])
    depths = sorted(set(int(k) for k in rows["depth"].dropna()))
    meas.forward = forward_distances(problem, eq, depths)
    restart_depths = sorted(set(int(k) for k in sub["depth"]))
    if restart_depths and depths:
        for k in restart_depths:
            target = estimators.make("jfb", depth=k, tol=100 * eq.eps, solver="anderson")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                g = target.gradient(problem).grad
            meas.restart[k], _ = restart_sequence(problem, eq, k, _restart_calls(k, max(depths)), g)
        for k in restart_depths:  # after the gradients above (see measure_equilibrium)
            meas.restart_lipschitz[k] = start_gradient_lipschitz(problem, eq.x_star, k)
    return meas
