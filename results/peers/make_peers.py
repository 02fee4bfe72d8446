"""Side-by-side run: our ``deq``, ``jfb``, ``phantom``, ``neumann`` against TorchDEQ's IFT and
phantom gradients and torchopt's implicit differentiation, at matched settings, in one run.

    python results/peers/make_peers.py            # the committed tables (5.4 min alone on 1 CPU before 3 timed blocks a row)
    python results/peers/make_peers.py --quick    # a smoke run into a temporary folder

Writes, next to this file: ``peers.csv`` (the sweep table of the analytic families,
undamped phantom tau = 1), ``peers_imaging.csv`` (the same on ``weighted_tv``, 16 x 16
patches), ``peers_damped.csv`` (phantom and TorchDEQ phantom at tau = 0.5),
``peers_ratio.csv`` (per problem and rho: time of our ``deq`` over TorchDEQ's IFT and over
torchopt's, and the errors) and prints that summary as Markdown. Needs the peers:
``pip install -e '.[peers]'``. Delete the CSVs to re-measure: the sweep resumes, skipping
rows already present.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
import torch

from jfbbench import estimators
from jfbbench.sweep import Grid, run

HERE = Path(__file__).resolve().parent
FAMILIES = ["affine", "tanh_layer", "tikhonov"]
#: imaging families whose rho can be set (pnp_fb and drunet_fb only estimate theirs)
IMAGING = {"weighted_tv": dict(patch=[16])}
RHOS = [0.5, 0.9, 0.99]
OURS = ["deq", "jfb", "phantom", "neumann"]
PEERS = ["torchdeq_ift", "torchdeq_phantom", "torchopt_implicit"]


def ratio_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (problem, rho): median times, errors, saved bytes and counts (T, VJP, JVP)
    of ``deq``, ``torchdeq_ift`` and ``torchopt_implicit``, and time(deq) / time(torchdeq_ift)."""
    rows = []
    for (problem, rho), g in table.groupby(["problem", "lipschitz"], sort=True):
        by = {name: g[g.estimator == name].iloc[0] for name in ["deq", "torchdeq_ift", "torchopt_implicit"]}
        row = dict(problem=problem, lipschitz=rho)
        for name, r in by.items():
            row[f"{name}_time_s"] = r.time_s
            row[f"{name}_rel_error"] = r.rel_error
            row[f"{name}_memory_bytes"] = r.memory_bytes
            for count in ("operator_evals", "vjp_evals", "jvp_evals"):
                row[f"{name}_{count}"] = r[count]
        row["ratio_deq_over_torchdeq_ift"] = by["deq"].time_s / by["torchdeq_ift"].time_s
        row["ratio_deq_over_torchopt_implicit"] = by["deq"].time_s / by["torchopt_implicit"].time_s
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="rho = 0.5, one family, into a temporary folder")
    args = parser.parse_args()
    missing = [name for name in PEERS if name not in estimators.names()]
    if missing:
        raise SystemExit(f"peer estimators {missing} are not registered: pip install -e '.[peers]'")
    torch.set_num_threads(1)  # timings of one core, steadier on a shared machine
    out = Path(tempfile.mkdtemp()) if args.quick else HERE
    families, rhos = (FAMILIES[:1], RHOS[:1]) if args.quick else (FAMILIES, RHOS)
    depths = [1, 8, 32]
    table = run(Grid(families, rhos, OURS + PEERS, depths), out / "peers.csv", progress=True)
    if not args.quick:
        imaging = [
            run(Grid([name], rhos, OURS + PEERS, depths, configs=config), out / "peers_imaging.csv", progress=True)
            for name, config in IMAGING.items()
        ]
        table = pd.concat([table, *imaging], ignore_index=True)
    run(
        Grid(families, rhos, ["phantom", "torchdeq_phantom"], depths, estimator_config=dict(damping=0.5)),
        out / "peers_damped.csv",
        progress=True,
    )
    summary = ratio_table(table)
    summary.to_csv(out / "peers_ratio.csv", index=False)
    cols = ["problem", "lipschitz", "deq_time_s", "torchdeq_ift_time_s", "ratio_deq_over_torchdeq_ift"]
    cols += ["deq_rel_error", "torchdeq_ift_rel_error", "torchopt_implicit_time_s", "torchopt_implicit_rel_error"]
    cols += [f"torchopt_implicit_{c}" for c in ("operator_evals", "vjp_evals", "jvp_evals")]
    print(summary[cols].to_markdown(index=False, floatfmt=".3g"))
    print(f"tables in {out}")


if __name__ == "__main__":
    main()
