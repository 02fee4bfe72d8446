"""What the reports of training runs share (results/imaging/report.py, results/families/report.py):
the settings in a report's order with each estimator's look, tables sorted in that order, and
the cost and seconds axes of the learning curves.

A report imports it from this folder:

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from _reports import cost_axes, sort_settings, styled
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from jfbbench import plots

#: Where a setting that its report's order does not name is sorted in a table (after all the others).
UNLISTED = 99


def in_order(labels: Iterable[str], order: Sequence[str]) -> list[str]:
    """The distinct ``labels`` in the report's ``order``, then those it does not name, by name."""
    present = set(labels)
    return [o for o in order if o in present] + sorted(present - set(order))


def styled(labels: Iterable[str], order: Sequence[str]) -> tuple[list[str], dict]:
    """The settings in the legend's order (:func:`in_order`) and their look: each estimator's
    colour, dash and marker of every figure of the project (variants of one estimator in
    shades, in that order: :func:`jfbbench.plots.estimator_styles`)."""
    ordered = in_order(labels, order)
    return ordered, plots.estimator_styles(ordered, keep_order=True)


def sort_settings(table: pd.DataFrame, order: Sequence[str], by: Sequence[str]) -> pd.DataFrame:
    """``table`` sorted by the columns ``by``, then by the place of its ``setting`` in ``order``
    (the settings it does not name last)."""
    place = [order.index(s) if s in order else UNLISTED for s in table["setting"]]
    return table.assign(order=place).sort_values([*by, "order"]).drop(columns="order")


def cost_axes(axes: np.ndarray, seconds: str) -> None:
    """The learning curves' cost columns of panels, on log x axes: the cumulative T + VJP in
    ``axes[:, 1]`` and the training seconds in ``axes[:, 2]``, labelled ``seconds``."""
    for ax in axes[:, 1]:
        ax.set_xscale("log")
        ax.set_xlabel("cumulative T + VJP (+ JVP) of the gradients")
    for ax in axes[:, 2]:
        ax.set_xscale("log")
        ax.set_xlabel(seconds)
