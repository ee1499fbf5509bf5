"""Magma's prediction inputs (and a new individual's observations) are
padded to the size ladder (mtgp.data.padded_size): a new number of points of
similar size compiles nothing new, and the results equal the unpadded
computation."""

import contextlib

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import mtgp
from mtgp import config
from mtgp.kernels import SE
from mtgp.magma import prediction as pr
from mtgp.testing import DenseMagma

from conftest import count_compilations  # noqa: E402


def _data(M=6, seed=0):
    rng = np.random.default_rng(seed)
    data = {}
    for i in range(M):
        n = int(rng.integers(3, 8))
        X = np.sort(rng.uniform(0, 10, n))[:, None]
        data[f"i{i}"] = (X, 1.0 + np.sin(X[:, 0]) + 0.2 * rng.standard_normal(n))
    return data


def _new(n, seed):
    rng = np.random.default_rng(seed)
    Xo = np.sort(rng.uniform(0, 10, n))[:, None]
    return Xo, 1.0 + np.sin(Xo[:, 0])


K0, KI, NOISE = SE(3.0, 2.0), SE(1.0, 1.0), 0.1


@pytest.fixture(scope="module")
def model():
    return mtgp.Magma(K0, KI, noise=NOISE, prior_mean=lambda X: 0.3 * X[:, 0]).fit(_data(), optimize=False)


def test_new_sizes_do_not_compile(model):
    Xo, yo = _new(5, 1)
    warm = [np.linspace(0, 10, 50)[:, None]]
    model.predict((Xo, yo), inputs=warm[0])  # compiles the size-64 program (and its eager glue)
    model.predict(None, inputs=warm[0])
    model.hyperposterior(warm[0])
    with count_compilations() as events:
        model.predict((Xo, yo), inputs=np.linspace(0, 10, 51)[:, None])  # new number of inputs
        Xo2, yo2 = _new(7, 2)  # another individual, another number of observations (same bucket)
        model.predict((Xo2, yo2), inputs=np.linspace(-1, 11, 57)[:, None])
        model.predict(None, inputs=np.linspace(0, 10, 60)[:, None])
        model.hyperposterior(np.linspace(0, 10, 49)[:, None])
    assert len(events) == 0, f"{len(events)} new compilations"


@config.float64
def _unpadded(model, Xo, yo, Xp, noise=True):
    st, grid = model._static, jnp.asarray(model.grid_)
    p = model._prior
    if Xo is None:
        return pr.predict_prior_jit(st.k0, st.ki, noise, model.theta0_, model.theta_, model.posterior_, grid,
                                    jnp.asarray(Xp), jnp.asarray(p(Xp)))
    m, c, _ = pr.predict_jit(st.k0, st.ki, noise, model.theta0_, model.theta_, model.posterior_, grid,
                             jnp.asarray(Xp), jnp.asarray(p(Xp)), jnp.asarray(Xo), jnp.asarray(yo),
                             jnp.asarray(p(Xo)))
    return m, c


@pytest.mark.parametrize("n", [1, 51])
def test_padding_is_exact(model, n):
    Xo, yo = _new(5, 3)
    Xp = np.linspace(-1, 11, n)[:, None]
    ref = DenseMagma(K0, [KI] * 6, [NOISE] * 6, list(_data().values()), lambda X: 0.3 * X[:, 0])
    for obs in ((Xo, yo), None):
        for noise in (True, False):
            pred = model.predict(obs, inputs=Xp, noise=noise)
            assert pred.mean.shape == (n,) and pred.cov.shape == (n, n)
            m, c = _unpadded(model, *(obs or (None, None)), Xp, noise)
            np.testing.assert_allclose(pred.mean, m, rtol=0, atol=1e-12)
            np.testing.assert_allclose(pred.cov, c, rtol=0, atol=1e-12)
            m, c = ref.predict(KI, NOISE, *(obs or (None, None)), Xp, noise=noise)
            np.testing.assert_allclose(pred.mean, m, rtol=1e-8, atol=1e-9)
            np.testing.assert_allclose(pred.cov, c, rtol=1e-7, atol=1e-9)
    hp = model.hyperposterior(Xp)
    m, c = ref.mean_process(Xp)
    np.testing.assert_allclose(hp.mean, m, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(hp.cov, c, rtol=1e-7, atol=1e-9)


def test_different_hp_new_individual_padded():
    """Sec. 4.3 (Different HP): the new individual's HPs are learnt on its
    padded, masked observations; a second individual of another size in the
    same bucket compiles nothing new, and the learnt HPs maximise the same
    objective as unpadded."""
    model = mtgp.Magma(K0, KI, noise=NOISE, common_hp=False).fit(_data(), optimize=False)
    Xp = np.linspace(0, 10, 20)[:, None]
    Xo, yo = _new(5, 4)
    pred = model.predict((Xo, yo), inputs=Xp)
    with count_compilations() as events:
        model.predict(_new(7, 5), inputs=np.linspace(0, 10, 23)[:, None])
    assert len(events) == 0, f"{len(events)} new compilations"
    # the padded, masked fit equals the unpadded one
    with config.float64_scope():
        st, grid = model._static, jnp.asarray(model.grid_)
        padded = pr.learn_new_individual_hp(st, model.theta0_, model.theta_, model.posterior_, model.grid_,
                                            model._prior, Xo, yo, "map", 100)
        mu_o, K_o = pr.mean_posterior_at_jit(st.k0, model.theta0_, model.posterior_, grid, jnp.asarray(Xo),
                                             jnp.asarray(model._prior(Xo)))
        flat = np.asarray(jax.vmap(lambda t: jax.flatten_util.ravel_pytree(t)[0])(model.theta_))
        _, unravel = jax.flatten_util.ravel_pytree(jax.tree_util.tree_map(lambda a: a[0], model.theta_))
        qs = np.quantile(flat, list(pr.START_QUANTILES), axis=0)
        starts = jax.vmap(unravel)(jnp.asarray(np.vstack([qs, flat[:3]])))
        prec = 1.0 / np.maximum(flat.std(axis=0), pr.PRIOR_SD_FLOOR) ** 2
        unpadded, _ = pr.fit_new_individual_jit(st.ki, 100, starts, jnp.asarray(Xo), jnp.asarray(yo), mu_o, K_o,
                                                jnp.asarray(flat.mean(axis=0)), jnp.asarray(prec))
    a = jax.flatten_util.ravel_pytree(padded)[0]
    b = jax.flatten_util.ravel_pytree(unpadded)[0]
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-7)
