"""Plots people want to look at: forecasts with their bands and the mean
process (matplotlib, headless-safe)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_prediction(ax, prediction, color="C0", label="prediction", level=0.95):
    """Mean curve and central credible band of a 1-D Prediction on ``ax``."""
    x = prediction.inputs[:, 0]
    order = np.argsort(x)
    lo, hi = prediction.interval(level)
    ax.fill_between(x[order], lo[order], hi[order], color=color, alpha=0.2, lw=0,
                    label=f"{int(level * 100)}% band")
    ax.plot(x[order], prediction.mean[order], color=color, lw=1.8, label=label)
    return ax


def plot_forecasts(items, mean_process=None, xlabel="Input", ylabel="Output", ncols=2):
    """One panel per individual: ``items`` is a list of
    (id, observed DataFrame, held-out DataFrame, Magma Prediction, GP Prediction or None)."""
    n = len(items)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.6 * nrows), squeeze=False)
    for ax, (iid, obs, test, pm, pg) in zip(axes.ravel(), items):
        if mean_process is not None:
            x = mean_process.inputs[:, 0]
            ax.plot(x, mean_process.mean, "--", color="0.4", lw=1.2, label="mean process")
        plot_prediction(ax, pm, color="C0", label="Magma")
        if pg is not None:
            ax.plot(pg.inputs[:, 0], pg.mean, ":", color="C1", lw=1.5, label="GP")
        ax.plot(obs.Input, obs.Output, "ko", ms=4, label="observed")
        ax.plot(test.Input, test.Output, "o", color="C3", ms=4, label="held out")
        ax.set_title(f"ID {iid}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
