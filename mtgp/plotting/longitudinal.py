"""Plots for longitudinal models (Magma, MagmaClust, GP): data, predictions,
clusters, the prediction GIF and hyper-parameters across individuals."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _new_axes(ax, figsize=(6.4, 4.0)):
    """(figure, axes): ``ax``'s figure, or a new figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = _plt().subplots(figsize=figsize)
    return fig, ax


def subplots_grid(n: int, ncols: int = 2, panel=(5.2, 3.6)):
    """A figure with ``n`` panels on a grid of ``ncols`` columns: returns
    (figure, list of the n axes); unused grid cells are hidden."""
    n = max(int(n), 1)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = _plt().subplots(nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def _input_column(df, input_column, default=None):
    if input_column is not None:
        return input_column
    if default is not None and default in df.columns:
        return default
    if "Input" in df.columns:
        return "Input"
    cols = [c for c in df.columns if str(c).startswith("Input_")]
    if cols:
        return sorted(cols, key=lambda c: (len(str(c)), str(c)))[0]
    raise ValueError(f"no input column among {list(df.columns)}: pass input_column=")


def _points(data, input_column=None, output_column="Output", default=None):
    """(x, y) of one individual's observations: a DataFrame or an (X, y) pair."""
    if data is None:
        return None
    if hasattr(data, "columns"):
        col = _input_column(data, input_column, default)
        return np.asarray(data[col], dtype=float), np.asarray(data[output_column], dtype=float)
    X, y = data
    X = np.asarray(X, dtype=float)
    return (X if X.ndim == 1 else X[:, 0]), np.asarray(y, dtype=float).ravel()


def _first_input(prediction):
    cols = getattr(prediction, "input_columns", None)
    return cols[0] if cols else None


def _band(ax, prediction, color="C0", label="prediction", level=0.95, alpha=0.2):
    """Mean curve and central band of a 1-D prediction (``Prediction`` or
    ``MixtureOfGaussians``) on ``ax``, sorted by input."""
    x = prediction.inputs[:, 0]
    order = np.argsort(x)
    lo, hi = prediction.interval(level)
    ax.fill_between(x[order], lo[order], hi[order], color=color, alpha=alpha, lw=0,
                    label=f"{level:.0%} band")
    ax.plot(x[order], prediction.mean[order], color=color, lw=1.8, label=label)
    return ax


def _labels(ax, xlabel, ylabel, title=None):
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)


def plot_data(data, ax=None, id_column: str = "ID", input_column: Optional[str] = None,
              output_column: str = "Output", max_individuals: Optional[int] = 50, color=None,
              alpha: float = 0.6, xlabel=None, ylabel=None, title=None, seed: int = 0):
    """The curves of many individuals: one line with markers per individual
    (long DataFrame: ``id_column``, the input column, ``output_column``).

    At most ``max_individuals`` are drawn (a random subset, ``seed``), so a
    large cohort stays readable; ``color`` (one colour for all) or None (the
    colour cycle). Returns the figure (one ``Line2D`` per individual drawn).
    """
    fig, ax = _new_axes(ax)
    col = _input_column(data, input_column)
    ids = list(dict.fromkeys(data[id_column].tolist()))
    if max_individuals is not None and len(ids) > max_individuals:
        keep = np.random.default_rng(seed).choice(len(ids), size=int(max_individuals), replace=False)
        ids = [ids[k] for k in sorted(keep)]
    groups = dict(tuple(data.groupby(id_column, sort=False)))
    for i in ids:
        g = groups[i].sort_values(col)
        ax.plot(g[col].to_numpy(float), g[output_column].to_numpy(float), "-o", ms=2.5, lw=0.8,
                alpha=alpha, color=color)
    _labels(ax, xlabel or col, ylabel or output_column,
            title if title is not None else f"{len(ids)} of {len(groups)} individuals")
    return fig


def plot_prediction(prediction, data=None, mean_process=None, ax=None, level: float = 0.95,
                    color="C0", label: Optional[str] = None, input_column: Optional[str] = None,
                    xlabel=None, ylabel=None, title=None):
    """A prediction of one individual: its mean (line), its central band of
    probability ``level`` (shaded), the mean process (``mean_process``, e.g.
    ``model.hyperposterior(inputs)``: dashed grey line; a list, e.g.
    MagmaClust's, one dashed line per cluster k in colour ``C<k+1>``) and the individual's
    observed points (``data``: DataFrame or (X, y); black dots).

    ``prediction``: a :class:`mtgp.Prediction` or a
    :class:`~mtgp.distributions.MixtureOfGaussians` (band: its exact
    quantiles). Returns the figure.
    """
    fig, ax = _new_axes(ax)
    if mean_process is not None:
        many = isinstance(mean_process, (list, tuple))
        for k, mp in enumerate(mean_process if many else [mean_process]):
            x = mp.inputs[:, 0]
            order = np.argsort(x)
            ax.plot(x[order], mp.mean[order], "--", color=f"C{k + 1}" if many else "0.4", lw=1.2,
                    label=f"mean process {k}" if many else "mean process")
    _band(ax, prediction, color=color, label=label or "prediction", level=level)
    pts = _points(data, input_column, default=_first_input(prediction))
    if pts is not None:
        ax.plot(pts[0], pts[1], "o", color="k", ms=4, label="observed")
    _labels(ax, xlabel or (prediction.input_columns[0] if getattr(prediction, "input_columns", None) else None),
            ylabel, title)
    ax.legend(fontsize=7, loc="best")
    return fig


def plot_forecasts(items, mean_process=None, xlabel="Input", ylabel="Output", ncols=2):
    """One panel per individual: ``items`` is a list of (id, observed
    DataFrame, held-out DataFrame, Magma prediction, GP prediction or None);
    the mean process (dashed) in every panel. Returns the figure."""
    fig, axes = subplots_grid(len(items), ncols)
    for ax, (iid, obs, test, pm, pg) in zip(axes, items):
        if mean_process is not None:
            ax.plot(mean_process.inputs[:, 0], mean_process.mean, "--", color="0.4", lw=1.2,
                    label="mean process")
        _band(ax, pm, color="C0", label="Magma")
        if pg is not None:
            ax.plot(pg.inputs[:, 0], pg.mean, ":", color="C1", lw=1.5, label="GP")
        ax.plot(obs.Input, obs.Output, "ko", ms=4, label="observed")
        ax.plot(test.Input, test.Output, "o", color="C3", ms=4, label="held out")
        _labels(ax, xlabel, ylabel, f"ID {iid}")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def plot_mixture_prediction(prediction, data=None, level: float = 0.95, input_column=None,
                            xlabel=None, ylabel=None, title=None):
    """MagmaClust's prediction of a new individual: the mixture's mean and
    exact band (black / grey), each cluster's predictive mean in its colour
    ``C<k>`` (line width growing with its probability), the observed points,
    and a bar chart of the cluster probabilities P(cluster k | data).
    Returns the figure (two axes: the curves, the probabilities)."""
    plt = _plt()
    fig, (ax, axp) = plt.subplots(1, 2, figsize=(8.4, 4.0), gridspec_kw={"width_ratios": [4, 1]})
    x = prediction.inputs[:, 0]
    order = np.argsort(x)
    probs = np.asarray(prediction.cluster_probabilities)
    for k, comp in enumerate(prediction.components):
        ax.plot(x[order], comp.mean[order], "--", color=f"C{k}", lw=0.8 + 2.0 * probs[k],
                label=f"cluster {k} (p = {probs[k]:.2f})")
    _band(ax, prediction, color="k", label="mixture", level=level, alpha=0.15)
    pts = _points(data, input_column, default=_first_input(prediction))
    if pts is not None:
        ax.plot(pts[0], pts[1], "o", color="k", ms=4, label="observed")
    _labels(ax, xlabel or prediction.input_columns[0], ylabel, title)
    ax.legend(fontsize=7, loc="best")
    axp.bar(np.arange(len(probs)), probs, color=[f"C{k}" for k in range(len(probs))])
    axp.set_xticks(np.arange(len(probs)))
    axp.set_ylim(0, 1)
    axp.set_xlabel("cluster")
    axp.set_title("P(cluster | data)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_clusters(model, inputs=None, level: float = 0.95, max_individuals: Optional[int] = 200,
                  xlabel=None, ylabel=None, title=None, seed: int = 0):
    """A fitted :class:`mtgp.MagmaClust`: the training curves coloured by
    their most probable cluster (colour ``C<k>``, thin), and each cluster's
    mean process (hyper-posterior q(mu_k): thick line and band, same colour).

    ``inputs``: where to draw the mean processes (default 200 points over
    the training range, 1-D inputs). Returns the figure.
    """
    fig, ax = _new_axes(None, figsize=(7.0, 4.4))
    inds = model.inds_
    clusters = model.clusters_.to_numpy()
    idx = np.arange(inds.n_individuals)
    if max_individuals is not None and len(idx) > max_individuals:
        idx = np.sort(np.random.default_rng(seed).choice(len(idx), size=int(max_individuals), replace=False))
    for m in idx:
        x, y = inds.inputs[m][:, 0], inds.outputs[m]
        o = np.argsort(x)
        ax.plot(x[o], y[o], "-", color=f"C{clusters[m]}", lw=0.7, alpha=0.45)
    if inputs is None:
        lo, hi = float(model.grid_[:, 0].min()), float(model.grid_[:, 0].max())
        inputs = np.linspace(lo, hi, 200)
    weights = np.asarray(model.mixture_weights_)
    for k, post in enumerate(model.hyperposterior(inputs)):
        _band(ax, post, color=f"C{k}", label=f"cluster {k} mean (pi = {weights[k]:.2f})", level=level,
              alpha=0.25)
    col = model.input_columns_[0]
    _labels(ax, xlabel or col, ylabel or "Output",
            title if title is not None else f"MagmaClust, K = {len(weights)}")
    handles = [h for h in ax.get_legend_handles_labels()[0]]
    labels = ax.get_legend_handles_labels()[1]
    keep = [j for j, lab in enumerate(labels) if lab.startswith("cluster")]
    ax.legend([handles[j] for j in keep], [labels[j] for j in keep], fontsize=7, loc="best")
    return fig


def prediction_gif(model, data, inputs, path=None, level: float = 0.95, fps: float = 1.5,
                   input_column=None, xlabel=None, ylabel=None, mean_process: bool = True):
    """An animated prediction (MagmaClustR's ``pred_gif``): frame 0 is the
    prediction with no point of the individual (the population's view), frame
    k the prediction from its first k points (sorted by input), up to all n:
    n + 1 frames.

    ``model``: a fitted :class:`mtgp.Magma` or :class:`mtgp.MagmaClust` (or
    any model with ``predict(new_data, inputs=)``); ``data``: the
    individual's points (DataFrame with the input column and ``Output``);
    ``inputs``: where to predict. Written to ``path`` (a ``.gif``, through
    Pillow) when given. Returns the figure; ``fig.animation`` holds the
    :class:`matplotlib.animation.FuncAnimation`.
    """
    from matplotlib.animation import FuncAnimation, PillowWriter

    col = _input_column(data, input_column, (getattr(model, "input_columns_", None) or [None])[0])
    obs = data.sort_values(col).reset_index(drop=True)
    preds = [model.predict(None if k == 0 else obs.iloc[:k], inputs=inputs) for k in range(len(obs) + 1)]
    lows, highs = zip(*(p.interval(level) for p in preds))
    x = preds[0].inputs[:, 0]
    order = np.argsort(x)
    fig, ax = _new_axes(None)
    if mean_process and hasattr(model, "hyperposterior"):
        hp = model.hyperposterior(inputs)
        for k, post in enumerate(hp if isinstance(hp, list) else [hp]):
            ax.plot(post.inputs[order, 0], post.mean[order], "--", color="0.4" if not isinstance(hp, list)
                    else f"C{k}", lw=1.0, label="mean process" if k == 0 else None)
    band = ax.fill_between(x[order], lows[0][order], highs[0][order], color="C0", alpha=0.2, lw=0)
    (line,) = ax.plot(x[order], preds[0].mean[order], color="C0", lw=1.8, label="prediction")
    (seen,) = ax.plot([], [], "o", color="k", ms=4, label="observed")
    (todo,) = ax.plot(obs[col], obs["Output"], "o", mfc="none", color="0.6", ms=4, label="to come")
    ymin = min(float(np.min(lows)), float(obs["Output"].min()))
    ymax = max(float(np.max(highs)), float(obs["Output"].max()))
    pad = 0.05 * (ymax - ymin or 1.0)
    ax.set_ylim(ymin - pad, ymax + pad)
    _labels(ax, xlabel or col, ylabel or "Output")
    ax.legend(fontsize=7, loc="upper left")
    state = {"band": band}

    def draw(k):
        state["band"].remove()
        state["band"] = ax.fill_between(x[order], lows[k][order], highs[k][order], color="C0", alpha=0.2, lw=0)
        line.set_ydata(preds[k].mean[order])
        seen.set_data(obs[col].to_numpy()[:k], obs["Output"].to_numpy()[:k])
        todo.set_data(obs[col].to_numpy()[k:], obs["Output"].to_numpy()[k:])
        ax.set_title(f"prediction from {k} of {len(obs)} points")
        return line, seen, todo, state["band"]

    anim = FuncAnimation(fig, draw, frames=len(preds), interval=1000.0 / fps, blit=False)
    fig.animation = anim
    fig.predictions = preds
    if path is not None:
        anim.save(path, writer=PillowWriter(fps=fps))
    return fig


def plot_hyperparameters(model_or_table, columns: Optional[Sequence[str]] = None, bins: int = 20,
                         log: bool = True):
    """Distributions of the fitted hyper-parameters across individuals: one
    histogram per hyper-parameter (``model.hyperparameters_``, one row per
    individual; Magma with Different HP, MagmaClust with
    ``shared_individual_hp=False``; with Common HP every individual has the
    same values and each histogram is one bar). ``log``: on the log10 scale.
    Returns the figure."""
    table = getattr(model_or_table, "hyperparameters_", model_or_table)
    cols = list(columns) if columns is not None else [c for c in table.columns if c != "ID"]
    fig, axes = subplots_grid(len(cols), ncols=min(3, len(cols)), panel=(3.6, 2.8))
    for ax, c in zip(axes, cols):
        v = table[c].to_numpy(float)
        if log:
            v = np.log10(v)
        ax.hist(v, bins=bins, color="C0", alpha=0.8)
        ax.set_xlabel(f"log10 {c}" if log else c)
        ax.set_ylabel("individuals")
    fig.tight_layout()
    return fig
