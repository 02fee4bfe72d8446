"""Figures and tables of the imaging training runs (results/imaging/train/<problem>/*.csv).

    python results/imaging/report.py

Writes, beside this file: curves_<problem>.png (test PSNR against outer step and against
training wall time, mean and standard deviation over seeds), gaps.png (relative gap between
each estimator's gradient and the DEQ gradient at the same theta), final.csv / final.md
(final test PSNR mean +- std over seeds, gain over the initial theta, time and counts) and,
when the runs' checkpoints are present, reconstructions.png (blurred, initial theta, theta
learned by DEQ and by restarted JFB K=2, ground truth on a test patch).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

HERE = Path(__file__).resolve().parent
PROBLEMS = ["weighted_tv", "pnp_fb", "drunet_fb", "weighted_tv_per_pixel", "weighted_tv_nonsmooth"]


def load() -> pd.DataFrame:
    # the folder names the experiment (e.g. weighted_tv_per_pixel: weighted_tv with --set weights=per_pixel)
    frames = [pd.read_csv(p).assign(problem=p.parent.name) for p in sorted((HERE / "train").glob("*/*.csv"))]
    if not frames:
        raise SystemExit("no tables under results/imaging/train: run results/imaging/run.sh first")
    df = pd.concat(frames, ignore_index=True)
    df["depth"] = df["depth"].fillna(0).astype(int)
    df["label"] = [e if d == 0 else f"{e} K={d}" for e, d in zip(df["estimator"], df["depth"], strict=True)]
    return df


ORDER = ["deq", "unrolled K=2", "unrolled K=10", "jfb K=2", "jfb K=10", "restarted_jfb K=2", "restarted_jfb K=10"]
PALETTE = dict(zip(ORDER, sns.color_palette("tab10", len(ORDER)), strict=True))


def curves(df: pd.DataFrame) -> None:
    for problem, d in df.groupby("problem"):
        order = [o for o in ORDER if o in set(d["label"])]
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
        kw = dict(hue="label", hue_order=order, palette=PALETTE)
        sns.lineplot(d, x="step", y="test_psnr", errorbar="sd", ax=axes[0], **kw)
        m = d[d["step"] > 0].groupby(["label", "step"], as_index=False)[["wall_time", "test_psnr"]].mean()
        sns.lineplot(m, x="wall_time", y="test_psnr", ax=axes[1], legend=False, **kw)
        axes[1].set_xscale("log")
        axes[0].set_title(f"{problem}: test PSNR at the DEQ equilibrium (mean ± sd, 3 seeds)")
        axes[1].set_title("against training wall time (mean over seeds)")
        axes[0].set_ylabel("test PSNR (dB)")
        axes[1].set_xlabel("training wall time (s, evaluation excluded)")
        fig.tight_layout()
        fig.savefig(HERE / f"curves_{problem}.png", dpi=110)
        plt.close(fig)


def gaps(df: pd.DataFrame) -> None:
    d = df[(df["estimator"] != "deq") & df["grad_gap"].notna()]
    problems = [p for p in PROBLEMS if p in set(d["problem"])]
    ncol = 3
    nrow = -(-len(problems) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.5 * ncol, 4 * nrow), squeeze=False)
    for ax in axes.flat[len(problems) :]:
        ax.set_visible(False)
    for ax, problem in zip(axes.flat, problems, strict=False):
        sub = d[d["problem"] == problem]
        order = [o for o in ORDER if o in set(sub["label"])]
        sns.lineplot(
            sub, x="step", y="grad_gap", hue="label", hue_order=order, palette=PALETTE, errorbar="sd", marker="o", ax=ax
        )
        ax.set_yscale("log")
        ax.set_title(f"{problem}: ||g - g_DEQ|| / ||g_DEQ||")
        ax.set_ylabel("relative gap to the DEQ gradient")
    fig.tight_layout()
    fig.savefig(HERE / "gaps.png", dpi=110)
    plt.close(fig)


def final_table(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (problem, label, seed), d in df.groupby(["problem", "label", "seed"]):
        d = d.sort_values("step")
        last = d.iloc[-1]
        rows.append(
            dict(
                problem=problem, estimator=label, seed=seed, initial_psnr=d.iloc[0]["test_psnr"],
                final_psnr=last["test_psnr"], gain=last["test_psnr"] - d.iloc[0]["test_psnr"],
                train_time=last["wall_time"], operator_evals=last["operator_evals"], vjp_evals=last["vjp_evals"],
                last_gap=d["grad_gap"].dropna().iloc[-1] if d["grad_gap"].notna().any() else float("nan"),
                diverged=str(last["status"]) != "ok", steps=int(last["step"]),
            )
        )  # fmt: skip
    per_seed = pd.DataFrame(rows)
    per_seed.to_csv(HERE / "final_per_seed.csv", index=False)
    agg = per_seed.groupby(["problem", "estimator"]).agg(
        final_psnr_mean=("final_psnr", "mean"), final_psnr_std=("final_psnr", "std"),
        gain_mean=("gain", "mean"), gain_std=("gain", "std"), train_time_s=("train_time", "mean"),
        operator_evals=("operator_evals", "mean"), vjp_evals=("vjp_evals", "mean"),
        last_gap=("last_gap", "mean"), diverged=("diverged", "sum"), seeds=("seed", "count"),
    ).reset_index()  # fmt: skip
    agg["order"] = [ORDER.index(e) if e in ORDER else 99 for e in agg["estimator"]]
    agg = agg.sort_values(["problem", "order"]).drop(columns="order")
    deq = agg[agg["estimator"] == "deq"].set_index("problem")
    agg["vs_deq_db"] = agg["final_psnr_mean"] - agg["problem"].map(deq["final_psnr_mean"])
    agg["ops_ratio_deq"] = agg["problem"].map(deq["operator_evals"]) / agg["operator_evals"]
    agg.to_csv(HERE / "final.csv", index=False)
    lines = [
        "| problem | estimator | final test PSNR (dB) | gain over initial θ (dB) | Δ vs DEQ (dB) | train time (s) "
        "| operator evals | DEQ ops / ops | VJPs | last gap to DEQ | diverged |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in agg.itertuples():
        lines.append(
            f"| {r.problem} | {r.estimator} | {r.final_psnr_mean:.2f} ± {r.final_psnr_std:.2f} | "
            f"{r.gain_mean:+.2f} ± {r.gain_std:.2f} | {r.vs_deq_db:+.2f} | {r.train_time_s:.1f} | "
            f"{r.operator_evals:.0f} | {r.ops_ratio_deq:.1f} | {r.vjp_evals:.0f} | {r.last_gap:.2g} | "
            f"{int(r.diverged)}/{r.seeds} |"
        )
    (HERE / "final.md").write_text("\n".join(lines) + "\n")
    return agg


def reconstructions(
    runs: tuple[tuple[str, int], ...] = (("deq", 1), ("restarted_jfb", 2)), seed: int = 0, image: int = 0
) -> None:
    """Blurred, x*(theta_0), x*(theta learned by each of ``runs``), ground truth on one test
    patch per problem (from the runs' checkpoints)."""
    import torch

    from jfbbench.train import TrainConfig, Trainer, checkpoint_path

    torch.set_num_threads(1)
    panels = []
    for problem in PROBLEMS[:3]:
        outs = [HERE / "train" / problem / f"{e}-K{k}-s{seed}.csv" for e, k in runs]
        if not all(checkpoint_path(o).exists() for o in outs):
            continue
        ims = []
        for (estimator, depth), out in zip(runs, outs, strict=True):
            trainer = Trainer(TrainConfig(problem=problem, estimator=estimator, depth=depth, seed=seed))
            p = trainer.problem
            if not ims:
                x0, psnr0, _ = trainer.evaluate("test")
                ims.append((p.y[image, 0], f"blurred y ({p.psnr(p.y)[image]:.2f} dB)"))
                ims.append((x0[image, 0], f"initial θ ({psnr0[image]:.2f} dB)"))
            trainer.load_state_dict(torch.load(checkpoint_path(out), map_location="cpu", weights_only=False))
            x1, psnr1, _ = trainer.evaluate("test")
            name = estimator if estimator == "deq" else f"{estimator} K={depth}"
            ims.append((x1[image, 0], f"learned by {name} ({psnr1[image]:.2f} dB)"))
        ims.append((p.target[image, 0], "ground truth"))
        panels.append((problem, ims))
    if not panels:
        return
    ncol = len(panels[0][1])
    fig, axes = plt.subplots(len(panels), ncol, figsize=(2.9 * ncol, 3.1 * len(panels)), squeeze=False)
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
    table = load()
    curves(table)
    gaps(table)
    print(final_table(table).to_string(index=False))
    reconstructions()
