"""mtgp.plotting: every function returns its figure, and the figure holds
what it says (lines, bands, colours, data), checked on the artists."""

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

import mtgp  # noqa: E402
from mtgp import plotting  # noqa: E402
from mtgp.kernels import SE  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="module")
def weight():
    w = mtgp.datasets.load_weight().drop(columns=["Sex"])
    ids = w.ID.unique()
    return w[w.ID.isin(ids[:14])], w[w.ID == ids[14]]


@pytest.fixture(scope="module")
def magma(weight):
    train, _ = weight
    return mtgp.Magma(mean_kernel=SE(30.0, 24.0), individual_kernel=SE(8.0, 24.0), noise=1.0,
                      prior_mean=10.0, max_iter=2, verbose=False).fit(train)


@pytest.fixture(scope="module")
def clust(weight):
    train, _ = weight
    return mtgp.MagmaClust(n_clusters=2, mean_kernel=SE(30.0, 24.0), individual_kernel=SE(8.0, 24.0),
                           noise=1.0, prior_mean=10.0, max_iter=2, verbose=False).fit(train)


def _bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_plot_data_draws_one_line_per_individual(weight):
    train, _ = weight
    fig = plotting.plot_data(train)
    ax = fig.axes[0]
    assert len(ax.lines) == train.ID.nunique() == 14
    first = train[train.ID == train.ID.iloc[0]].sort_values("Input")
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), first.Input)
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), first.Output)
    fig = plotting.plot_data(train, max_individuals=5, color="red")
    assert len(fig.axes[0].lines) == 5
    assert all(to_rgba(l.get_color()) == to_rgba("red") for l in fig.axes[0].lines)


def test_plot_prediction_has_band_mean_process_and_points(magma, weight):
    _, child = weight
    obs = child[child.Input <= 24]
    grid = np.linspace(0, 72, 50)
    pred = magma.predict(obs, inputs=grid)
    fig = plotting.plot_prediction(pred, data=obs, mean_process=magma.hyperposterior(grid), ylabel="kg")
    ax = fig.axes[0]
    labels = [l.get_label() for l in ax.lines]
    assert labels == ["mean process", "prediction", "observed"]
    mean_line = ax.lines[1]
    np.testing.assert_allclose(mean_line.get_ydata(), pred.mean)
    np.testing.assert_array_equal(ax.lines[2].get_xdata(), obs.Input)
    (band,) = _bands(ax)
    verts = band.get_paths()[0].vertices
    lo, hi = pred.interval(0.95)
    assert verts[:, 1].min() == pytest.approx(lo.min()) and verts[:, 1].max() == pytest.approx(hi.max())
    assert ax.get_ylabel() == "kg" and ax.get_xlabel() == "Input"


def test_mixture_prediction_colours_and_probabilities(clust, weight):
    _, child = weight
    pred = clust.predict(child[child.Input <= 24], inputs=np.linspace(0, 72, 40))
    fig = plotting.plot_mixture_prediction(pred, data=child[child.Input <= 24])
    ax, axp = fig.axes
    comp = [l for l in ax.lines if l.get_label().startswith("cluster")]
    assert [to_rgba(l.get_color()) for l in comp] == [to_rgba("C0"), to_rgba("C1")]
    for k, l in enumerate(comp):
        np.testing.assert_allclose(l.get_ydata(), pred.components[k].mean)
    heights = [p.get_height() for p in axp.patches]
    np.testing.assert_allclose(heights, pred.cluster_probabilities)
    assert len(_bands(ax)) == 1


def test_plot_clusters_colours_curves_by_cluster(clust):
    fig = plotting.plot_clusters(clust, inputs=np.linspace(0, 72, 30))
    ax = fig.axes[0]
    clusters = clust.clusters_.to_numpy()
    curves = ax.lines[: len(clusters)]
    assert [to_rgba(l.get_color(), alpha=1) for l in curves] == [to_rgba(f"C{k}") for k in clusters]
    means = ax.lines[len(clusters):]
    assert len(means) == 2 and len(_bands(ax)) == 2
    hp = clust.hyperposterior(np.linspace(0, 72, 30))
    for k in range(2):
        np.testing.assert_allclose(means[k].get_ydata(), hp[k].mean)
        assert to_rgba(means[k].get_color()) == to_rgba(f"C{k}")


def test_prediction_gif_has_one_frame_per_point_plus_one(magma, weight, tmp_path):
    from PIL import Image

    _, child = weight
    obs = child[child.Input <= 12]
    grid = np.linspace(0, 72, 30)
    fig = plotting.prediction_gif(magma, obs, grid, tmp_path / "p.gif")
    with Image.open(tmp_path / "p.gif") as im:
        assert im.n_frames == len(obs) + 1
        frames = []
        for k in (0, im.n_frames - 1):
            im.seek(k)
            frames.append(np.asarray(im.convert("L"), dtype=float))
    assert np.abs(frames[0] - frames[1]).mean() > 0.5  # the picture changes
    np.testing.assert_allclose(fig.predictions[0].mean, magma.predict(inputs=grid).mean)
    np.testing.assert_allclose(fig.predictions[-1].mean, magma.predict(obs, inputs=grid).mean)


def test_hyperparameter_histograms(magma):
    import pandas as pd

    fig = plotting.plot_hyperparameters(magma)  # Common HP: one bar each
    cols = [c for c in magma.hyperparameters_.columns if c != "ID"]
    assert len(fig.axes) >= len(cols)
    for ax, c in zip(fig.axes, cols):
        assert sum(p.get_height() for p in ax.patches) == len(magma.ids_)
        assert ax.get_xlabel() == f"log10 {c}"
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"ID": range(50), "lengthscale": np.exp(rng.normal(size=50)),
                          "noise": np.exp(rng.normal(size=50))})  # a Different HP table
    fig = plotting.plot_hyperparameters(table, bins=10, log=False)
    counts = [p.get_height() for p in fig.axes[0].patches]
    np.testing.assert_array_equal(counts, np.histogram(table.lengthscale, bins=10)[0])


def test_covariance_heatmaps():
    C = np.array([[2.0, 0.5, -0.3], [0.5, 1.0, 0.2], [-0.3, 0.2, 1.5]])
    S = np.diag([0.1, 0.2, 0.3])
    fig = plotting.plot_covariances(C=C, Sigma=S, output_names=["a", "b", "c"])
    imgs = [ax.images[0] for ax in fig.axes if ax.images]
    np.testing.assert_array_equal(imgs[0].get_array(), C)
    np.testing.assert_array_equal(imgs[1].get_array(), S)
    assert imgs[0].get_clim() == (-2.0, 2.0)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b", "c"]
    fig = plotting.plot_covariances(C=C, Sigma=S, correlation=True)
    np.testing.assert_allclose(np.diag(fig.axes[0].images[0].get_array()), 1.0)


def test_multioutput_prediction_panels():
    n, T = 20, 3
    x = np.linspace(0, 1, n)
    mean = np.stack([np.sin(x * (t + 1)) for t in range(T)], axis=1)
    cov = np.tile(np.eye(T) * 0.01, (n, 1, 1))
    pred = mtgp.MultiOutputPrediction(mean, cov, output_names=["u", "v", "w"])
    fig = plotting.plot_multioutput_prediction(pred, x, Y=mean, X_train=x)
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.lines]
    assert [ax.get_title() for ax in axes] == ["u", "v", "w"]
    np.testing.assert_allclose(axes[2].lines[0].get_ydata(), mean[:, 2])


def test_import_does_not_import_matplotlib():
    import subprocess
    import sys

    code = "import mtgp.plotting, sys; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
