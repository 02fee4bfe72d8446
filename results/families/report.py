"""Tables and figures of the classification training runs (results/families/train/<problem>/*.csv).

    python results/families/report.py

Writes, beside this file, from the tables alone:

- final.csv / final_per_seed.csv / final.md: final test accuracy (mean +- sd over seeds; also
  the mean of the last LAST evaluations, the accuracy moving in steps of one test example or,
  on the chains, of a whole position along the chains), final test loss, the whole cost of
  training (T, VJP, T + VJP, seconds), the median gap to the tight DEQ gradient;
- matched.csv / matched.md: per seed, the cumulative T + VJP and seconds at which each setting
  first reaches the final test accuracy of DEQ (warm, then cold) less 0.5 points, both read
  as the mean of the last LAST evaluations, and DEQ's own cost to get there;
- curves_<problem>.png: test accuracy and test loss against the outer step, the cumulative
  T + VJP and the training seconds (mean over seeds);
- long.csv / long.md: the longer runs of results/families/long (restarted JFB on ignn for
  1500 steps, about DEQ's whole budget of T + VJP) against the DEQ runs of the same seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from jfbbench.training.tables import read_runs  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # results/: what the reports share
from _reports import cost_axes, sort_settings, styled  # noqa: E402

ORDER = ["deq warm", "deq cold", "jfb K=2 cold", "unrolled K=2", "restarted_jfb K=2"]
REFERENCES = ("deq warm", "deq cold")
MARGIN = 0.005  # half a point of accuracy
LAST = 5  # evaluations averaged for the "last" accuracy
LONG_LABEL = "restarted_jfb K=2, 1500 steps"


def write_markdown(path: Path, header: str, rows: list[str]) -> None:
    """A markdown table: ``header`` (``| a | b |``), its rule, then ``rows``."""
    rule = "|" + "---|" * (header.count("|") - 1)
    path.write_text("\n".join([header, rule, *rows]) + "\n")


def load() -> pd.DataFrame:
    paths = sorted((HERE / "train").glob("*/*.csv"))
    if not paths:
        raise SystemExit("no tables under results/families/train: run results/families/run.sh first")
    return read_runs(paths)


def curves(df: pd.DataFrame, long: pd.DataFrame | None = None) -> None:
    """The learning curves of each problem; ``long`` runs (more steps) are drawn on the cost
    and seconds panels only, in grey."""
    for problem, d in df.groupby("problem"):
        # each estimator's colour and dash of every figure of the project (variants in shades)
        order, styles = styled(d["label"], ORDER)
        m = d.groupby(["label", "step"], as_index=False)[["cost", "wall_time", "test_accuracy", "test_loss"]].mean()
        extra = None if long is None else long[long["problem"] == problem]
        fig, axes = plt.subplots(2, 3, figsize=(16, 8))
        palette = {lab: st.colour for lab, st in styles.items()}
        dashes = {lab: st.dashes if st.dashes else "" for lab, st in styles.items()}
        kw = dict(hue="label", hue_order=order, palette=palette, style="label", dashes=dashes, style_order=order)
        for row, y in enumerate(("test_accuracy", "test_loss")):
            sns.lineplot(d, x="step", y=y, errorbar="sd", ax=axes[row, 0], legend=row == 0, **kw)
            sns.lineplot(m[m["step"] > 0], x="cost", y=y, ax=axes[row, 1], legend=False, **kw)
            sns.lineplot(m[m["step"] > 0], x="wall_time", y=y, ax=axes[row, 2], legend=False, **kw)
            if extra is not None and len(extra):
                e = extra.groupby(["label", "step"], as_index=False)[["cost", "wall_time", y]].mean()
                e = e[e["step"] > 0]
                for col, x in enumerate(("cost", "wall_time"), start=1):
                    axes[row, col].plot(e[x], e[y], color="grey", lw=0.8, label=LONG_LABEL)
        if extra is not None and len(extra):
            axes[0, 1].legend(fontsize=8)
        cost_axes(axes, "training seconds (evaluation excluded)")
        for ax in axes[0]:
            ax.set_ylabel("test accuracy at x*(θ)")
        for ax in axes[1]:
            ax.set_ylabel("test loss (cross-entropy) at x*(θ)")
            ax.set_yscale("log")
        seeds = d["seed"].nunique()
        axes[0, 0].set_title(f"{problem}: mean ± sd over {seeds} seeds")
        axes[0, 0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(HERE / f"curves_{problem}.png", dpi=100)
        plt.close(fig)


def final_table(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (problem, label, seed), d in df.groupby(["problem", "label", "seed"]):
        d = d.sort_values("step")
        last = d.iloc[-1]
        rows.append(
            dict(
                problem=problem, setting=label, seed=seed, steps=int(last["step"]),
                initial_accuracy=d["test_accuracy"].iloc[0], final_accuracy=last["test_accuracy"],
                last_accuracy=d["test_accuracy"].iloc[-LAST:].mean(), final_loss=last["test_loss"],
                T=last["operator_evals"], VJP=last["vjp_evals"], cost=last["cost"], seconds=last["wall_time"],
                median_gap=d.loc[d["step"] > 0, "grad_gap"].median(), diverged=str(last["status"]) != "ok",
            )
        )  # fmt: skip
    per_seed = pd.DataFrame(rows)
    per_seed.to_csv(HERE / "final_per_seed.csv", index=False)
    agg = (
        per_seed.groupby(["problem", "setting"])
        .agg(
            final_accuracy=("final_accuracy", "mean"), final_accuracy_sd=("final_accuracy", "std"),
            last_accuracy=("last_accuracy", "mean"), final_loss=("final_loss", "mean"),
            final_loss_sd=("final_loss", "std"), steps=("steps", "max"), T=("T", "mean"), VJP=("VJP", "mean"),
            cost=("cost", "mean"), seconds=("seconds", "mean"), median_gap=("median_gap", "median"),
            diverged=("diverged", "sum"), seeds=("seed", "count"),
        )
        .reset_index()
    )  # fmt: skip
    agg = sort_settings(agg, ORDER, ["problem"])
    agg.to_csv(HERE / "final.csv", index=False)
    write_markdown(
        HERE / "final.md",
        (
            f"| problem | setting | seeds | final test accuracy | mean of last {LAST} | final test loss | T | VJP | T + VJP "
            "| seconds | median gap to DEQ | diverged |"
        ),
        [
            (
                f"| {r.problem} | {r.setting} | {r.seeds} | {r.final_accuracy:.3f} ± {r.final_accuracy_sd:.3f} | "
                f"{r.last_accuracy:.3f} | {r.final_loss:.3f} ± {r.final_loss_sd:.3f} | {r.T:.0f} | {r.VJP:.0f} | "
                f"{r.cost:.0f} | {r.seconds:.1f} | {r.median_gap:.2g} | {int(r.diverged)}/{r.seeds} |"
            )
            for r in agg.itertuples()
        ],
    )
    return agg


def smoothed(curve: pd.DataFrame) -> pd.Series:
    """The test accuracy of a run (sorted by step) as the mean of its last ``LAST`` evaluations
    (NaN before the first ``LAST``): a setting whose accuracy swings reaches a target when its
    mean does, not at one lucky evaluation."""
    return curve["test_accuracy"].rolling(LAST, min_periods=LAST).mean()


def first_reach(curve: pd.DataFrame, target: float) -> tuple[float, float]:
    """(cumulative T + VJP, training seconds) at the first step whose :func:`smoothed` test
    accuracy is >= ``target`` (NaN, NaN if none)."""
    hit = curve[smoothed(curve) >= target]
    if not len(hit):
        return float("nan"), float("nan")
    return float(hit["cost"].iloc[0]), float(hit["wall_time"].iloc[0])


def matched(df: pd.DataFrame) -> pd.DataFrame:
    """Per seed and reference DEQ (warm, cold): the target is the DEQ run's final test
    accuracy (mean of its last ``LAST`` evaluations) less ``MARGIN``; each setting, and the
    DEQ run itself, pays the cumulative T + VJP and seconds of its first step whose mean of
    the last ``LAST`` evaluations is at or above it."""
    rows = []
    for (problem, seed), d in df.groupby(["problem", "seed"]):
        runs = {lab: c.sort_values("step") for lab, c in d.groupby("label")}
        for ref in REFERENCES:
            if ref not in runs:
                continue
            target = float(smoothed(runs[ref]).iloc[-1]) - MARGIN
            deq_cost, deq_seconds = first_reach(runs[ref], target)
            for lab, c in runs.items():
                cost, seconds = first_reach(c, target)
                rows.append(
                    dict(problem=problem, seed=seed, setting=lab, versus=ref, target_accuracy=target, cost=cost,
                         seconds=seconds, deq_cost=deq_cost, deq_seconds=deq_seconds, reached=not np.isnan(cost))
                )  # fmt: skip
    per_seed = pd.DataFrame(rows)
    out = (
        per_seed.groupby(["problem", "setting", "versus"])
        .agg(
            seeds=("seed", "count"), reached=("reached", "sum"), target_accuracy=("target_accuracy", "mean"),
            cost=("cost", "median"), seconds=("seconds", "median"), deq_cost=("deq_cost", "median"),
            deq_seconds=("deq_seconds", "median"),
        )
        .reset_index()
    )  # fmt: skip
    out = sort_settings(out, ORDER, ["problem", "versus"])
    out.to_csv(HERE / "matched.csv", index=False)
    write_markdown(
        HERE / "matched.md",
        (
            "| problem | vs | setting | reached (seeds) | target accuracy (mean) | its T + VJP (median) | its seconds "
            "| DEQ's T + VJP | DEQ's seconds |"
        ),
        [
            (
                f"| {r.problem} | {r.versus} | {r.setting} | {int(r.reached)}/{r.seeds} | {r.target_accuracy:.3f} | "
                f"{r.cost:.0f} | {r.seconds:.2f} | {r.deq_cost:.0f} | {r.deq_seconds:.2f} |"
            )
            for r in out.itertuples()
        ],
    )
    return out


def long_table(df: pd.DataFrame, long: pd.DataFrame) -> pd.DataFrame:
    """The long runs (results/families/long): per seed, the final and last-LAST test accuracy,
    the whole T + VJP and seconds, and the T + VJP and seconds at which they first reach the
    final accuracy of warm and of cold DEQ (same seed, the runs of train/) less MARGIN."""
    rows = []
    for (problem, seed), d in long.groupby(["problem", "seed"]):
        d = d.sort_values("step")
        row = dict(
            problem=problem, seed=seed, steps=int(d["step"].iloc[-1]), final_accuracy=d["test_accuracy"].iloc[-1],
            last_accuracy=d["test_accuracy"].iloc[-LAST:].mean(), final_loss=d["test_loss"].iloc[-1],
            cost=d["cost"].iloc[-1], seconds=d["wall_time"].iloc[-1],
        )  # fmt: skip
        for ref in REFERENCES:
            r = df[(df["problem"] == problem) & (df["seed"] == seed) & (df["label"] == ref)].sort_values("step")
            tag = ref.split()[1]
            row[f"{tag}_deq_accuracy"] = float(smoothed(r).iloc[-1]) if len(r) else float("nan")
            row[f"{tag}_deq_cost"] = float(r["cost"].iloc[-1]) if len(r) else float("nan")
            row[f"cost_to_{tag}_deq"], row[f"seconds_to_{tag}_deq"] = first_reach(
                d, row[f"{tag}_deq_accuracy"] - MARGIN
            )
        rows.append(row)
    out = pd.DataFrame(rows)
    out.to_csv(HERE / "long.csv", index=False)
    write_markdown(
        HERE / "long.md",
        (
            "| problem | seed | steps | final test accuracy | mean of last 5 | T + VJP | seconds | warm DEQ: last-5 accuracy, "
            "its T + VJP | reached at T + VJP | cold DEQ: last-5 accuracy, its T + VJP | reached at T + VJP |"
        ),
        [
            (
                f"| {r.problem} | {r.seed} | {r.steps} | {r.final_accuracy:.3f} | {r.last_accuracy:.3f} | {r.cost:.0f} | "
                f"{r.seconds:.1f} | {r.warm_deq_accuracy:.3f}, {r.warm_deq_cost:.0f} | {r.cost_to_warm_deq:.0f} | "
                f"{r.cold_deq_accuracy:.3f}, {r.cold_deq_cost:.0f} | {r.cost_to_cold_deq:.0f} |"
            )
            for r in out.itertuples()
        ],
    )
    return out


if __name__ == "__main__":
    table = load()
    long_paths = sorted((HERE / "long").glob("*/*.csv"))
    long_runs = read_runs(long_paths) if long_paths else None
    curves(table, long_runs)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(final_table(table).to_string(index=False))
        print(matched(table).to_string(index=False))
        if long_runs is not None:
            print(long_table(table, long_runs).to_string(index=False))
