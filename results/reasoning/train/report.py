"""Tables and the figure of the Sudoku training runs (results/reasoning/train/runs/*.csv).

    python results/reasoning/train/report.py

Writes, beside this file, from the tables alone:

- final.csv / final.md: per scheme and N_sup, the held-out solved fraction (``test_accuracy``),
  cell accuracy and loss after the last step (mean +- sd over the seeds; ``solved_last10``: the
  solved fraction's mean over the last 10 steps and the seeds, less noisy), the optimiser steps,
  the whole training cost (T applications, VJPs, T + VJP, seconds), the peak memory of one
  gradient call and the per-puzzle state kept, and the relative gap of the scheme's gradient to
  the tight float64 DEQ gradient at the same theta along training (median, first and last
  measurement);
- reach.csv / reach.md: the outer step, optimiser steps, T + VJP and seconds at which each
  run's held-out solved fraction first reaches 0.5 and 0.75 (median over the seeds; "-" where
  a seed never does);
- curves.png: with the state carried, solved fraction against the outer step, the cumulative
  T + VJP and the training seconds (mean over seeds), the gap to DEQ along training, the peak
  memory of a gradient call and the solved fraction at the end;
- reset.png: trm, hrm_one_step and restarted_jfb with the state carried or reset at each outer
  step, solved fraction against the outer step.
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
#: (Settings in brackets, so that the figures give each estimator its colour in every figure of
#: the project and its variants shades of it.)
ORDER = ["trm", "trm (reset)", "hrm_one_step", "hrm_one_step (reset)", "restarted_jfb (K=2, M=1)",
         "restarted_jfb (K=2, M=1, reset)", "unrolled (K=3)", "jfb (warm)", "deq (warm)"]  # fmt: skip
TARGETS = (0.5, 0.75)


def label(r: pd.Series) -> str:
    """The scheme of a run; ``(reset)`` where each outer step started its batch cold."""
    e = r["estimator"]
    settings = []
    if e == "restarted_jfb":  # M + K applications of T per supervised step
        extra = int(r["step_operator_evals"]) // int(r["deep_supervision"]) - int(r["depth"])
        settings += [f"K={int(r['depth'])}", f"M={extra}"]
    elif e == "unrolled":
        settings.append(f"K={int(r['depth'])}")
    if str(r["warm_start"]).lower() == "true":
        settings.append("warm")
    if str(r.get("reset_state", False)).lower() == "true":
        settings.append("reset")
    return f"{e} ({', '.join(settings)})" if settings else e


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
                solved_last10=g[g["step"] > g["step"].max() - 10]["test_accuracy"].mean(),
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
    """Each scheme with its state carried (the reset variants are in :func:`reset_figure`)."""
    df = df[~df["scheme"].str.endswith("reset)")]
    fin = fin[~fin["scheme"].str.endswith("reset)")].reset_index(drop=True)
    colours = estimator_palette(ORDER)
    fig, axes = plt.subplots(2, 3, figsize=(16, 9.5))
    panels = [
        ("step", "outer step", ""),
        ("cost", "T + VJP (cumulative)", ""),
        ("wall_time", "training seconds", "wall time on a shared, loaded 2-core machine: indicative"),
    ]
    mean = (
        df.groupby(["scheme", "N_sup", "step"])[["test_accuracy", "cost", "wall_time"]]
        .mean()
        .reset_index()
        .sort_values("step")
    )
    for ax, (x, xlabel, title) in zip(axes[0], panels, strict=True):
        for (scheme, n), g in mean.groupby(["scheme", "N_sup"]):
            g = g[g[x] > 0] if x != "step" else g
            ax.plot(g[x], g["test_accuracy"], color=colours[scheme], ls=_style(n), lw=1.5, label=f"{scheme}, N_sup={n}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("held-out puzzles solved (mean of 3 seeds)")
        ax.set_title(title, fontsize=9)
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
    names = [f"{r.scheme}, N_sup={r.N_sup}" for r in fin.itertuples()]
    bar_colours = [colours[r.scheme] for r in fin.itertuples()]
    hatches = ["" if r.N_sup == 1 else "//" for r in fin.itertuples()]
    for ax, col, xlabel, title in (
        (axes[1, 1], "peak_memory_kib", "KiB", "peak memory of one gradient call (median)"),
        (axes[1, 2], "solved_last10", "fraction of held-out puzzles", "solved, last 10 steps (mean; seeds as dots)"),
    ):
        y = np.arange(len(fin))[::-1]
        bars = ax.barh(y, fin[col], color=bar_colours, edgecolor="0.25")
        for b, h in zip(bars, hatches, strict=True):
            b.set_hatch(h)
        ax.set_yticks(y, names, fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, axis="x")
    tail = df[df["step"] > df["step"].max() - 10].groupby(["scheme", "N_sup", "seed"])["test_accuracy"].mean()
    for yi, r in zip(np.arange(len(fin))[::-1], fin.itertuples(), strict=True):
        seeds = tail.loc[(r.scheme, r.N_sup)]
        axes[1, 2].plot(seeds, [yi] * len(seeds), "o", color="0.15", ms=3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: (ORDER.index(labels[i].rsplit(", N_sup", 1)[0]), labels[i]))
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="lower center", ncol=6, fontsize=8.5)
    fig.suptitle("recursive_reasoning, 4 x 4 Sudoku (rho = 0.9, 256 training / 64 held-out puzzles), state carried: "
                 "solid N_sup = 1, dashed (hatched) N_sup = 4", fontsize=11)  # fmt: skip
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def reset_figure(df: pd.DataFrame, path: Path) -> None:
    """Carried against reset state, one panel per scheme that carries one of its own."""
    colours = estimator_palette(ORDER)
    schemes = [s for s in ORDER if s.endswith("reset)") and s in set(df["scheme"])]
    fig, axes = plt.subplots(1, len(schemes), figsize=(5.2 * len(schemes), 4.2), squeeze=False, sharey=True)
    mean = df.groupby(["scheme", "N_sup", "step"])["test_accuracy"].mean().reset_index()
    for ax, reset in zip(axes[0], schemes, strict=True):
        carry = reset.replace(", reset)", ")").removesuffix(" (reset)")
        for scheme, marker in ((carry, "carried"), (reset, "reset")):
            for n, g in mean[mean["scheme"] == scheme].groupby("N_sup"):
                ax.plot(g["step"], g["test_accuracy"], color=colours[carry], ls=_style(n),
                        alpha=1.0 if marker == "carried" else 0.55, lw=2.2 if marker == "reset" else 1.3,
                        label=f"N_sup={n}, state {marker}")  # fmt: skip
        ax.set_title(carry, fontsize=10)
        ax.set_xlabel("outer step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("held-out puzzles solved (mean of 3 seeds)")
    fig.suptitle("state carried from visit to visit (restarted JFB) or reset at each outer step (the published models)",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    df = load()
    fin = finals(df)
    fin.to_csv(HERE / "final.csv", index=False)
    fmt = {c: ".3f" for c in ("solved", "solved_sd", "solved_last10", "cell_accuracy", "test_loss", "cosine_median")}
    fmt.update({c: ".2g" for c in ("gap_median", "gap_first", "gap_last")})
    fmt.update({c: ".0f" for c in ("T", "VJP", "cost", "peak_memory_kib", "state_kib")})
    fmt["seconds"] = ".1f"
    markdown(fin, HERE / "final.md", fmt)
    r = reach(df)
    r.to_csv(HERE / "reach.csv", index=False)
    markdown(r, HERE / "reach.md", {c: ".1f" if c.startswith("s@") else ".0f" for c in r.columns if "@" in c})
    figure(df, fin, HERE / "curves.png")
    reset_figure(df, HERE / "reset.png")
    print(fin.to_string())
    print(r.to_string())


if __name__ == "__main__":
    main()
