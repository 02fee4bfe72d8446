"""Figures drawn from tidy tables alone (never from live objects), with seaborn."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

#: Relative errors below this are drawn at it (round-off floor), so log axes stay finite.
ERROR_FLOOR = 1e-16

SWEEP_COLUMNS = ["problem", "lipschitz", "estimator", "depth", "rel_error", "time_s", "memory_bytes"]


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a results table (.csv or .parquet)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"table {str(path)!r} does not exist")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        try:
            return pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise ValueError(f"table {str(path)!r} is empty") from None
    raise ValueError(f"table must be a .csv or .parquet file, got {str(path)!r}")


def require_columns(df: pd.DataFrame, columns: Sequence[str], what: str = "table") -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks the columns {', '.join(missing)} (has: {', '.join(map(str, df.columns))})")
    if df.empty:
        raise ValueError(f"{what} has no rows")


def with_depthless_rows_spread(df: pd.DataFrame) -> pd.DataFrame:
    """Rows without a depth (``deq``) are repeated at every depth of their problem, so they
    draw as flat lines beside the truncated estimators."""
    has = df[df["depth"].notna()]
    none = df[df["depth"].isna()]
    if none.empty or has.empty:
        return df
    parts = [has]
    for problem, rows in none.groupby("problem"):
        depths = np.unique(has.loc[has["problem"] == problem, "depth"])
        if len(depths) == 0:
            depths = np.unique(has["depth"])
        parts.append(rows.drop(columns="depth").merge(pd.DataFrame({"depth": depths}), how="cross"))
    return pd.concat(parts, ignore_index=True)


def _prepare(df: pd.DataFrame) -> pd.DataFrame:
    d = with_depthless_rows_spread(df.copy())
    d["depth"] = d["depth"].astype(float)
    d["ρ"] = d["lipschitz"].map(lambda r: f"{r:g}")
    if "restarts" in d.columns:
        varied = d.groupby("estimator")["restarts"].transform("nunique") > 1
        d.loc[varied, "estimator"] = d.loc[varied].apply(
            lambda r: f"{r['estimator']} ({int(r['restarts'])} restarts)", axis=1
        )
    d["rel_error"] = d["rel_error"].astype(float).clip(lower=ERROR_FLOOR)
    d["memory_KiB"] = d["memory_bytes"].astype(float) / 1024
    return d


def _facet(d: pd.DataFrame, y: str, ylabel: str, title: str, logy: bool = True) -> sns.FacetGrid:
    order = sorted(d["estimator"].unique())
    g = sns.relplot(
        data=d,
        x="depth",
        y=y,
        hue="estimator",
        hue_order=order,
        style="ρ",
        col="problem",
        kind="line",
        markers=True,
        dashes=True,
        col_wrap=min(3, d["problem"].nunique()),
        height=3.4,
        aspect=1.15,
        facet_kws={"sharey": False},
        errorbar=None,
    )
    for ax in g.axes.flat:
        ax.set_xscale("log", base=2)
        if logy:
            ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
    g.set_axis_labels("truncation depth K (log scale)", ylabel)
    g.set_titles("{col_name}")
    g.figure.suptitle(title, y=1.02)
    return g


def plot_sweep(df: pd.DataFrame, out: str | Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Relative error, runtime, saved-activation memory and operator applications against
    depth: a panel per problem,
    colour = estimator, line style = rho. Returns the files written."""
    require_columns(df, SWEEP_COLUMNS)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create --out {str(out)!r}: {exc.strerror}") from None
    d = _prepare(df)
    written: list[Path] = []
    specs = [
        ("error_vs_depth", "rel_error", "relative error ‖g − g_DEQ‖/‖g_DEQ‖", "Gradient error against depth", True),
        ("time_vs_depth", "time_s", "time per gradient (s)", "Runtime against depth", True),
        ("memory_vs_depth", "memory_KiB", "saved activations (KiB)", "Autograd memory against depth", True),
        ("evals_vs_depth", "operator_evals", "applications of T per gradient", "Operator work against depth", True),
    ]
    for name, y, ylabel, title, logy in specs:
        sub = d[d[y].notna()] if y in d.columns else d.iloc[:0]
        if sub.empty:
            continue
        g = _facet(sub, y, ylabel, title, logy)
        written += save(g.figure, out / name, formats)
    return written


def save(fig: plt.Figure, stem: Path, formats: Sequence[str]) -> list[Path]:
    paths = []
    for fmt in formats:
        path = stem.with_suffix("." + fmt)
        fig.savefig(path, dpi=130, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths
