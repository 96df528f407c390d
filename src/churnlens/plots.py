"""The train stage's figures of the test slice and the explain stage's SHAP beeswarm
(matplotlib `Figure`s, no pyplot state); the stages save them as PNG next to their CSV tables
(`churnlens.evaluation.curve_tables`, `reports/plots/importance.csv`)."""

from __future__ import annotations

from typing import Any

import numpy as np
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


SHAP_LOW, SHAP_HIGH = "#008bfb", "#ff0051"   # shap's blue-red for low/high feature values


def beeswarm_figure(contributions: pd.DataFrame, matrix: pd.DataFrame, title: str,
                    max_display: int = 15, seed: int = 0) -> Any:
    """A SHAP beeswarm (what `shap.summary_plot` draws) with matplotlib alone: one row per
    feature, the `max_display` largest by mean |SHAP| at the top; a dot per customer at its
    SHAP value, coloured by the feature's value (5th-95th percentile range, missing = grey),
    dots of equal value stacked apart. Drawn here so the explain stage need not import shap
    (and numba under it) for a picture."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, Normalize
    from matplotlib.figure import Figure

    values = contributions.to_numpy(dtype="float64")
    data = matrix[list(contributions.columns)].to_numpy(dtype="float64")
    order = np.argsort(np.abs(values).mean(axis=0), kind="stable")[::-1][:max_display][::-1]
    cmap = LinearSegmentedColormap.from_list("shap", [SHAP_LOW, "#7c3bb8", SHAP_HIGH])
    fig = Figure(figsize=(8, 6))   # shap.summary_plot(plot_size=(8, 6)), as before
    ax = fig.subplots()
    ax.axvline(0, color="#999999", zorder=-1)
    rng = np.random.default_rng(seed)
    for pos, col in enumerate(order):
        ax.axhline(pos, color="#cccccc", lw=0.5, dashes=(1, 5), zorder=-1)
        shap, feature = values[:, col], data[:, col]
        y = pos + _swarm_offsets(shap, rng)
        known = ~np.isnan(feature)
        if (~known).any():
            ax.scatter(shap[~known], y[~known], color="#777777", s=16, linewidth=0, alpha=1)
        if known.any():
            low, high = np.nanpercentile(feature, [5, 95])
            if high <= low:
                low, high = float(np.nanmin(feature)), float(np.nanmax(feature))
            ax.scatter(shap[known], y[known], c=np.clip(feature[known], low, high), cmap=cmap,
                       vmin=low, vmax=high if high > low else low + 1, s=16, linewidth=0,
                       alpha=1, rasterized=len(shap) > 500)
    ax.set_yticks(range(len(order)), [str(contributions.columns[c]) for c in order],
                  fontsize=11)
    ax.set_ylim(-1, len(order))
    ax.set_xlabel("SHAP value (impact on model output)")
    for side in ("right", "top", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=ax, ticks=[0, 1], aspect=80)
    bar.set_ticklabels(["Low", "High"])
    bar.set_label("Feature value", labelpad=0)
    bar.outline.set_visible(False)
    ax.set_title(title)
    return fig


def _swarm_offsets(shap: np.ndarray, rng: np.random.Generator, bins: int = 100,
                   height: float = 0.4) -> np.ndarray:
    """Vertical offsets that stack dots of (nearly) equal SHAP value apart, alternately above
    and below the row (shap's layout)."""
    span = float(shap.max() - shap.min()) if len(shap) else 0.0
    quantised = np.round(bins * (shap - shap.min()) / (span + 1e-8)) if len(shap) else shap
    offsets = np.zeros(len(shap))
    layer, last = 0, None
    for i in np.argsort(quantised + rng.normal(size=len(shap)) * 1e-6, kind="stable"):
        if quantised[i] != last:
            layer = 0
        offsets[i] = np.ceil(layer / 2) * ((layer % 2) * 2 - 1)
        layer, last = layer + 1, quantised[i]
    top = np.max(np.abs(offsets)) + 1 if len(shap) else 1
    return offsets * (0.9 * height / top)
