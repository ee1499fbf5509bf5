"""Plots for the multi-output models (Cool-MTGP and the baselines)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .longitudinal import _plt, subplots_grid


def plot_covariances(model=None, C=None, Sigma=None, output_names: Optional[Sequence[str]] = None,
                     correlation: bool = False, cmap: str = "RdBu_r"):
    """Heatmaps of the output covariance C and the noise covariance Sigma
    (Cool-MTGP eq. 4: ``vec(Y) ~ N(0, C (x) K + Sigma (x) I)``) of a fitted
    multi-output model (``output_covariance_``, ``noise_covariance_``), or of
    the matrices given. ``correlation=True`` shows correlations instead.
    Colour scales are symmetric about 0. Returns the figure (two image
    axes, each with its colour bar)."""
    if model is not None:
        C, Sigma = model.output_covariance_, model.noise_covariance_
        output_names = output_names or getattr(model, "output_names_", None)
    mats = [np.asarray(C, dtype=float), np.asarray(Sigma, dtype=float)]
    if correlation:
        mats = [M / np.sqrt(np.outer(np.diag(M), np.diag(M))) for M in mats]
    T = mats[0].shape[0]
    names = list(output_names) if output_names is not None else [str(t) for t in range(T)]
    fig, axes = _plt().subplots(1, 2, figsize=(4.4 * 2 + 1.0, 4.0))
    for ax, M, title in zip(axes, mats, ("C (outputs)", "Sigma (noise)")):
        vmax = float(np.max(np.abs(M))) or 1.0
        im = ax.imshow(M, cmap=cmap, vmin=-vmax, vmax=vmax)
        ax.set_title(title + (", correlation" if correlation else ""))
        ax.set_xticks(range(T))
        ax.set_yticks(range(T))
        if T <= 20:
            ax.set_xticklabels(names, rotation=90, fontsize=7)
            ax.set_yticklabels(names, fontsize=7)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def plot_multioutput_prediction(prediction, x, Y=None, X_train=None, level: float = 0.95, xlabel=None,
                                ncols: int = 2):
    """A :class:`mtgp.MultiOutputPrediction` against one input ``x`` (n,):
    one panel per output with its mean and central band; ``Y`` (and
    ``X_train``'s first column, its x) adds observed values. Returns the
    figure."""
    x = np.asarray(x, dtype=float).ravel()
    order = np.argsort(x)
    lo, hi = prediction.interval(level)
    T = prediction.mean.shape[1]
    names = prediction.output_names or [f"output {t}" for t in range(T)]
    fig, axes = subplots_grid(T, ncols)
    for t, ax in enumerate(axes):
        ax.fill_between(x[order], lo[order, t], hi[order, t], color="C0", alpha=0.2, lw=0,
                        label=f"{level:.0%} band")
        ax.plot(x[order], prediction.mean[order, t], color="C0", lw=1.6, label="prediction")
        if Y is not None:
            xt = np.asarray(X_train, dtype=float)
            xt = xt if xt.ndim == 1 else xt[:, 0]
            ax.plot(xt, np.asarray(Y, dtype=float)[:, t], "ko", ms=3, label="observed")
        ax.set_title(names[t])
        if xlabel:
            ax.set_xlabel(xlabel)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
