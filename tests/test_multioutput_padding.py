"""Multi-output predict pads the prediction inputs to the size ladder
(mtgp.data.padded_size): a new number of inputs of similar size compiles
nothing new, and the results equal the unpadded computation."""

import contextlib

import jax
import numpy as np
import pytest

import mtgp
from mtgp import config
from mtgp.multioutput.base import unpad_joint

from conftest import count_compilations  # noqa: E402


def _data(N=30, T=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 10, (N, 1))
    Y = np.sin(X) @ rng.standard_normal((1, T)) + 0.1 * rng.standard_normal((N, T))
    return X, Y


@pytest.fixture(scope="module", params=["CoolMTGP", "IndependentGPs"])
def model(request):
    X, Y = _data()
    return getattr(mtgp, request.param)(max_iter=5, normalize_y=True).fit(X, Y)


def test_new_sizes_do_not_compile(model):
    model.predict(np.linspace(0, 10, 50)[:, None])
    model.predict(np.linspace(0, 10, 50)[:, None], include_noise=True)
    model.predict(np.linspace(0, 10, 50)[:, None], full_cov=True)
    with count_compilations() as events:
        model.predict(np.linspace(0, 10, 51)[:, None])
        model.predict(np.linspace(-1, 11, 63)[:, None], include_noise=True)
        model.predict(np.linspace(0, 10, 49)[:, None], full_cov=True)
    assert len(events) == 0, f"{len(events)} new compilations"


@pytest.mark.parametrize("n", [1, 5, 51])
def test_padding_is_exact(model, n):
    Xs = np.linspace(-1, 11, n)[:, None]
    T = model.n_outputs_
    for noise in (False, True):
        pred = model.predict(Xs, full_cov=True, include_noise=noise)
        assert pred.mean.shape == (n, T) and pred.cov.shape == (n, T, T)
        assert pred.joint_cov.shape == (n * T, n * T)
        with config.float64_scope():
            mean, cov, joint = model._predict_internal(Xs, True, noise)  # unpadded
        s = model._y_std
        np.testing.assert_allclose(pred.mean, mean * s + model._y_mean, rtol=0, atol=1e-12)
        np.testing.assert_allclose(pred.cov, cov * np.outer(s, s), rtol=0, atol=1e-12)
        sv = np.repeat(s, n)
        np.testing.assert_allclose(pred.joint_cov, joint * np.outer(sv, sv), rtol=0, atol=1e-12)


def test_unpad_joint_keeps_output_major_order():
    T, n, n_pad = 3, 2, 4
    idx = np.arange(T * n_pad)
    joint = idx[:, None] * 1000 + idx[None, :]
    keep = np.array([t * n_pad + j for t in range(T) for j in range(n)])
    np.testing.assert_array_equal(unpad_joint(joint, n, T), joint[np.ix_(keep, keep)])
