"""Tables and the figure of the Sudoku training runs (results/reasoning/train/runs/*.csv).

    python results/reasoning/train/report.py

Writes, beside this file, from the tables alone:

- final.csv / final.md: per scheme and N_sup, the held-out solved fraction (``test_accuracy``),
  cell accuracy and loss after the last step (mean +- sd over the seeds), the optimiser steps,
  the whole training cost (T applications, VJPs, T + VJP, seconds), the peak memory of one
  gradient call and the per-puzzle state kept, and the relative gap of the scheme's gradient to
  the tight float64 DEQ gradient at the same theta along training (median, first and last
  measurement);
- reach.csv / reach.md: the outer step, optimiser steps, T + VJP and seconds at which each
  run's held-out solved fraction first reaches 0.5 and 0.75 (median over the seeds; "-" where
  a seed never does);
- curves.png: solved fraction against the outer step, the cumulative T + VJP and the training
  seconds (mean over seeds), and the gap to DEQ along training.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jfbbench.plots._style import estimator_palette  # noqa: E402

HERE = Path(__file__).resolve().parent
#: The schemes in the order of the tables, by their label.
ORDER = ["trm", "hrm_one_step", "restarted_jfb K=2 M=1", "unrolled K=3", "jfb warm", "deq warm"]
TARGETS = (0.5, 0.75)


def label(r: pd.Series) -> str:
    e = r["estimator"]
    if e == "restarted_jfb":  # M + K applications of T per supervised step
        extra = int(r["step_operator_evals"]) // int(r["deep_supervision"]) - int(r["depth"])
        return f"restarted_jfb K={int(r['depth'])} M={extra}"
    if e == "unrolled":
        return f"unrolled K={int(r['depth'])}"
    return f"{e} warm" if str(r["warm_start"]).lower() == "true" else e


def load() -> pd.DataFrame:
    frames = []
    for path in sorted((HERE / "runs").glob("*.csv")):
        df = pd.read_csv(path)
        steps = df[df["step"] > 0]  # a run's label reads its settings off its first step
        frames.append(df.assign(scheme=label(steps.iloc[0])) if len(steps) else df.iloc[:0])
    if not frames:
        raise SystemExit("no tables under results/reasoning/train/runs: run results/reasoning/train/run.sh first")
    df = pd.concat(frames, ignore_index=True)
    last = df.groupby(["scheme", "deep_supervision", "seed"])["step"].transform("max")
    done = (last == df["step"].max()) | df.groupby(["scheme", "deep_supervision", "seed"])["status"].transform(
        lambda s: (s != "ok").any()
    )
    if not done.all():  # a run still going (or stopped early): left out, and said
        print("unfinished, left out:", sorted(set(df.loc[~done, "scheme"] + " s" + df.loc[~done, "seed"].astype(str))))
    df = df[done]
    df["N_sup"] = df["deep_supervision"].astype(int)
    return df


def finals(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (scheme, n), g in df.groupby(["scheme", "N_sup"], sort=False):
        last = g.sort_values("step").groupby("seed").tail(1)
        gaps = g.dropna(subset=["grad_gap"]).sort_values("step")
        first_gap = gaps.groupby("seed").head(1)["grad_gap"]
        last_gap = gaps.groupby("seed").tail(1)["grad_gap"]
        rows.append(
            dict(
                scheme=scheme, N_sup=n, seeds=last["seed"].nunique(), steps=int(last["step"].max()),
                status=",".join(sorted(set(last["status"]))),
                solved=last["test_accuracy"].mean(), solved_sd=last["test_accuracy"].std(),
                cell_accuracy=last["test_cell_accuracy"].mean(), test_loss=last["test_loss"].mean(),
                optimizer_steps=int(last["optimizer_steps"].max()),
                T=last["operator_evals"].mean(), VJP=last["vjp_evals"].mean(), cost=last["cost"].mean(),
                seconds=last["wall_time"].mean(),
                peak_memory_kib=g["peak_memory_bytes"].median() / 1024, state_kib=last["state_bytes"].mean() / 1024,
                gap_median=gaps["grad_gap"].median(), gap_first=first_gap.median(), gap_last=last_gap.median(),
                cosine_median=gaps["grad_cosine"].median(),
            )
        )  # fmt: skip
    out = pd.DataFrame(rows)
    out["order"] = out["scheme"].map({s: i for i, s in enumerate(ORDER)})
    return out.sort_values(["order", "N_sup"]).drop(columns="order").reset_index(drop=True)


def reach(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (scheme, n), g in df.groupby(["scheme", "N_sup"], sort=False):
        row: dict = dict(scheme=scheme, N_sup=n)
        for target in TARGETS:
            hits = []
            for _, run in g.sort_values("step").groupby("seed"):
                ok = run[run["test_accuracy"] >= target]
                hits.append(ok.iloc[0] if len(ok) else None)
            for col, key in (("step", "step"), ("optimizer_steps", "opt_steps"), ("cost", "cost"), ("wall_time", "s")):
                vals = [float(h[col]) for h in hits if h is not None]
                row[f"{key}@{target}"] = np.median(vals) if len(vals) == len(hits) else np.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    out["order"] = out["scheme"].map({s: i for i, s in enumerate(ORDER)})
    return out.sort_values(["order", "N_sup"]).drop(columns="order").reset_index(drop=True)


def markdown(df: pd.DataFrame, path: Path, formats: dict[str, str]) -> None:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if isinstance(v, float) and np.isnan(v):
                cells.append("-")
            elif c in formats:
                cells.append(format(v, formats[c]))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def _style(n: int) -> str:
    return "-" if n == 1 else "--"


def figure(df: pd.DataFrame, fin: pd.DataFrame, path: Path) -> None:
    colours = estimator_palette(ORDER)
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    panels = [("step", "outer step"), ("cost", "T + VJP (cumulative)"), ("wall_time", "training seconds")]
    mean = (
        df.groupby(["scheme", "N_sup", "step"])[["test_accuracy", "cost", "wall_time"]]
        .mean()
        .reset_index()
        .sort_values("step")
    )
    for ax, (x, xlabel) in zip(axes[0], panels, strict=True):
        for (scheme, n), g in mean.groupby(["scheme", "N_sup"]):
            g = g[g[x] > 0] if x != "step" else g
            ax.plot(g[x], g["test_accuracy"], color=colours[scheme], ls=_style(n), lw=1.4, label=f"{scheme}, N_sup={n}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("held-out puzzles solved (mean of 3 seeds)")
        if x != "step":
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    ax = axes[1, 0]
    gaps = df.dropna(subset=["grad_gap"]).groupby(["scheme", "N_sup", "step"])["grad_gap"].median().reset_index()
    for (scheme, n), g in gaps.groupby(["scheme", "N_sup"]):
        ax.plot(g["step"], g["grad_gap"], color=colours[scheme], ls=_style(n), marker=".", lw=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("outer step")
    ax.set_ylabel("||g - g_DEQ|| / ||g_DEQ|| (median of 3 seeds)")
    ax.set_title("gap to the exact gradient (float64 DEQ, same theta and batch)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    names = [f"{r.scheme}\nN_sup={r.N_sup}" for r in fin.itertuples()]
    bar_colours = [colours[r.scheme] for r in fin.itertuples()]
    hatches = ["" if r.N_sup == 1 else "//" for r in fin.itertuples()]
    for ax, col, ylabel, title in (
        (axes[1, 1], "peak_memory_kib", "KiB", "peak memory of one gradient call (median)"),
        (axes[1, 2], "solved", "fraction of held-out puzzles", "solved after the last step (mean, seeds as dots)"),
    ):
        bars = ax.bar(range(len(fin)), fin[col], color=bar_colours, edgecolor="0.25")
        for b, h in zip(bars, hatches, strict=True):
            b.set_hatch(h)
        ax.set_xticks(range(len(fin)), names, rotation=90, fontsize=7.5)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    last = df.sort_values("step").groupby(["scheme", "N_sup", "seed"]).tail(1)
    for i, r in enumerate(fin.itertuples()):
        seeds = last[(last["scheme"] == r.scheme) & (last["N_sup"] == r.N_sup)]["test_accuracy"]
        axes[1, 2].plot([i] * len(seeds), seeds, "o", color="0.15", ms=3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: (ORDER.index(labels[i].split(",")[0]), labels[i]))
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="lower center", ncol=6, fontsize=8.5)
    fig.suptitle("recursive_reasoning, 4 x 4 Sudoku (rho = 0.9, 256 training / 64 held-out puzzles): solid N_sup = 1, "
                 "dashed (hatched) N_sup = 4", fontsize=11)  # fmt: skip
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    df = load()
    fin = finals(df)
    fin.to_csv(HERE / "final.csv", index=False)
    fmt = {c: ".3f" for c in ("solved", "solved_sd", "cell_accuracy", "test_loss", "gap_median", "gap_first",
                              "gap_last", "cosine_median")}  # fmt: skip
    fmt.update({c: ".0f" for c in ("T", "VJP", "cost", "peak_memory_kib", "state_kib")})
    fmt["seconds"] = ".1f"
    markdown(fin, HERE / "final.md", fmt)
    r = reach(df)
    r.to_csv(HERE / "reach.csv", index=False)
    markdown(r, HERE / "reach.md", {c: ".0f" for c in r.columns if "@" in c and not c.startswith("s@")})
    figure(df, fin, HERE / "curves.png")
    print(fin.to_string())
    print(r.to_string())


if __name__ == "__main__":
    main()
