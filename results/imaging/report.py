"""Figures and tables of the imaging training runs (<dir>/train/<problem>/*.csv).

    python results/imaging/report.py                      # dir: results/imaging
    python results/imaging/report.py --dir results/estimators --no-reconstructions

Writes, into ``--dir`` (this file's folder by default), from the tables alone (the
checkpoints only for the reconstructions):

- final.csv / final_per_seed.csv / final.md: final test PSNR (mean +- sd over seeds), gain over
  the initial theta, difference to warm and to cold DEQ, the whole cost of training (T
  applications, VJPs, T + VJP, seconds, peak memory of one gradient, per-sample state bytes),
  the median gap to the tight DEQ gradient;
- matched.csv / matched.md: for each setting, the T + VJP (and the training seconds) it
  needed to first reach a test PSNR that both it and DEQ (warm, then cold) reach, and the
  ratio of DEQ's cost to its;
- curves_<problem>.png: l(theta) = L(x*(theta)) and test PSNR against the outer step, the
  cumulative T + VJP and the training seconds (mean over seeds, +- sd as bars at a few
  steps); unfinished runs are left out (and listed);
- gaps.png: the relative gap to the tight float64 DEQ gradient along training (mean, +- sd
  as bars);

Each setting has its estimator's colour, dash and marker of every figure of the project
(:func:`jfbbench.plots.estimator_styles`).
- front/: the error-cost front of the training runs (``jfbbench front``);
- reconstructions.png: one whole test picture, blurred and reconstructed with the initial
  theta and the theta learned by warm DEQ and restarted JFB K=2 (seed 0), per problem.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jfbbench import plots  # noqa: E402
from jfbbench.training.tables import read_runs  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # results/: what the reports share
from _reports import cost_axes, sort_settings, styled  # noqa: E402

#: the folder read (its train/) and written; set by --dir
HERE = Path(__file__).resolve().parent
PROBLEMS = ["weighted_tv", "pnp_fb", "drunet_fb"]
ORDER = [
    "deq warm", "deq cold", "jfb K=2 warm", "jfb K=2 cold", "unrolled K=2", "unrolled K=10",
    "restarted_jfb K=2", "restarted_jfb K=10", "revdeq K=2 beta=1.5", "revdeq K=10 beta=1.5",
    "shine refine=0 cold", "shine refine=8 cold", "forward_mode K=2", "forward_mode K=10",
]  # fmt: skip
FINAL_STEPS = 40  # the large preset's steps
WINDOW = 7  # steps of the running mean of l(theta) (batches of 4 of 7 or 14 training crops)
SD_STEPS = (10, 20, 30, 40)  # the steps where the learning curves show mean +- sd over seeds
SAME = 0.005  # curves closer than this fraction of their axis' span are said to coincide


def load() -> pd.DataFrame:
    paths = sorted((HERE / "train").glob("*/*.csv"))
    if not paths:
        raise SystemExit(f"no tables under {HERE / 'train'}: run the run.sh beside it first")
    df = read_runs(paths)
    # only finished runs (the last step reached, or a recorded divergence)
    last = df.groupby(["problem", "label", "seed"])[["step"]].transform("max")["step"]
    finished = df.groupby(["problem", "label", "seed"])["step"].transform(
        lambda s: s.max() >= FINAL_STEPS
    ) | df.groupby(["problem", "label", "seed"])["status"].transform(lambda s: (s != "ok").any())
    skipped = df[~finished & (df["step"] == last)]
    for r in skipped.itertuples():
        print(f"left out (unfinished): {r.problem} {r.label} seed {r.seed} at step {r.step}")
    return df[finished]


def _styles(labels) -> tuple[list[str], dict]:
    """The settings in the legend's order and their look (:func:`_reports.styled`)."""
    return styled(labels, ORDER)


def _line(ax, x, y, style, lw: float, label: str | None = None, markevery=None) -> None:
    ax.plot(
        x, y, color=style.colour, linestyle=style.linestyle, marker=style.marker, markevery=markevery, ms=5,
        mfc="none", mew=1.1, lw=lw, label=label,
    )  # fmt: skip


def _sd_bars(ax, stats: pd.DataFrame, y: str, order: list[str], styles: dict, steps, logx: bool = False) -> None:
    """Mean +- sd over seeds as error bars at ``steps`` only, each setting's shifted a little
    sideways so that no bar hides another (the lines alone elsewhere)."""
    shifts = np.linspace(-1.2, 1.2, len(order)) if len(order) > 1 else [0.0]
    for shift, lab in zip(shifts, order, strict=True):
        s = stats[(stats["label"] == lab) & stats["step"].isin(steps)]
        ax.errorbar(
            s["step"] + shift, s[y], yerr=s[f"{y}_sd"], fmt="none", ecolor=styles[lab].colour, elinewidth=1.0,
            capsize=2,
        )  # fmt: skip


def _legend(fig, order: list[str], styles: dict, suffix: dict[str, str], extra=()) -> None:
    """One legend for the figure, outside its panels on the right."""
    handles = [
        plt.Line2D([], [], color=styles[lab].colour, linestyle=styles[lab].linestyle, marker=styles[lab].marker,
                   mfc="none", mew=1.1, lw=1.6, label=lab + suffix.get(lab, ""))
        for lab in order
    ] + list(extra)  # fmt: skip
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)


def _span(curves: dict) -> float:
    """The range of the values of a panel's curves."""
    values = pd.concat(list(curves.values()))
    return float(values.max() - values.min())


def curves(df: pd.DataFrame) -> None:
    for problem, d in df.groupby("problem"):
        order, styles = _styles(d["label"])
        widths = dict(zip(order, plots.line_widths(len(order), 2.6, 1.0), strict=True))
        seeds = d["seed"].nunique()
        values = ["cost", "wall_time", "test_psnr", "outer_loss"]
        # l(theta) is measured on each step's batch; a running mean over WINDOW steps (every
        # training image seen about four times) shows its trend
        d = d.sort_values("step").copy()
        d["outer_loss"] = d.groupby(["label", "seed"])["outer_loss"].transform(lambda s: s.rolling(WINDOW, 1).mean())
        g = d.groupby(["label", "step"])
        m = g[values].mean().join(g[["test_psnr", "outer_loss"]].std().add_suffix("_sd")).reset_index()
        fig, axes = plt.subplots(2, 3, figsize=(17, 8))
        steps_curves = {}
        for row, y in enumerate(("outer_loss", "test_psnr")):
            for lab in order:
                c = m[m["label"] == lab].sort_values("step")
                later = c[c["step"] > 0]
                every = max(len(c) // 8, 1)
                _line(axes[row, 0], c["step"], c[y], styles[lab], widths[lab], markevery=every)
                _line(axes[row, 1], later["cost"], later[y], styles[lab], widths[lab], markevery=every)
                _line(axes[row, 2], later["wall_time"], later[y], styles[lab], widths[lab], markevery=every)
                steps_curves.setdefault(y, {})[lab] = c.set_index("step")[y]
            if seeds > 1:
                _sd_bars(axes[row, 0], m, y, order, styles, SD_STEPS)
        for ax in axes[:, 0]:
            ax.set_xlabel("step")
        cost_axes(axes, "training wall time (s, evaluation excluded)")
        for ax in axes[0]:
            ax.set_yscale("log")
            ax.set_ylabel(f"l(θ) = L(x*(θ)), step's batch, mean of {WINDOW} steps")
        for ax in axes[1]:
            ax.set_ylabel("test PSNR at x*(θ) (dB)")
        for ax in axes.flat:
            ax.grid(True, alpha=0.3)
            if ax.get_yscale() == "log":
                plots.readable_log_axis(ax.yaxis)
        axes[1, 0].axhline(d["input_psnr"].iloc[0], color="grey", lw=0.8, ls=":")
        bars = f"; bars: ± sd over seeds at steps {', '.join(map(str, SD_STEPS))}" if seeds > 1 else ""
        axes[0, 0].set_title("the same loss for every estimator", fontsize=10)
        axes[1, 0].set_title("test PSNR (dotted: the blurred input's)", fontsize=10)
        # a legend suffix where two settings coincide on both curves against the step, within
        # 0.5 % of the axis' span (log scale for the loss, dB for the PSNR)
        loss = {k: np.log10(v) for k, v in steps_curves["outer_loss"].items()}
        suffix_loss, _ = plots.coincidence_notes({0: loss}, rtol=0, atol=_span(loss) * SAME)
        psnr = steps_curves["test_psnr"]
        suffix_psnr, _ = plots.coincidence_notes({0: psnr}, rtol=0, atol=_span(psnr) * SAME)
        suffix = {k: v for k, v in suffix_loss.items() if suffix_psnr.get(k) == v}
        fig.suptitle(
            f"{problem}: mean over {seeds} seed(s){bars}; in the legend, = : the same numbers, "
            f"≈ : within {SAME:.1%} of the axis' span on both curves against the step",
            y=1.0,
        )
        fig.tight_layout()
        _legend(fig, order, styles, suffix)
        fig.savefig(HERE / f"curves_{problem}.png", dpi=100, bbox_inches="tight")
        plt.close(fig)


def gaps(df: pd.DataFrame) -> None:
    d = df[df["grad_gap"].notna() & (df["step"] > 0)]
    problems = [p for p in PROBLEMS if p in set(d["problem"])]
    order, styles = _styles(d["label"])
    widths = dict(zip(order, plots.line_widths(len(order), 2.6, 1.0), strict=True))
    fig, axes = plt.subplots(1, len(problems), figsize=(5.6 * len(problems), 4.2), squeeze=False)
    panels = {}
    for ax, problem in zip(axes.flat, problems, strict=True):
        sub = d[d["problem"] == problem]
        g = sub.groupby(["label", "step"])["grad_gap"]
        stats = g.mean().to_frame().join(g.std().rename("grad_gap_sd")).reset_index()
        here = [lab for lab in order if lab in set(sub["label"])]
        for lab in here:
            c = stats[stats["label"] == lab]
            _line(ax, c["step"], c["grad_gap"], styles[lab], widths[lab])
        _sd_bars(ax, stats, "grad_gap", here, styles, sorted(stats["step"].unique()))
        panels[problem] = {lab: stats[stats["label"] == lab].set_index("step")["grad_gap"] for lab in here}
        ax.set_yscale("log")
        plots.readable_log_axis(ax.yaxis)
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("step")
        ax.set_ylabel("||g - g_DEQ|| / ||g_DEQ|| (same θ, same batch)")
    suffix, notes = plots.coincidence_notes(panels)
    for ax, problem in zip(axes.flat, problems, strict=True):
        ax.set_title(f"{problem}: gap to a float64 DEQ at 1e-8" + (f"\n{notes[problem]}" if notes[problem] else ""))
    fig.suptitle(
        f"mean over seeds, bars ± sd (shifted sideways); = : the same numbers, ≈ : within {plots.COINCIDE_RTOL:.0%}",
        y=1.0,
    )
    fig.tight_layout()
    _legend(fig, order, styles, suffix)
    fig.savefig(HERE / "gaps.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def final_table(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (problem, label, seed), d in df.groupby(["problem", "label", "seed"]):
        d = d.sort_values("step")
        first, last = d.iloc[0], d.iloc[-1]
        rows.append(
            dict(
                problem=problem, setting=label, seed=seed, steps=int(last["step"]), input_psnr=first["input_psnr"],
                initial_psnr=first["test_psnr"], final_psnr=last["test_psnr"],
                gain=last["test_psnr"] - first["test_psnr"], final_loss=last["outer_loss"],
                T=last["operator_evals"], VJP=last["vjp_evals"],
                JVP=0 if pd.isna(last.get("jvp_evals", np.nan)) else last["jvp_evals"], cost=last["cost"], seconds=last["wall_time"],
                peak_memory_bytes=d["peak_memory_bytes"].max(), state_bytes=last["state_bytes"],
                median_gap=d.loc[d["step"] > 0, "grad_gap"].median(), diverged=str(last["status"]) != "ok",
            )
        )  # fmt: skip
    per_seed = pd.DataFrame(rows)
    per_seed.to_csv(HERE / "final_per_seed.csv", index=False)
    agg = (
        per_seed.groupby(["problem", "setting"])
        .agg(
            final_psnr=("final_psnr", "mean"), final_psnr_sd=("final_psnr", "std"), gain=("gain", "mean"),
            input_psnr=("input_psnr", "mean"), steps=("steps", "max"), T=("T", "mean"), VJP=("VJP", "mean"),
            JVP=("JVP", "mean"), cost=("cost", "mean"), seconds=("seconds", "mean"), peak_memory_bytes=("peak_memory_bytes", "max"),
            state_bytes=("state_bytes", "max"), median_gap=("median_gap", "median"), diverged=("diverged", "sum"),
            seeds=("seed", "count"),
        )
        .reset_index()
    )  # fmt: skip
    for ref in ("deq warm", "deq cold"):  # paired by seed: only the seeds both have
        base = per_seed[per_seed["setting"] == ref].set_index(["problem", "seed"])
        key = list(zip(per_seed["problem"], per_seed["seed"], strict=True))
        ok = [k in base.index for k in key]
        tag = ref.split()[1]
        per_seed[f"delta_{tag}"] = [
            r.final_psnr - base.loc[k, "final_psnr"] if o else np.nan
            for r, k, o in zip(per_seed.itertuples(), key, ok, strict=True)
        ]
        per_seed[f"ratio_{tag}"] = [
            base.loc[k, "cost"] / r.cost if o and r.cost else np.nan
            for r, k, o in zip(per_seed.itertuples(), key, ok, strict=True)
        ]
        paired = per_seed.groupby(["problem", "setting"])[[f"delta_{tag}", f"ratio_{tag}"]].mean()
        idx = list(zip(agg["problem"], agg["setting"], strict=True))
        agg[f"delta_{tag}_deq_db"] = [paired.loc[i, f"delta_{tag}"] for i in idx]
        agg[f"cost_ratio_{tag}_deq"] = [paired.loc[i, f"ratio_{tag}"] for i in idx]
    agg = sort_settings(agg, ORDER, ["problem"])
    agg.to_csv(HERE / "final.csv", index=False)
    jvp = bool((agg["JVP"] > 0).any())  # a JVP column where an estimator took them (forward_mode, cg_normal)
    lines = [
        "| problem | setting | seeds | final test PSNR (dB) | Δ warm DEQ | Δ cold DEQ | T | VJP | "
        + ("JVP | T + VJP + JVP " if jvp else "T + VJP ")
        + "| warm DEQ ÷ it | cold DEQ ÷ it | seconds | peak memory | state | median gap | diverged |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if jvp else ""),
    ]
    for r in agg.itertuples():
        lines.append(
            f"| {r.problem} | {r.setting} | {r.seeds} | {r.final_psnr:.2f} ± {r.final_psnr_sd:.2f} | "
            f"{r.delta_warm_deq_db:+.2f} | {r.delta_cold_deq_db:+.2f} | {r.T:.0f} | {r.VJP:.0f} | "
            + (f"{r.JVP:.0f} | " if jvp else "")
            + f"{r.cost:.0f} | "
            f"{r.cost_ratio_warm_deq:.2f} | {r.cost_ratio_cold_deq:.2f} | {r.seconds:.1f} | "
            f"{r.peak_memory_bytes / 2**20:.1f} MiB | {r.state_bytes / 2**20:.2f} MiB | {r.median_gap:.2g} | "
            f"{int(r.diverged)}/{r.seeds} |"
        )
    (HERE / "final.md").write_text("\n".join(lines) + "\n")
    return agg


def cost_to_reach(curve: pd.DataFrame, psnr: float, column: str = "cost") -> float:
    """The cumulative T + VJP (``column="wall_time"``: training seconds) at which a curve
    first reaches ``psnr`` (NaN if never)."""
    hit = curve[curve["test_psnr"] >= psnr]
    return float(hit[column].iloc[0]) if len(hit) else float("nan")


def matched(df: pd.DataFrame) -> pd.DataFrame:
    """Cost at matched test PSNR, per seed: for each setting and each DEQ (warm, cold) of the
    same seed, the target is the lower of the two final test PSNRs less 0.01 dB; each pays the
    cumulative T + VJP at which its curve first reaches the target. The table gives the
    ratio DEQ / setting per seed and its mean and range over seeds."""
    rows = []
    for (problem, seed), d in df.groupby(["problem", "seed"]):
        curves = {lab: c.sort_values("step") for lab, c in d.groupby("label")}
        for lab, c in curves.items():
            for ref in ("deq warm", "deq cold"):
                if ref not in curves or lab == ref:
                    continue
                target = min(c["test_psnr"].iloc[-1], curves[ref]["test_psnr"].iloc[-1]) - 0.01
                own, deq = cost_to_reach(c, target), cost_to_reach(curves[ref], target)
                secs, deq_secs = cost_to_reach(c, target, "wall_time"), cost_to_reach(curves[ref], target, "wall_time")
                rows.append(
                    dict(problem=problem, seed=seed, setting=lab, versus=ref, target_psnr=target, cost=own,
                         deq_cost=deq, deq_over_setting=deq / own if own > 0 else float("nan"), seconds=secs,
                         deq_seconds=deq_secs, deq_over_setting_seconds=deq_secs / secs if secs > 0 else float("nan"))
                )  # fmt: skip
    per_seed = pd.DataFrame(rows)
    out = (
        per_seed.groupby(["problem", "setting", "versus"])
        .agg(
            seeds=("seed", "count"), target_psnr=("target_psnr", "mean"), cost=("cost", "mean"),
            deq_cost=("deq_cost", "mean"), ratio=("deq_over_setting", "mean"),
            ratio_min=("deq_over_setting", "min"), ratio_max=("deq_over_setting", "max"),
            seconds=("seconds", "mean"), deq_seconds=("deq_seconds", "mean"),
            seconds_ratio=("deq_over_setting_seconds", "mean"),
        )
        .reset_index()
    )  # fmt: skip
    out.to_csv(HERE / "matched.csv", index=False)
    lines = [
        "| problem | setting | vs | seeds | matched test PSNR (dB) | its T + VJP (+ JVP) | DEQ's T + VJP | DEQ ÷ it (range) "
        "| its seconds | DEQ's seconds | DEQ ÷ it, seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out.itertuples():
        lines.append(
            f"| {r.problem} | {r.setting} | {r.versus} | {r.seeds} | {r.target_psnr:.2f} | {r.cost:.0f} | "
            f"{r.deq_cost:.0f} | {r.ratio:.2f} ({r.ratio_min:.2f}–{r.ratio_max:.2f}) | {r.seconds:.2f} | "
            f"{r.deq_seconds:.2f} | {r.seconds_ratio:.2f} |"
        )
    (HERE / "matched.md").write_text("\n".join(lines) + "\n")
    return out


def whole_picture(problem, name: str = "coins"):
    """Make the problem's test batch one whole picture of the grey set (cropped to a multiple
    of 8 pixels for the DRUNet), blurred and noised as the crops are."""
    import torch
    from deepinv.physics import GaussianNoise

    from jfbbench import data

    img = data.load_image(name, "grey")
    h, w = (s - s % 8 for s in img.shape)
    x = problem._to(torch.from_numpy(img[:h, :w].copy())[None, None])
    noise = GaussianNoise(sigma=problem.noise, rng=torch.Generator().manual_seed(problem.seed + 1))
    with torch.no_grad():
        y = noise(problem.physics.A(x))
    problem._data["test"] = (x, y)
    problem.select("test")


def reconstructions(seed: int = 0, picture: str = "coins") -> None:
    """Blurred, x*(theta_0), x*(theta learned by warm DEQ and by restarted JFB K=2), ground
    truth, on the whole test picture ``picture``, per problem (from the runs' checkpoints)."""
    import torch

    from jfbbench.training import TrainConfig, Trainer, checkpoint_path

    torch.set_num_threads(1)
    runs = (("deq", 1, True, "warm DEQ"), ("restarted_jfb", 2, False, "restarted JFB K=2"))
    panels = []
    for problem in PROBLEMS:
        outs = [HERE / "train" / problem / f"{e}-K{k}-{'warm' if w else 'cold'}-s{seed}.csv" for e, k, w, _ in runs]
        if not all(checkpoint_path(o).exists() for o in outs):
            continue
        ims = []
        for (estimator, depth, warm, name), out in zip(runs, outs, strict=True):
            config = TrainConfig(
                problem=problem, estimator=estimator, depth=depth, seed=seed, preset="large", warm_start=warm
            )
            trainer = Trainer(config)
            p = trainer.problem
            whole_picture(p, picture)
            if not ims:
                x0, psnr0, _ = trainer.evaluate("test")
                ims.append((p.y[0, 0], f"blurred ({float(p.psnr(p.y)[0]):.2f} dB)"))
                ims.append((x0[0, 0], f"initial θ ({float(psnr0[0]):.2f} dB)"))
            trainer.load_state_dict(torch.load(checkpoint_path(out), map_location="cpu", weights_only=False))
            trainer.eval_bank = type(trainer.eval_bank)()  # the whole picture: a cold start
            x1, psnr1, _ = trainer.evaluate("test")
            ims.append((x1[0, 0], f"{name} ({float(psnr1[0]):.2f} dB)"))
        ims.append((p.target[0, 0], f"ground truth ({picture})"))
        panels.append((problem, ims))
    if not panels:
        return
    ncol = len(panels[0][1])
    fig, axes = plt.subplots(len(panels), ncol, figsize=(3.4 * ncol, 3.0 * len(panels)), squeeze=False)
    for row, (problem, ims) in zip(axes, panels, strict=True):
        for ax, (im, title) in zip(row, ims, strict=True):
            ax.imshow(im.detach().clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(problem)
    fig.tight_layout()
    fig.savefig(HERE / "reconstructions.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=HERE, help="the folder whose train/ is read and written")
    parser.add_argument("--no-reconstructions", action="store_true", help="skip the figure read from checkpoints")
    args = parser.parse_args()
    HERE = args.dir.resolve()
    table = load()
    curves(table)
    gaps(table)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(final_table(table).to_string(index=False))
        print(matched(table).to_string(index=False))
    plots.write_front([table], HERE / "front", formats=("png",))  # the finished runs
    if not args.no_reconstructions:
        reconstructions()
