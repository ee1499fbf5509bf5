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
    post = core.e_step_jit(k0.static(), ki.static(), False, k0.init_params(), theta, jnp.asarray(grid),
                           jnp.zeros(len(grid)), jnp.asarray(pad.X), jnp.asarray(pad.y),
                           jnp.asarray(pad.mask), jnp.asarray(pad.idx))
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
