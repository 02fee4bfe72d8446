"""What the equilibrium looks like before and after training, per run: the contraction there
and the bias the run's scheme tends to.

    python results/reasoning/train/equilibrium.py     # -> equilibrium.csv

- ``rho_loc_start`` / ``rho_loc_end``: ||J(s*)||_2 on the held-out puzzles at theta_0 and at
  the run's last checkpoint (s* solved to 1e-10 by Anderson, the norm by 50 power
  iterations). The declared rho (0.9) bounds ||dT/ds||_2 everywhere; how close J(s*) comes to
  it sets the JFB-1 bias -B^T J^T u that TRM's and HRM's gradients tend to.
- ``bias_end``: at the last checkpoint, on the batch of the last step, the relative distance
  of the scheme's limit to the exact gradient: the scheme started from s* itself (what deep
  supervision and restarts tend to at fixed theta: trm, hrm_one_step, restarted_jfb with their
  settings, jfb at s*; unrolled from the cold start, as it runs), against back-propagation
  through 100 cycles from the cold start (the exact gradient to rho_loc^100).
- ``restart_end``: for the schemes that carry a state (trm, hrm_one_step, restarted_jfb), the
  distance between the scheme started cold and started from s*, relative to the exact
  gradient: the restart term, what deep supervision removes (restarted JFB's bound B5 makes it
  decay as rho^{(m-1)C} over supervised steps m at fixed theta).
- ``gap_end``: the gap the run measured at its last step (its table's ``grad_gap``: the
  scheme from the state it carried, against the float64 DEQ).

Reads the runs' checkpoints (``runs/*.ckpt.pt``, beside each table; not committed).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from jfbbench import estimators, problems
from jfbbench.solvers import fixed_point
from jfbbench.training import TrainConfig, presets_for

HERE = Path(__file__).resolve().parent
EXACT_CYCLES = 100


def equilibrium(problem) -> torch.Tensor | None:
    with torch.no_grad():
        x, st = fixed_point(problem.operator, problem.initial_point(), 1e-10, 5000, method="anderson")
    return x if st["converged"] else None


def rho_loc(problem) -> float:
    problem.select("test")
    x = equilibrium(problem)
    return float("nan") if x is None else problem.estimate_lipschitz(x, iters=50)


def scheme_limit(problem, config: TrainConfig) -> tuple[float, float]:
    """(||g_limit - g_exact||, ||g_cold - g_limit||) / ||g_exact|| on the current batch; the
    second NaN for the schemes that carry no state of their own."""
    exact = estimators.make("unrolled", depth=EXACT_CYCLES).gradient(problem).grad
    est = estimators.make(config.estimator, **config.estimator_settings())
    x = equilibrium(problem)
    restart = float("nan")
    if x is None:
        return float("nan"), restart
    if config.estimator in ("trm", "hrm_one_step", "restarted_jfb"):
        g = est.gradient(problem, state=x).grad
        restart = float(torch.linalg.vector_norm(est.gradient(problem).grad - g))
    elif config.estimator == "jfb":
        g = estimators.make("jfb", depth=config.depth, tol=1e-10).gradient(problem).grad
    else:  # unrolled from the cold start, deq exact
        g = est.gradient(problem).grad
    norm = torch.linalg.vector_norm(exact)
    return float(torch.linalg.vector_norm(g - exact) / norm), restart / float(norm)


def config_of(run: pd.DataFrame) -> TrainConfig:
    r = run.iloc[-1]
    settings = dict(cycles=int(r["cycles"])) if "cycles" in run and pd.notna(r["cycles"]) else {}
    extra = (
        int(r["step_operator_evals"]) // int(r["deep_supervision"]) - int(r["depth"])
        if r["estimator"] == ("restarted_jfb")
        else 0
    )
    depth = int(r["depth"]) if pd.notna(r["depth"]) else 1
    return TrainConfig(
        problem="recursive_reasoning", estimator=r["estimator"], depth=depth, seed=int(r["seed"]),
        extra_steps=extra, warm_start=str(r["warm_start"]).lower() == "true", estimator_kwargs=settings,
        deep_supervision=int(r["deep_supervision"]),
    ).resolved()  # fmt: skip


def main() -> None:
    settings = presets_for("recursive_reasoning")["default"]["problem"]
    rows, start = [], {}
    for table in sorted((HERE / "runs").glob("*.csv")):
        ckpt = table.with_suffix(".ckpt.pt")
        if not ckpt.exists():
            continue
        run = pd.read_csv(table)
        config = config_of(run)
        p = problems.make("recursive_reasoning", seed=config.seed, **settings)
        if config.seed not in start:
            start[config.seed] = rho_loc(p)
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        with torch.no_grad():
            for q, v in zip(p.parameters(), state["params"], strict=True):
                q.copy_(v)
        step = int(state["step"])
        first = (step - 1) * config.batch_size
        p.select("train", [(first + j) % p.n_images("train") for j in range(config.batch_size)])
        bias, restart = scheme_limit(p, config)
        rows.append(dict(
            run=table.stem, step=step, seed=config.seed, rho_loc_start=start[config.seed], rho_loc_end=rho_loc(p),
            bias_end=bias, restart_end=restart, gap_end=float(run["grad_gap"].dropna().iloc[-1]),
        ))  # fmt: skip
    out = pd.DataFrame(rows)
    out.to_csv(HERE / "equilibrium.csv", index=False)
    print(out.to_string())


if __name__ == "__main__":
    main()
