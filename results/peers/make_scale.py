"""Solvers at realistic sizes: our ``deq`` with every fixed solver pair and with its automatic
default, against TorchDEQ's IFT, at equal tolerance, in one run.

    python results/peers/make_scale.py                 # the committed tables (about an hour on 1 CPU)
    python results/peers/make_scale.py --case affine_0.9 --repeats 1   # one case, one timing

Cases (float64): ``affine`` dim 1000 x batch 32 (symmetric spectrum) at rho = 0.99 and 0.9,
``tikhonov`` dim 1000 x batch 32 at rho = 0.99, a tight ``tanh_layer`` (W = rho V, V nearly
orthogonal, small pre-activations: J's eigenvalues near a circle) n = 512 x batch 64 at
rho = 0.99, and ``weighted_tv`` on 128 x 128 patches (two images) at rho = 0.99.

Settings: forward and adjoint tolerance 1e-8 (relative), ``max_iter`` 20000 for both solves;
our ``deq`` with its default ``solver="auto", adjoint="auto"`` and with each fixed pair of
``solver`` in picard / anderson / broyden and ``adjoint`` in fixed_point / gmres; TorchDEQ's IFT (fixed-point forward and backward, TorchDEQ's
defaults otherwise) at our ``max_iter`` (20000), at 2500 (just above what its solves need
here: its per-call cost grows with ``max_iter``, it pads its traces to it) and at its own
default ``max_iter`` 40 (which stops its solves far from the tolerance at rho = 0.99). One torch thread; each time
is the best of ``--repeats`` (3) calls, timed with ``torch.utils.benchmark`` (a run whose
first call is 1.5x slower than the fastest so far in its case is not repeated: column
``repeats``); the error is
against a tight DEQ gradient (1e-12, Anderson + GMRES). Rows are appended to ``scale.csv``
as they are measured (one writer, a file lock); a rerun measures only the missing rows, and
refuses rows measured with other settings. ``scale_summary.csv`` and the printed Markdown
table: per case, the best fixed pair, auto and TorchDEQ, and their time ratios.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import warnings
from pathlib import Path

import pandas as pd
import torch
from filelock import FileLock

from jfbbench import estimators, problems
from jfbbench.measure import compare

HERE = Path(__file__).resolve().parent
TOL = 1e-8
MAX_ITER = 20000
TORCHDEQ_DEFAULT_MAX_ITER = 40
#: a max_iter just above what the fixed-point solves need here: TorchDEQ's time at 20000
#: against this one shows its per-call cost growing with max_iter
TORCHDEQ_ENOUGH_MAX_ITER = 2500
CASES = {
    "affine_0.99": ("affine", dict(lipschitz=0.99, dim=1000, batch=32, n_params=32)),
    "affine_0.9": ("affine", dict(lipschitz=0.9, dim=1000, batch=32, n_params=32)),
    "tikhonov_0.99": ("tikhonov", dict(lipschitz=0.99, dim=1000, batch=32)),
    "tanh_tight_0.99": ("tanh_layer", dict(lipschitz=0.99, dim=512, batch=64, input_dim=64)),
    "weighted_tv_0.99": ("weighted_tv", dict(lipschitz=0.99, patch=128, dtype=torch.float64)),
}
#: weighted_tv: the first two training images (one T costs ~30 ms here; all eight, ~130 ms)
SELECT = {"weighted_tv_0.99": [0, 1]}
#: a run whose first call is this much slower than the fastest so far in its case is not
#: repeated (more calls only lower a time, by noise); ``repeats`` says how many were made
NOT_A_CONTENDER = 1.5
SOLVERS = ["picard", "anderson", "broyden"]
ADJOINTS = ["fixed_point", "gmres"]
KEY = ["case", "estimator", "solver", "adjoint", "max_iter"]


def settings() -> dict:
    """What every row records: rows measured with other settings are refused."""
    return dict(tol=TOL, threads=1, dtype="float64", torch=torch.__version__)


def time_best(fn, repeats: int, contender_below: float) -> tuple[float, int, object]:
    """Best of ``repeats`` single calls (``torch.utils.benchmark``), fewer when the first is
    already ``NOT_A_CONTENDER`` times slower than ``contender_below``; returns (seconds,
    calls made, the last call's result)."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import torch.utils.benchmark as tbench

    box: list = []
    timer = tbench.Timer(stmt="box.append(fn())", globals={"fn": fn, "box": box}, num_threads=1)
    times = [float(timer.timeit(1).mean)]
    while len(times) < repeats and times[0] <= NOT_A_CONTENDER * contender_below:
        times.append(float(timer.timeit(1).mean))
    return min(times), len(times), box[-1]


def runs() -> list[dict]:
    """Per case: the automatic default first (the yardstick of ``NOT_A_CONTENDER``), then the
    fixed pairs, then TorchDEQ."""
    out = []
    for case in CASES:
        out.append(dict(case=case, estimator="deq", solver="auto", adjoint="auto", max_iter=MAX_ITER))
        for solver in SOLVERS:
            for adjoint in ADJOINTS:
                out.append(dict(case=case, estimator="deq", solver=solver, adjoint=adjoint, max_iter=MAX_ITER))
        for max_iter in (MAX_ITER, TORCHDEQ_DEFAULT_MAX_ITER, TORCHDEQ_ENOUGH_MAX_ITER):
            out.append(
                dict(case=case, estimator="torchdeq_ift", solver="picard", adjoint="fixed_point", max_iter=max_iter)
            )
    return out


def measure(run: dict, problem, reference: torch.Tensor, repeats: int, fastest: float) -> dict:
    common = dict(tol=TOL, adjoint_tol=TOL, max_iter=run["max_iter"], adjoint_max_iter=run["max_iter"])
    if run["estimator"] == "deq":
        est = estimators.make("deq", solver=run["solver"], adjoint=run["adjoint"], **common)
    else:
        est = estimators.make("torchdeq_ift", solver="picard", **common)

    def call():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return est.gradient(problem)

    seconds, calls, e = time_best(call, repeats, fastest)
    s = e.stats
    return dict(
        run,
        time_s=seconds,
        repeats=calls,
        operator_evals=s.get("operator_evals"),
        vjp_evals=s.get("vjp_evals"),
        converged=s.get("converged"),
        forward_method=s.get("forward_method"),
        adjoint_method=s.get("adjoint_method"),
        workspace_bytes=s.get("workspace_bytes"),
        rel_error=compare(e.grad, reference)["rel_error"],
        **settings(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=list(CASES), help="only these cases")
    parser.add_argument("--repeats", type=int, default=3, help="calls per timing (best of)")
    parser.add_argument("--out", type=Path, default=HERE / "scale.csv")
    parser.add_argument(
        "--head-to-head",
        action="store_true",
        help="then time auto, the best fixed pair and TorchDEQ (matched) in alternation, per case",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if "torchdeq_ift" not in estimators.names():
        raise SystemExit("TorchDEQ is not installed: pip install -e '.[peers]'")
    with FileLock(str(args.out) + ".lock", timeout=0):
        done = pd.read_csv(args.out) if args.out.exists() else pd.DataFrame(columns=KEY)
        for k, v in settings().items():
            if len(done) and k in done and (done[k].astype(str) != str(v)).any():
                raise SystemExit(f"{args.out} holds rows measured with {k} != {v}: move it away to re-measure")
        have = {tuple(str(r[k]) for k in KEY) for _, r in done.iterrows()}
        todo = [r for r in runs() if (not args.case or r["case"] in args.case)]
        todo = [r for r in todo if tuple(str(r[k]) for k in KEY) not in have]
        references: dict[str, tuple] = {}
        measured: list[dict] = []
        from tqdm import tqdm

        for run in tqdm(todo, desc="scale", disable=not os.isatty(2)):
            if run["case"] not in references:
                name, config = CASES[run["case"]]
                problem = problems.make(name, **config)
                if run["case"] in SELECT:
                    problem.select("train", SELECT[run["case"]])
                ref = estimators.make("deq", tol=1e-12, solver="anderson", adjoint="gmres").gradient(problem)
                references = {run["case"]: (problem, ref.grad)}
            problem, reference = references[run["case"]]
            here = done[done.case == run["case"]].time_s if len(done) else pd.Series(dtype=float)
            fastest = min([float("inf"), *here.tolist(), *[r["time_s"] for r in measured if r["case"] == run["case"]]])
            row = measure(run, problem, reference, args.repeats, fastest)
            measured.append(row)
            new = not args.out.exists()
            with open(args.out, "a", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(row))
                if new:
                    writer.writeheader()
                writer.writerow(row)
                fh.flush()
                os.fsync(fh.fileno())
            print(f"{row['case']:17s} {row['estimator']:13s} {row['solver']:8s} {row['adjoint']:11s} "
                  f"{row['max_iter']:6d} {row['time_s']:8.3f} s  T {row['operator_evals']}  VJP {row['vjp_evals']}  "
                  f"err {row['rel_error']:.1e}  {row['forward_method']}/{row['adjoint_method']}", flush=True)  # fmt: skip
    table = pd.read_csv(args.out)
    if args.head_to_head:
        head_to_head(table, args.out.with_name(args.out.stem + "_head_to_head.csv"), args.repeats, args.case)
    summary = summarize(table)
    summary.to_csv(args.out.with_name(args.out.stem + "_summary.csv"), index=False)
    print(summary.to_markdown(index=False, floatfmt=".3g"))


def head_to_head(table: pd.DataFrame, out: Path, rounds: int, cases: list[str] | None) -> None:
    """Per case: the automatic default, the fastest fixed pair of ``table`` and TorchDEQ at
    the matched ``max_iter``, timed in alternation (``rounds`` rounds, one call each per
    round), so that their ratios share the machine's load; best of the rounds each. One row
    per (case, estimator setting), the table rewritten at the end of each case."""
    rows: list[dict] = []
    for case in cases or list(CASES):
        g = table[(table.case == case) & (table.estimator == "deq") & (table.solver != "auto")]
        if g.empty:
            continue
        best = g.loc[g.time_s.idxmin()]
        name, config = CASES[case]
        problem = problems.make(name, **config)
        if case in SELECT:
            problem.select("train", SELECT[case])
        common = dict(tol=TOL, adjoint_tol=TOL, max_iter=MAX_ITER, adjoint_max_iter=MAX_ITER)
        contenders = {
            "deq auto/auto": estimators.make("deq", **common),
            f"deq {best.solver}/{best.adjoint}": estimators.make(
                "deq", solver=best.solver, adjoint=best.adjoint, **common
            ),
            "torchdeq_ift": estimators.make("torchdeq_ift", solver="picard", **common),
        }
        times: dict[str, list[float]] = {k: [] for k in contenders}
        stats: dict[str, dict] = {}
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        import torch.utils.benchmark as tbench

        for _ in range(rounds):
            for label, est in contenders.items():
                box: list = []

                def call(est=est, box=box, problem=problem):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        box.append(est.gradient(problem))

                times[label].append(float(tbench.Timer("call()", globals={"call": call}, num_threads=1).timeit(1).mean))
                stats[label] = box[-1].stats
        auto = min(times["deq auto/auto"])
        for label in contenders:
            s = stats[label]
            rows.append(
                dict(
                    case=case,
                    setting=label,
                    time_s=min(times[label]),
                    rounds=rounds,
                    ratio_to_auto=min(times[label]) / auto,
                    operator_evals=s.get("operator_evals"),
                    vjp_evals=s.get("vjp_evals"),
                    methods=f"{s.get('forward_method')}/{s.get('adjoint_method')}",
                    **settings(),
                )
            )
        pd.DataFrame(rows).to_csv(out, index=False)
        print(pd.DataFrame(rows[-3:]).to_string(index=False), flush=True)


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per case: the best fixed solver pair, the automatic default, TorchDEQ at both
    ``max_iter``, and the ratios."""
    rows = []
    for case, g in table.groupby("case", sort=False):
        ours = g[g.estimator == "deq"]
        fixed = ours[(ours.solver != "auto") & (ours.adjoint != "auto")]
        auto = ours[(ours.solver == "auto") & (ours.adjoint == "auto")]
        tdeq = g[g.estimator == "torchdeq_ift"].set_index("max_iter")
        if fixed.empty or auto.empty:
            continue
        best = fixed.loc[fixed.time_s.idxmin()]
        a = auto.iloc[0]
        row = dict(
            case=case,
            best_fixed=f"{best.solver}+{best.adjoint}",
            best_fixed_s=best.time_s,
            auto_s=a.time_s,
            auto_methods=f"{a.forward_method}/{a.adjoint_method}",
            auto_over_best_fixed=a.time_s / best.time_s,
            auto_evals=f"{a.operator_evals} T, {a.vjp_evals} VJP",
            auto_rel_error=a.rel_error,
        )
        labels = ((MAX_ITER, "matched"), (TORCHDEQ_ENOUGH_MAX_ITER, "enough"), (TORCHDEQ_DEFAULT_MAX_ITER, "default"))
        for max_iter, label in labels:
            if max_iter in tdeq.index:
                t = tdeq.loc[max_iter]
                row[f"torchdeq_{label}_s"] = t.time_s
                row[f"auto_over_torchdeq_{label}"] = a.time_s / t.time_s
                row[f"torchdeq_{label}_rel_error"] = t.rel_error
                row[f"torchdeq_{label}_evals"] = f"{t.operator_evals} T, {t.vjp_evals} VJP"
        rows.append(row)
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
