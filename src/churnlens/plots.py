"""The train stage's figures of the test slice (matplotlib `Figure`s, no pyplot state); the
stage saves them as PNG next to their CSV tables (`churnlens.evaluation.curve_tables`)."""

from __future__ import annotations

from typing import Any

import pandas as pd


def calibration_figure(table: pd.DataFrame) -> Any:
    """Observed churn rate by mean predicted probability, one line per model."""
    return _figure(_draw_calibration, table)


def gain_figure(table: pd.DataFrame) -> Any:
    """Cumulative gain by decile contacted, one line per model (from the lift table)."""
    return _figure(_draw_gain, table)


def _figure(draw, table: pd.DataFrame) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.5))
    draw(fig.subplots(), table)
    fig.tight_layout()
    return fig


def _draw_calibration(ax, table: pd.DataFrame) -> None:
    top = float(max(table["mean_predicted"].max(), table["observed_rate"].max(), 0.05))
    ax.plot([0, top], [0, top], color="grey", linestyle=":", label="perfect")
    for name, part in table.groupby("model", sort=False):
        ax.plot(part["mean_predicted"], part["observed_rate"], marker="o", label=name)
    ax.set(xlabel="mean predicted churn probability", ylabel="observed churn rate",
           title="Calibration on the test slice (10 equal-count bins)")
    ax.legend(fontsize=8)


def _draw_gain(ax, table: pd.DataFrame) -> None:
    ax.plot([0, 10], [0, 1], color="grey", linestyle=":", label="random")
    for name, part in table.groupby("model", sort=False):
        ax.plot([0, *part["decile"]], [0, *part["cumulative_gain"]], marker="o", label=name)
    ax.set(xlabel="top deciles contacted", ylabel="share of churners reached",
           title="Cumulative gain on the test slice")
    ax.legend(fontsize=8)
