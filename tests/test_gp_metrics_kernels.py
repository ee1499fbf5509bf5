import numpy as np
import pytest

import mtgp
from mtgp.kernels import SE, Matern32, Matern52, RQ, Periodic, Linear, Constant, kernel_from_dict


def test_kernel_formulas():
    x = np.array([[0.0], [1.5]])
    r = 1.5
    assert float(SE(2.0, 0.5)(x)[0, 1]) == pytest.approx(2.0 * np.exp(-r**2 / (2 * 0.25)))
    s3 = np.sqrt(3) * r / 2.0
    assert float(Matern32(1.5, 2.0)(x)[0, 1]) == pytest.approx(1.5 * (1 + s3) * np.exp(-s3))
    s5 = np.sqrt(5) * r / 2.0
    assert float(Matern52(1.0, 2.0)(x)[0, 1]) == pytest.approx((1 + s5 + s5**2 / 3) * np.exp(-s5))
    assert float(RQ(1.0, 2.0, 0.5)(x)[0, 1]) == pytest.approx((1 + r**2 / (2 * 0.5 * 4)) ** -0.5)
    assert float(Periodic(1.0, 0.8, 3.0)(x)[0, 1]) == pytest.approx(np.exp(-2 * np.sin(np.pi * r / 3) ** 2 / 0.64))
    assert float(Linear(2.0)(x)[1, 1]) == pytest.approx(2.0 * r * r)
    k = SE(1.0, 1.0) * Periodic() + Constant(0.5)
    assert np.asarray(k(x)).shape == (2, 2)
    X2 = np.array([[0.0, 0.0], [1.0, 2.0]])
    ard = SE(1.0, [1.0, 2.0])
    assert float(ard(X2)[0, 1]) == pytest.approx(np.exp(-0.5 * (1.0 + 1.0)))
    # Euclidean distance in d > 1 for every stationary kernel (r = 5 / 2 here)
    X34 = np.array([[0.0, 0.0], [3.0, 4.0]])
    s3 = np.sqrt(3) * 2.5
    assert float(Matern32(1.0, 2.0)(X34)[0, 1]) == pytest.approx((1 + s3) * np.exp(-s3))
    assert float(RQ(1.0, 2.0, 0.5)(X34)[0, 1]) == pytest.approx((1 + 2.5**2 / (2 * 0.5)) ** -0.5)
    back = kernel_from_dict(k.to_dict())
    np.testing.assert_allclose(np.asarray(back(x)), np.asarray(k(x)))


def test_metrics_by_hand():
    y = np.array([0.0, 1.0, 2.0, 3.0])
    m = np.array([0.0, 1.0, 2.0, 5.0])
    assert mtgp.metrics.mse(y, m) == pytest.approx(1.0)
    # z(0.975) = 1.96: the last point (error 2, sd 1) is outside, others inside
    assert mtgp.metrics.cic95(y, m, np.ones(4)) == pytest.approx(75.0)
    assert mtgp.metrics.nlpd([0.0], [0.0], [1.0]) == pytest.approx(0.5 * np.log(2 * np.pi))
    with pytest.raises(ValueError):
        mtgp.metrics.mse([1.0, 2.0], [1.0])


def test_prediction_object():
    p = mtgp.Prediction(np.arange(3.0)[:, None], [0.0, 1.0, 2.0], np.diag([1.0, 4.0, 0.0]))
    lo, hi = p.interval(0.95)
    np.testing.assert_allclose(hi - p.mean, 1.959963984540054 * np.array([1.0, 2.0, 0.0]))
    f = p.to_frame()
    assert list(f.columns) == ["Input", "Mean", "Var", "Lower", "Upper"]
    assert p.sample(5, seed=0).shape == (5, 3)
    with pytest.raises(ValueError):
        p.interval(1.5)


def test_simulation_scheme():
    s = mtgp.simulate(n_individuals=5, n_points=10, common_grid=True, common_hp=True, seed=0)
    assert s.data.shape == (50, 3) and len(s.grid) == 200
    grids = s.data.groupby("ID").Input.apply(tuple)
    assert grids.nunique() == 1
    assert s.hyperparameters.variance.nunique() == 1
    u = mtgp.simulate(n_individuals=5, n_points=10, common_grid=False, common_hp=False, seed=0)
    assert u.data.groupby("ID").Input.apply(tuple).nunique() == 5
    assert u.hyperparameters.variance.nunique() == 5
    assert np.all((u.hyperparameters.noise >= 0) & (u.hyperparameters.noise <= 1))
    np.testing.assert_allclose(s.mean_at(s.grid[:3]), s.mean_process[:3])


def test_datasets_shipped():
    w = mtgp.datasets.load_weight()
    assert w.shape == (3629, 4) and w.ID.nunique() == 342
    X, Y = mtgp.datasets.load_mtr("slump")
    assert X.shape == (103, 7) and Y.shape == (103, 3)


def test_command_line_main_job(tmp_path, capsys):
    from mtgp.cli import main
    out = tmp_path / "plot.png"
    assert main(["--quick", "--plot", str(out), "--n-plot", "2"]) == 0
    text = capsys.readouterr().out
    assert "Magma" in text and "GP" in text and "CIC95" in text
    assert out.exists() and out.stat().st_size > 10_000


@pytest.mark.parametrize("make", [lambda: SE(1.3, 2.0), lambda: Matern32(0.7, [1.5, 2.0, 0.5, 3.0, 1.0, 1.2, 0.8, 2.5]),
                                  lambda: Matern52(1.1, 1.7), lambda: RQ(0.9, 2.5, 0.7)])
def test_matrix_product_distances_equal_pairwise_form(make):
    """From GRAM_MIN_DIM input dimensions on, stationary kernels use
    |a|^2 + |b|^2 - 2ab; values and gradients must match tinygp's pairwise
    form (the path used below that dimension), including at repeated points."""
    import jax
    import jax.numpy as jnp
    from mtgp import kernels as K

    k = make()
    rng = np.random.default_rng(3)
    A = jnp.asarray(10.0 + rng.normal(size=(30, 8)))  # offset: centring must remove it
    A = A.at[7].set(A[3])  # a repeated point (sqrt at 0 for the Matérn kernels)
    B = jnp.asarray(10.0 + rng.normal(size=(11, 8)))
    theta = k.init_params()

    def pairwise(th, X1, X2):
        s = jnp.exp(th["lengthscale"])
        return jnp.exp(th["variance"]) * k._correlation(th)(X1 / s, X2 / s)

    assert K.GRAM_MIN_DIM <= 8
    for X1, X2 in ((A, A), (A, B)):
        np.testing.assert_allclose(np.asarray(k.evaluate(theta, X1, X2)), np.asarray(pairwise(theta, X1, X2)),
                                   rtol=0, atol=1e-12)
        g_new = jax.grad(lambda th: jnp.sum(jnp.sin(k.evaluate(th, X1, X2))))(theta)
        g_ref = jax.grad(lambda th: jnp.sum(jnp.sin(pairwise(th, X1, X2))))(theta)
        for a, b in zip(jax.tree_util.tree_leaves(g_new), jax.tree_util.tree_leaves(g_ref)):
            assert np.all(np.isfinite(np.asarray(a)))
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-10)
    Ks = np.asarray(k.evaluate(theta, A, A))
    assert np.array_equal(Ks, Ks.T)
    np.testing.assert_allclose(np.diag(Ks), getattr(k, "variance"), rtol=1e-15)
