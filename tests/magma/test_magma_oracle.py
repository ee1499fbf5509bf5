"""Oracle tests: with given hyper-parameters, Magma's likelihood,
hyper-posterior and predictions equal the exact Gaussian computations on the
dense joint model of all individuals (written out in conftest.DenseMagma)."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import mtgp
from mtgp.magma import numerics as core
from mtgp.kernels import SE, Linear, Matern52, Constant
from conftest import DenseMagma

RTOL = 1e-8


def uneven_data(seed=0, M=5, d=1, spacing=None):
    rng = np.random.default_rng(seed)
    data = {}
    for i in range(M):
        n = int(rng.integers(1, 7))  # includes single-point individuals
        if spacing is None:
            X = rng.uniform(0, 10, (n, d))
        else:
            X = np.sort(rng.choice(np.arange(400) * spacing, n, replace=False))[:, None]
        y = 3.0 + np.sin(X).sum(axis=1) + 0.3 * rng.standard_normal(n)
        data[f"ind{i}"] = (X, y)
    return data


def test_common_hp_matches_dense_joint_gaussian():
    data = uneven_data(0)
    k0, ki, noise = SE(4.0, 2.0), SE(1.5, 0.7), 0.2
    prior = lambda X: 0.5 * X[:, 0] + 1.0
    model = mtgp.Magma(k0, ki, noise=noise, prior_mean=prior).fit(data, optimize=False)
    ref = DenseMagma(k0, [ki] * 5, [noise] * 5, list(data.values()), prior)
    # exact marginal log-likelihood
    assert model.log_likelihood_ == pytest.approx(ref.loglik(), rel=RTOL)
    # hyper-posterior of mu_0 on inputs on and off the training grid
    X = np.concatenate([np.linspace(-1, 11, 7), model.grid_[:3, 0]])[:, None]
    hp = model.hyperposterior(X)
    m, C = ref.mean_process(X)
    np.testing.assert_allclose(hp.mean, m, rtol=RTOL, atol=1e-9)
    np.testing.assert_allclose(hp.cov, C, rtol=1e-7, atol=1e-9)
    # Type I prediction, noisy and latent
    rng = np.random.default_rng(1)
    Xo = rng.uniform(0, 10, (4, 1))
    yo = 3.0 + np.sin(Xo[:, 0])
    Xp = np.linspace(0, 12, 9)[:, None]
    for noisy in (True, False):
        pred = model.predict((Xo, yo), inputs=Xp, noise=noisy)
        m, C = ref.predict(ki, noise, Xo, yo, Xp, noise=noisy)
        np.testing.assert_allclose(pred.mean, m, rtol=RTOL, atol=1e-9)
        np.testing.assert_allclose(pred.cov, C, rtol=1e-7, atol=1e-9)
        assert pred.includes_noise is noisy
    # Type II prediction
    pred = model.predict(None, inputs=Xp)
    m, C = ref.predict(ki, noise, None, None, Xp)
    np.testing.assert_allclose(pred.mean, m, rtol=RTOL, atol=1e-9)
    np.testing.assert_allclose(pred.cov, C, rtol=1e-7, atol=1e-9)


def test_different_hp_posterior_matches_dense():
    """E step and likelihood with a different (theta_i, sigma_i^2) per individual."""
    data = uneven_data(3, M=4)
    k0, ki = SE(2.0, 1.5), SE()
    rng = np.random.default_rng(2)
    kernels = [SE(float(rng.uniform(0.5, 3)), float(rng.uniform(0.3, 2))) for _ in range(4)]
    noises = list(rng.uniform(0.05, 0.5, 4))
    inds = mtgp.data.to_individuals(data)
    grid, splits = mtgp.data.pooled_grid(inds)
    pad = mtgp.data.pad_individuals(inds, splits, len(grid))
    theta = {"kernel": jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[k.init_params() for k in kernels]),
             "log_noise": jnp.log(jnp.asarray(noises))}
    static = core.MagmaStatic(k0.static(), ki.static(), False)
    data_ = core.MagmaData.from_padded(pad, grid, np.zeros(len(grid)))
    post = core.e_step_jit(static, core.MagmaParams(k0.init_params(), theta), data_)
    ref = DenseMagma(k0, kernels, noises, list(data.values()), lambda X: np.zeros(len(X)))
    assert float(post.loglik) == pytest.approx(ref.loglik(), rel=RTOL)
    m, C = ref.mean_process(grid)
    np.testing.assert_allclose(post.mean, m, rtol=RTOL, atol=1e-9)
    np.testing.assert_allclose(post.cov, C, rtol=1e-7, atol=1e-9)


def test_dense_inputs_stay_exact_without_jitter():
    """Inputs spaced 0.001 apart with lengthscale 2: K0 on the pooled grid is
    numerically singular (Props. 1/4 invert it), yet the hyper-posterior and
    the likelihood stay exact and no jitter is needed."""
    data = uneven_data(5, M=6, spacing=0.001)
    k0, ki, noise = SE(10.0, 2.0), SE(1.0, 1.0), 0.1
    grid = np.unique(np.concatenate([X for X, _ in data.values()]))
    assert np.linalg.cond(np.asarray(k0(grid[:, None]))) > 1e14
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", mtgp.JitterWarning)
        model = mtgp.Magma(k0, ki, noise=noise).fit(data, optimize=False)
    ref = DenseMagma(k0, [ki] * 6, [noise] * 6, list(data.values()), lambda X: np.zeros(len(X)))
    assert model.log_likelihood_ == pytest.approx(ref.loglik(), rel=1e-9)
    X = np.linspace(0, 0.5, 11)[:, None]
    hp = model.hyperposterior(X)
    m, C = ref.mean_process(X)
    np.testing.assert_allclose(hp.mean, m, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(hp.cov, C, rtol=1e-6, atol=1e-7)


def test_multidimensional_inputs_ard_match_dense():
    rng = np.random.default_rng(7)
    frames = []
    for i in range(4):
        n = int(rng.integers(2, 6))
        X = rng.uniform(0, 5, (n, 2))
        frames.append(pd.DataFrame({"ID": i, "Input_1": X[:, 0], "Input_2": X[:, 1],
                                    "Output": np.cos(X[:, 0]) + X[:, 1] + 0.1 * rng.standard_normal(n)}))
    df = pd.concat(frames, ignore_index=True)
    k0 = SE(2.0, lengthscale=[1.0, 3.0])
    ki = Matern52(0.5, lengthscale=[0.7, 1.2]) + Constant(0.3)
    model = mtgp.Magma(k0, ki, noise=0.05).fit(df, optimize=False)
    assert model.input_columns_ == ["Input_1", "Input_2"]
    data = [(g[["Input_1", "Input_2"]].to_numpy(), g["Output"].to_numpy()) for _, g in df.groupby("ID")]
    ref = DenseMagma(k0, [ki] * 4, [0.05] * 4, data, lambda X: np.zeros(len(X)))
    assert model.log_likelihood_ == pytest.approx(ref.loglik(), rel=RTOL)
    Xo = rng.uniform(0, 5, (3, 2))
    yo = np.cos(Xo[:, 0]) + Xo[:, 1]
    Xp = pd.DataFrame(rng.uniform(0, 5, (5, 2)), columns=["Input_1", "Input_2"])
    pred = model.predict(pd.DataFrame({"Input_1": Xo[:, 0], "Input_2": Xo[:, 1], "Output": yo}), inputs=Xp)
    m, C = ref.predict(ki, 0.05, Xo, yo, Xp.to_numpy())
    np.testing.assert_allclose(pred.mean, m, rtol=RTOL, atol=1e-9)
    np.testing.assert_allclose(pred.cov, C, rtol=1e-7, atol=1e-9)
    # a fit runs on 2-D data and does not decrease the likelihood
    fitted = mtgp.Magma(k0, ki, noise=0.05, max_iter=3).fit(df)
    assert fitted.log_likelihood_ >= model.log_likelihood_ - 1e-8
    with pytest.raises(mtgp.DataError, match="dimension"):
        fitted.predict(None, inputs=np.zeros((3, 3)))


def test_prior_mean_values_on_grid():
    data = uneven_data(11, M=3)
    model0 = mtgp.Magma(SE(2.0, 1.0), SE(), noise=0.3, prior_mean=lambda X: 2.0 * X[:, 0]).fit(data, optimize=False)
    values = 2.0 * model0.grid_[:, 0]
    model1 = mtgp.Magma(SE(2.0, 1.0), SE(), noise=0.3, prior_mean=values).fit(data, optimize=False)
    assert model1.log_likelihood_ == pytest.approx(model0.log_likelihood_, rel=1e-12)
    with pytest.raises(mtgp.DataError, match="distinct inputs"):
        mtgp.Magma(prior_mean=values[:-1]).fit(data, optimize=False)


def test_weighted_e_step_sums_match_dense_formula():
    """S = sum_i w_i P_i' Psi_i^-1 P_i, c = sum_i w_i P_i' Psi_i^-1 (y_i - m0(t_i))
    and ll = sum_i w_i log N(y_i; m0(t_i), Psi_i) (the E step MagmaClust
    reuses with w_i = tau_ik), written out densely with explicit weights;
    the hyper-posterior and the collapsed bound
    log int N(mu; m0, K0) prod_i N(y_i; P_i mu, Psi_i)^w_i dmu follow."""
    data = uneven_data(2, M=4)
    k0, ki = SE(2.0, 1.5), SE()
    rng = np.random.default_rng(9)
    kernels = [SE(float(rng.uniform(0.5, 3)), float(rng.uniform(0.3, 2))) for _ in range(4)]
    noises = rng.uniform(0.05, 0.5, 4)
    w = np.array([0.7, 0.1, 1.0, 0.25])  # > 0: every grid point keeps some precision
    inds = mtgp.data.to_individuals(data)
    grid, splits = mtgp.data.pooled_grid(inds)
    m0 = 0.3 * grid[:, 0] + 1.0
    buckets = mtgp.data.bucket_individuals(inds, splits, len(grid), 2)
    theta = {"kernel": jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[k.init_params() for k in kernels]),
             "log_noise": jnp.log(jnp.asarray(noises))}
    static = core.MagmaStatic(k0.static(), ki.static(), False)
    layout = core.MagmaData.from_buckets(buckets, grid, m0, weights=w)
    S, c, ll = core.e_step_sums(static, theta, layout)

    N = len(grid)
    S_ref, c_ref, ll_ref = np.zeros((N, N)), np.zeros(N), 0.0
    for (X, y), k, s, wi in zip(data.values(), kernels, noises, w):
        P = (X[:, :1] == grid[None, :, 0]).astype(float)  # (n_i, N) selection
        Psi = np.asarray(k(X, X)) + s * np.eye(len(y))
        Pinv = np.linalg.inv(Psi)
        r = y - P @ m0
        S_ref += wi * P.T @ Pinv @ P
        c_ref += wi * P.T @ Pinv @ r
        ll_ref += wi * (-0.5 * (r @ Pinv @ r + np.linalg.slogdet(Psi)[1] + len(y) * np.log(2 * np.pi)))
    np.testing.assert_allclose(S, S_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c, c_ref, rtol=1e-10, atol=1e-12)
    assert float(ll) == pytest.approx(ll_ref, rel=1e-12)

    # the backend seam gives the same sums, with weights given per call
    ones = core.MagmaData.from_buckets(buckets, grid, m0)
    backend = mtgp.backends.Local()
    S_b, c_b, ll_b = backend.e_step_sums(backend.prepare(ones), static, theta, weights=w)
    np.testing.assert_array_equal(S_b, S)
    np.testing.assert_array_equal(c_b, c)

    # hyper-posterior (Props. 1/4 with weighted precisions) and collapsed bound
    params = core.MagmaParams(k0.init_params(), theta)
    post = core.mean_posterior(static, params, layout)
    K0 = np.asarray(k0(grid, grid))
    C_hat = K0 @ np.linalg.inv(np.eye(N) + S_ref @ K0)  # (K0^-1 + S)^-1 without K0^-1
    np.testing.assert_allclose(post.cov, C_hat, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(post.mean, m0 + C_hat @ c_ref, rtol=1e-8, atol=1e-9)
    bound = ll_ref - 0.5 * np.linalg.slogdet(np.eye(N) + K0 @ S_ref)[1] + 0.5 * c_ref @ C_hat @ c_ref
    assert float(post.loglik) == pytest.approx(bound, rel=1e-9)


def test_unit_weights_change_nothing():
    """With all weights one the weighted sums are the unweighted ones, bit
    for bit (Magma is MagmaClust's K = 1, tau = 1)."""
    data = uneven_data(4, M=5)
    k0, ki = SE(2.0, 1.5), SE(1.0, 0.8)
    inds = mtgp.data.to_individuals(data)
    grid, splits = mtgp.data.pooled_grid(inds)
    buckets = mtgp.data.bucket_individuals(inds, splits, len(grid), 3)
    static = core.MagmaStatic(k0.static(), ki.static(), True)
    theta = {"kernel": ki.init_params(), "log_noise": jnp.log(0.3)}
    a = core.MagmaData.from_buckets(buckets, grid, np.zeros(len(grid)))
    b = a.with_weights(np.full(inds.n_individuals, 1.0))
    for x, y in zip(core.e_step_sums_jit(static, theta, a), core.e_step_sums_jit(static, theta, b)):
        np.testing.assert_array_equal(x, y)
    # half the weight on everyone halves every sum
    h = a.with_weights(np.full(inds.n_individuals, 0.5))
    for x, y in zip(core.e_step_sums_jit(static, theta, a), core.e_step_sums_jit(static, theta, h)):
        np.testing.assert_allclose(0.5 * np.asarray(x), y, rtol=1e-14)
