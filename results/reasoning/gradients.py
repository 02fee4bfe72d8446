"""How far TRM's and HRM's training gradients are from the exact gradient of the same recursion.

    python results/reasoning/gradients.py depth        # -> depth.csv, depth.png
    python results/reasoning/gradients.py supervision  # -> supervision.csv, supervision.png

Family ``recursive_reasoning`` (n_latent = 3, hidden = 8, 4 puzzles of 4 x 4 Sudoku with 8
hidden cells: a state of 4 x 16 x 16 = 1024 numbers), seeds 0-2, float64, one thread.

``depth``: the gradient error of hrm_one_step and trm (cycles C), unrolled (C cycles), JFB-K,
restarted JFB K = 2 (C / 2 - 1 restarts: C cycles in all) and DEQ, at rho in {0.5, 0.9, 0.99}
against the exact gradient at the equilibrium (x* by Newton's method, J and B dense,
dL/dtheta = dL/dtheta|direct + B^T (I - J^T)^{-1} v), and, for hrm_one_step and trm, against
back-propagation through the same C cycles from the cold start (``unrolled`` at depth C). In
the free mode (lipschitz=None) the cycle does not contract and only the second reference
exists.

``supervision``: deep supervision at fixed theta: N_sup supervised steps of trm or
hrm_one_step (C cycles each), step m starting from the detached state step m - 1 left. The
error of step m against the exact gradient, its gap to the scheme's limit (the same scheme
started at x*: JFB-1 in cycles for trm), and restarted JFB's bound: gap_m <= Lip ||x_0 - x*||
rho^{(m-1) C} (Davy, Briceno-Arias, Pustelnik 2025, arXiv 2506.13239; Lip the Lipschitz
constant of the start-to-gradient map, from its value at x* and the secants of steps 1-2,
checked on steps >= 3), and for trm the total bound B1 + that, B1 = ||B|| ||v|| rho / (1 - rho)
the error of JFB-1 at the equilibrium.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402

from jfbbench import estimators, linalg, problems  # noqa: E402

try:  # the bounds' formulas, wherever the package keeps them
    from jfbbench.theory import bounds  # type: ignore[attr-defined]
except ImportError:
    from jfbbench import bounds

HERE = Path(__file__).parent
MODES = (0.5, 0.9, 0.99, None)
SEEDS = (0, 1, 2)
SETTINGS = dict(n_latent=3, hidden=8, n_puzzles=4, hidden_cells=8)
DEPTHS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
N_SUP = 40
SUP_CYCLES = (1, 3)

Tensor = torch.Tensor


def make(mode: float | None, seed: int):
    return problems.make("recursive_reasoning", lipschitz=mode, seed=seed, **SETTINGS)


def flat(grads, params) -> Tensor:
    """Gradients flattened and concatenated, zeros for unused parameters."""
    return torch.cat(
        [(g if g is not None else torch.zeros_like(q)).reshape(-1) for g, q in zip(grads, params, strict=True)]
    )


def head_slice(p) -> slice:
    """Where the read-out head H sits in the flat gradient (the last parameter)."""
    n = sum(q.numel() for q in p.parameters())
    return slice(n - p.H.numel(), n)


def exact(p) -> dict:
    """x*, the exact total derivative and the quantities of the bounds, all dense."""
    x_star = linalg.newton_fixed_point(p.operator, p.initial_point())
    params = p.parameters()
    s = x_star.clone().requires_grad_(True)
    with torch.enable_grad():
        fx = p.operator(s)
        jac = torch.func.jacrev(lambda z: p.operator(z.reshape(s.shape)).reshape(-1))(s.detach().reshape(-1)).detach()
        bmat = linalg.dense_parameter_jacobian(fx, params)
        v, *direct = torch.autograd.grad(p.loss(s), [s, *params], allow_unused=True)
    direct = flat(direct, params)
    n = jac.shape[0]
    u = torch.linalg.solve(torch.eye(n, dtype=jac.dtype) - jac.T, v.reshape(-1))
    return dict(
        x_star=x_star.detach(),
        grad=(direct + bmat.T @ u).detach(),
        direct=direct.detach(),
        rho_loc=float(torch.linalg.matrix_norm(jac, 2)),
        radius=float(torch.linalg.eigvals(jac).abs().max()),
        b_norm=float(torch.linalg.matrix_norm(bmat, 2)),
        v_norm=float(v.norm()),
        initial_distance=float((p.initial_point() - x_star).norm()),
    )


def errors(g: Tensor, ref: Tensor, head: slice) -> dict:
    keep = torch.ones_like(ref, dtype=torch.bool)
    keep[head] = False
    return dict(
        rel_error=float((g - ref).norm() / ref.norm()),
        cosine=float(g @ ref / (g.norm() * ref.norm())),
        rel_error_recursion=float((g - ref)[keep].norm() / ref[keep].norm()),
        abs_error=float((g - ref).norm()),
    )


def deq_total(p, e) -> Tensor:
    """DEQ's gradient with the read-out's direct term dL/dH: added here when the estimator
    left it out (its H block is then exactly zero, since H does not enter T)."""
    head = head_slice(p)
    if bool((e.grad[head] == 0).all()):
        x = e.x.detach().requires_grad_(True)
        with torch.enable_grad():
            (dh,) = torch.autograd.grad(p.loss(x), p.H)
        g = e.grad.clone()
        g[head] = dh.reshape(-1)
        return g
    return e.grad


def depth_rows() -> pd.DataFrame:
    rows = []
    for mode in MODES:
        for seed in SEEDS:
            started = time.perf_counter()
            p = make(mode, seed)
            head = head_slice(p)
            eq = exact(p) if mode is not None else None
            meta = dict(mode="free" if mode is None else f"rho={mode}", rho=p.lipschitz, seed=seed)
            if eq is not None:
                meta.update(rho_loc=eq["rho_loc"], spectral_radius=eq["radius"])
            for c in DEPTHS:
                unrolled = estimators.make("unrolled", depth=c).gradient(p)
                runs = dict(unrolled=unrolled)
                for name in ("trm", "hrm_one_step"):
                    runs[name] = estimators.make(name, cycles=c).gradient(p)
                if eq is not None:
                    runs["jfb"] = estimators.make("jfb", depth=c).gradient(p)
                    if c % 2 == 0:
                        est, state = estimators.make("restarted_jfb", depth=2), None
                        for _ in range(c // 2):
                            e = est.gradient(p, state=state)
                            state = e.state
                        runs["restarted_jfb"] = e
                for name, e in runs.items():
                    total = e.stats["operator_evals"] if name == "jfb" else c  # restarted: all its calls
                    row = dict(meta, estimator=name, depth=c, cycles_total=total, **_counts(e))
                    if eq is not None:
                        row.update(errors(e.grad, eq["grad"], head))
                    if name in ("trm", "hrm_one_step"):
                        same = errors(e.grad, unrolled.grad, head)
                        row.update({f"{k}_same_cycles": v for k, v in same.items()})
                    rows.append(row)
            if eq is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    e = estimators.make("deq").gradient(p)
                rows.append(
                    dict(meta, estimator="deq", depth=None, **_counts(e), **errors(deq_total(p, e), eq["grad"], head))
                )
            print(f"{meta['mode']} seed {seed}: {time.perf_counter() - started:.1f} s", flush=True)
    return pd.DataFrame(rows)


def _counts(e) -> dict:
    s = e.stats
    return dict(
        operator_evals=s["operator_evals"],
        vjp_evals=s["vjp_evals"],
        update_evals=s.get("update_evals"),
        update_vjp_evals=s.get("update_vjp_evals"),
        converged=s["converged"],
    )


# -- deep supervision ------------------------------------------------------------------------


def scheme_gradient(p, s: Tensor, cycles: int, detached_latent: int, create_graph: bool = False) -> Tensor:
    """The scheme's gradient from the start s, every step differentiable in s (for the
    start-to-gradient Lipschitz constant): cycles - 1 cycles, ``detached_latent`` latent
    updates, then the rest of the last cycle."""
    x = s
    for _ in range(cycles - 1):
        x = p.operator(x)
    for _ in range(detached_latent):
        x = p.latent_update(x)
    for _ in range(p.n_latent - detached_latent):
        x = p.latent_update(x)
    x = p.answer_update(x)
    params = p.parameters()
    grads = torch.autograd.grad(p.loss(x), params, create_graph=create_graph, allow_unused=True)
    return flat(grads, params)


def start_lipschitz(p, x_star: Tensor, cycles: int, detached_latent: int, iters: int = 200) -> float:
    """||dg/ds (x*)||_2 for the scheme's gradient g(s) from the start s: power iteration on
    G^T G, G^T y by a VJP of g and G w by double backward."""
    s = x_star.clone().requires_grad_(True)
    with torch.enable_grad():
        g = scheme_gradient(p, s, cycles, detached_latent, create_graph=True)
        y = torch.zeros_like(g, requires_grad=True)
        (gty,) = torch.autograd.grad(g, s, y, create_graph=True)
        w = torch.randn(s.shape, generator=torch.Generator().manual_seed(0), dtype=s.dtype)
        w, sigma = w / w.norm(), 0.0
        for _ in range(iters):
            (gw,) = torch.autograd.grad(gty, y, w, retain_graph=True)
            (gtgw,) = torch.autograd.grad(g, s, gw, retain_graph=True)
            new = float(gtgw.norm()) ** 0.5
            w = (gtgw / gtgw.norm()).detach()
            if abs(new - sigma) <= 1e-8 * new:
                return new
            sigma = new
    return sigma


def supervision_rows() -> pd.DataFrame:
    rows = []
    for mode in MODES[:-1]:
        for seed in SEEDS:
            started = time.perf_counter()
            p = make(mode, seed)
            eq = exact(p)
            head = head_slice(p)
            b1 = bounds.jfb_error_bound(eq["b_norm"], eq["v_norm"], mode, 1)
            for cycles in SUP_CYCLES:
                for name, detached in (("trm", 0), ("hrm_one_step", p.n_latent - 1)):
                    est = estimators.make(name, cycles=cycles)
                    limit = est.gradient(p, state=eq["x_star"]).grad
                    state, seq = None, []
                    for m in range(N_SUP):
                        start = p.initial_point() if state is None else state
                        e = est.gradient(p, state=state)
                        seq.append((m, e.grad, float((start - eq["x_star"]).norm())))
                        state = e.state
                    local = start_lipschitz(p, eq["x_star"], cycles, detached)
                    secants = [float((g - limit).norm()) / d for m, g, d in seq if m <= 1 and d > 0]
                    constant = max([local, *secants]) * eq["initial_distance"]
                    for m, g, dist in seq:
                        restart = bounds.restart_bound(constant, mode, m, 1, cycles - 1)
                        gap = float((g - limit).norm())
                        err = errors(g, eq["grad"], head)
                        rows.append(
                            dict(
                                mode=f"rho={mode}", rho=mode, seed=seed, scheme=name, cycles=cycles, n_sup=m + 1,
                                **err, gap=gap, start_distance=dist, limit_error=float((limit - eq["grad"]).norm()),
                                restart_bound=restart, b1=b1 if name == "trm" else math.nan,
                                total_bound=b1 + restart if name == "trm" else math.nan,
                                lipschitz_local=local, lipschitz_used=constant / eq["initial_distance"],
                                checked=m >= 2, gap_holds=gap <= restart * (1 + 1e-9) + 1e-13,
                                total_holds=(err["abs_error"] <= (b1 + restart) * (1 + 1e-9)) if name == "trm" else None,
                                grad_norm=float(eq["grad"].norm()), rho_loc=eq["rho_loc"],
                                spectral_radius=eq["radius"],
                            )
                        )  # fmt: skip
            print(f"supervision rho={mode} seed {seed}: {time.perf_counter() - started:.1f} s", flush=True)
    return pd.DataFrame(rows)


# -- figures ---------------------------------------------------------------------------------

ORDER = ["hrm_one_step", "trm", "unrolled", "jfb", "restarted_jfb", "deq"]
STYLE = dict(hrm_one_step="o-", trm="s-", unrolled="^--", jfb="v-", restarted_jfb="D-")
#: Errors below round-off (down to exact zeros) are drawn at this level on a log axis.
ZERO = 1e-16


def plot_depth(df: pd.DataFrame, out: Path) -> None:
    modes = [m for m in ("rho=0.5", "rho=0.9", "rho=0.99", "free") if m in set(df["mode"])]
    fig, axes = plt.subplots(2, len(modes), figsize=(4 * len(modes), 7.5), sharey="row", squeeze=False)
    palette = dict(zip(ORDER, sns.color_palette("tab10", len(ORDER)), strict=True))
    for j, mode in enumerate(modes):
        d = df[df["mode"] == mode]
        ax = axes[0, j]
        if d["rel_error"].notna().any():
            for name in ORDER:
                e = d[(d["estimator"] == name) & d["rel_error"].notna()]
                if e.empty:
                    continue
                if name == "deq":
                    ax.axhline(max(e["rel_error"].median(), ZERO), color=palette[name], ls=":", label="deq")
                    continue
                med = e.groupby("depth")["rel_error"].median().clip(lower=ZERO)
                ax.plot(med.index, med.values, STYLE[name], ms=3, color=palette[name], label=name)
        else:
            ax.text(0.5, 0.5, "no equilibrium:\nthe cycle does not contract", ha="center", transform=ax.transAxes)
        ax.set_title(f"{mode}\nagainst the exact gradient at x*", fontsize=10)
        ax = axes[1, j]
        for name in ("hrm_one_step", "trm"):
            e = d[(d["estimator"] == name) & d["rel_error_same_cycles"].notna()]
            med = e.groupby("depth")["rel_error_same_cycles"].median()
            ax.plot(med.index, med.values, STYLE[name], ms=3, color=palette[name], label=name)
        ax.set_title(f"{mode}\nagainst backprop through the same C cycles", fontsize=10)
        axes[0, j].set_yscale("log")
        axes[1, j].set_ylim(0, 1.05)
        for ax in axes[:, j]:
            ax.set_xscale("log", base=2)
            ax.set_xlabel("cycles C (depth K for jfb)")
            ax.grid(True, which="both", alpha=0.3)
    for i in range(2):
        axes[i, 0].set_ylabel("relative gradient error (median, 3 seeds)")
        axes[i, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def plot_supervision(df: pd.DataFrame, out: Path) -> None:
    modes = [m for m in ("rho=0.5", "rho=0.9", "rho=0.99") if m in set(df["mode"])]
    fig, axes = plt.subplots(len(SUP_CYCLES), len(modes), figsize=(4.5 * len(modes), 4 * len(SUP_CYCLES)))
    axes = axes.reshape(len(SUP_CYCLES), len(modes))
    cols = ["abs_error", "gap", "restart_bound", "b1", "limit_error"]
    for i, cycles in enumerate(SUP_CYCLES):
        for j, mode in enumerate(modes):
            ax = axes[i, j]
            d = df[(df["mode"] == mode) & (df["cycles"] == cycles)]
            med = d.groupby(["scheme", "n_sup"])[cols].median()
            trm, hrm = med.loc["trm"], med.loc["hrm_one_step"]
            ax.plot(trm.index, trm["abs_error"], "s-", ms=3, color="C1", label="trm: error vs exact")
            ax.plot(trm.index, trm["limit_error"], "-", lw=0.8, color="C1", label="JFB-1 (cycles) error at x*")
            ax.plot(trm.index, trm["b1"], "-", color="k", lw=0.8, label="B1 bound on it")
            ax.plot(trm.index, trm["gap"], "s--", ms=3, color="C1", alpha=0.6, label="trm: gap to JFB-1 at x*")
            ax.plot(trm.index, trm["restart_bound"], ":", color="k", label="restart bound on the gap")
            ax.plot(hrm.index, hrm["abs_error"], "o-", ms=3, color="C0", label="hrm_one_step: error vs exact")
            ax.plot(hrm.index, hrm["gap"], "o--", ms=3, color="C0", alpha=0.6, label="hrm_one_step: gap to its limit")
            ax.set_yscale("log")
            ax.set_ylim(bottom=1e-19)  # round-off: gaps reach ~1e-17
            ax.set_title(f"{mode}, C = {cycles} cycles per step", fontsize=10)
            ax.set_xlabel("supervised step m (N_sup)")
            ax.grid(True, which="both", alpha=0.3)
        axes[i, 0].set_ylabel("gradient error, absolute (median, 3 seeds)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(out, dpi=120)


def main(which: str) -> None:
    torch.set_num_threads(1)
    started = time.perf_counter()
    if which == "depth":
        df = depth_rows()
        df.to_csv(HERE / "depth.csv", index=False)
        plot_depth(df, HERE / "depth.png")
    elif which == "supervision":
        df = supervision_rows()
        df.to_csv(HERE / "supervision.csv", index=False)
        plot_supervision(df, HERE / "supervision.png")
    elif which == "plots":
        plot_depth(pd.read_csv(HERE / "depth.csv"), HERE / "depth.png")
        plot_supervision(pd.read_csv(HERE / "supervision.csv"), HERE / "supervision.png")
    else:
        raise SystemExit(f"usage: {sys.argv[0]} depth|supervision|plots")
    print(f"{which}: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
