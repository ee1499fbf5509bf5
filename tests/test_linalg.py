"""mtgp.linalg: safe_cholesky's jitter ladder, report_jitter, mask_padded."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from mtgp import config
from mtgp.exceptions import JitterWarning
from mtgp.linalg import logdet_from_chol, mask_padded, report_jitter, safe_cholesky


def _fails(A):
    return not np.all(np.isfinite(np.asarray(jnp.linalg.cholesky(jnp.asarray(A)))))


def test_positive_definite_gets_no_jitter():
    A = np.array([[2.0, 0.5], [0.5, 1.0]])
    L, added = safe_cholesky(jnp.asarray(A))
    assert float(added) == 0.0
    np.testing.assert_allclose(np.asarray(L), np.linalg.cholesky(A), rtol=1e-14)


def test_singular_psd_gets_the_first_jitter_of_the_ladder():
    A = np.ones((4, 4))  # rank one: the plain factorisation fails (0/0)
    assert _fails(A)
    L, added = safe_cholesky(jnp.asarray(A))
    assert float(added) == pytest.approx(config.get().jitter * 1.0)  # relative to mean diag = 1
    np.testing.assert_allclose(np.asarray(L @ L.T), A + float(added) * np.eye(4), atol=1e-12)


def test_the_smallest_working_jitter_of_the_ladder_is_used():
    """ones - 1e-7 I (as rounding makes a singular matrix slightly
    indefinite) needs 1e-6 x the mean diagonal: 1e-10 ... 1e-7 fail."""
    A = np.ones((4, 4)) - 1e-7 * np.eye(4)
    scale = np.mean(np.diag(A))
    L, added = safe_cholesky(jnp.asarray(A))
    j = float(added) / scale
    assert j == pytest.approx(1e-6, rel=1e-9)
    assert _fails(A + 1e-7 * scale * np.eye(4)) and not _fails(A + 1e-6 * scale * np.eye(4))
    assert np.all(np.isfinite(np.asarray(L)))


def test_settings_change_the_first_jitter_and_the_number_of_tries():
    A = jnp.ones((4, 4))
    with config.settings(jitter=1e-4):
        _, added = safe_cholesky(A)
    assert float(added) == pytest.approx(1e-4)
    _, added = safe_cholesky(A)  # restored after the block
    assert float(added) == pytest.approx(1e-10)
    with config.settings(jitter_max_tries=2):  # 1e-10, 1e-9: not enough for ones - 1e-7 I
        L, added = safe_cholesky(jnp.ones((4, 4)) - 1e-7 * jnp.eye(4))
    assert not np.all(np.isfinite(np.asarray(L)))
    assert safe_cholesky(A, base_jitter=1e-3)[1] == pytest.approx(1e-3)


def test_report_jitter_warns_only_when_jitter_was_added():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report_jitter(np.zeros(3), "nothing")
    with pytest.warns(JitterWarning, match="where-it-happened.*1e-06"):
        report_jitter(np.array([0.0, 1e-6]), "where-it-happened")
    with pytest.raises(FloatingPointError, match="failed even with jitter"):
        report_jitter(np.array([np.nan]), "hopeless")


def test_mask_padded_factor_and_logdet_equal_the_real_block():
    rng = np.random.default_rng(0)
    B = rng.normal(size=(5, 5))
    C = B @ B.T + np.eye(5)
    mask = np.array([1.0, 1.0, 1.0, 0.0, 0.0])
    M = np.asarray(mask_padded(jnp.asarray(C), jnp.asarray(mask)))
    np.testing.assert_array_equal(M[3:, 3:], np.eye(2))
    np.testing.assert_array_equal(M[:3, 3:], 0.0)
    L = jnp.linalg.cholesky(jnp.asarray(M))
    assert float(logdet_from_chol(L)) == pytest.approx(np.linalg.slogdet(C[:3, :3])[1], rel=1e-13)
