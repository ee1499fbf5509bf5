"""Oracle tests of the multi-output family: exact eigen likelihood and
predictive vs the dense (C (x) K + Sigma (x) I) formulas, Cool-MTGP's
recovery recursions (Alg. 3) on hand-checkable cases, eqs. 21/26 vs dense
per-output Gaussians, and the MAP weights of eq. 18 vs the primal eq. 16."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import mtgp
from mtgp.testing import dense_log_likelihood, dense_predict
from mtgp.multioutput import (
    CoolMTGP, EigenPredictor, ICM, IndependentGPs, StructuredNoiseMTGP,
    mtgp_log_likelihood, noise_covariance_recursion, recover_noise_covariance,
    recover_output_covariance,
)


def _random_problem(N=9, T=3, n=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 2))
    Xs = rng.normal(size=(n, 2))
    A = rng.normal(size=(T, T))
    B = rng.normal(size=(T, T))
    return X, Xs, A @ A.T, B @ B.T + 0.1 * np.eye(T), rng.normal(size=(N, T))


def _synthetic(N, T, D, seed, noise=0.3):
    """Sec. 5.1-style data: Y = X W + E, rows of W ~ N(0, C), rows of E ~ N(0, Sigma)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D)) / np.sqrt(D)
    Cc = rng.normal(size=(T, T)) / np.sqrt(T)
    Sc = rng.normal(size=(T, T)) / np.sqrt(T)
    C, S = Cc @ Cc.T, noise * Sc @ Sc.T
    W = rng.normal(size=(D, T)) @ np.linalg.cholesky(C).T
    E = rng.normal(size=(N, T)) @ np.linalg.cholesky(S).T
    return X, X @ W + E, C, S, W


@pytest.mark.parametrize("kernel", [mtgp.kernels.SE(lengthscale=1.3), mtgp.kernels.Linear()])
def test_eigen_likelihood_and_gradients_match_dense(kernel):
    X, _, C, S, Y = _random_problem()
    K = kernel(X, X)  # Linear with D=2 < N: K singular, degenerate eigenvalues
    args = (jnp.asarray(K), jnp.asarray(C), jnp.asarray(S), jnp.asarray(Y))
    np.testing.assert_allclose(mtgp_log_likelihood(*args), dense_log_likelihood(*args), rtol=1e-10)
    g1 = jax.grad(mtgp_log_likelihood, argnums=(0, 1, 2, 3))(*args)
    g2 = jax.grad(dense_log_likelihood, argnums=(0, 1, 2, 3))(*args)
    for a, b in zip(g1[:3], g2[:3]):
        np.testing.assert_allclose(a, 0.5 * (b + b.T), atol=1e-9)
    np.testing.assert_allclose(g1[3], g2[3], atol=1e-9)
    assert np.all(np.isfinite(g1[0]))


def test_eigen_predictive_matches_dense():
    X, Xs, C, S, Y = _random_problem()
    k = mtgp.kernels.SE(lengthscale=0.9)
    K, Ks, Kss = k(X, X), k(Xs, X), k(Xs, Xs)
    p = EigenPredictor(K, C, S, Y)
    mean, joint = dense_predict(K, Ks, Kss, C, S, Y)
    np.testing.assert_allclose(p.mean(Ks), mean, atol=1e-10)
    np.testing.assert_allclose(p.joint_cov(Ks, Kss), joint, atol=1e-10)
    n, T = mean.shape
    per_point = np.einsum("txux->xtu", joint.reshape(T, n, T, n))
    np.testing.assert_allclose(p.point_cov(Ks, jnp.diag(Kss)), per_point, atol=1e-10)
    np.testing.assert_allclose(p.point_cov(Ks, jnp.diag(Kss), include_noise=True), per_point + S[None], atol=1e-10)
    np.testing.assert_allclose(p.log_likelihood, dense_log_likelihood(K, C, S, Y), rtol=1e-10)


def test_noise_recursion_hand_checked_and_closed_form():
    w, a, c = 0.7, 2.0, 0.5
    W = np.array([[0.0, 0.0], [w, 0.0]])
    expected = np.array([[a, w * a], [w * a, c + w * w * a]])  # eq. (34) by hand
    np.testing.assert_allclose(noise_covariance_recursion(W, [a, c]), expected)
    np.testing.assert_allclose(recover_noise_covariance(W, [a, c]), expected)
    rng = np.random.default_rng(3)
    W5 = np.tril(rng.normal(size=(5, 5)), -1)
    s2 = rng.uniform(0.1, 2, size=5)
    np.testing.assert_allclose(recover_noise_covariance(W5, s2), noise_covariance_recursion(W5, s2), atol=1e-12)


def test_output_covariance_recovery_hand_checked():
    # T = 2: B = [[1, 0], [w, 1]], Btt = [[b1, r], [r, b2]] with r = sqrt(b1 b2) cos
    w, b1, b2 = -0.4, 1.5, 0.8
    K = np.array([[2.0, 0.5], [0.5, 1.0]])
    alpha = np.array([[1.0, 0.0], [1.0, 1.0]])
    cos = (alpha[0] @ K @ alpha[1]) / np.sqrt((alpha[0] @ K @ alpha[0]) * (alpha[1] @ K @ alpha[1]))
    r = np.sqrt(b1 * b2) * cos
    expected = np.array([[b1, w * b1 + r], [w * b1 + r, w * w * b1 + 2 * w * r + b2]])
    C = recover_output_covariance(np.array([[0.0, 0.0], [w, 0.0]]), [b1, b2], alpha, K)
    np.testing.assert_allclose(C, expected, atol=1e-12)
    # identical duals: perfect correlation; orthogonal (in K): diag(b)
    assert np.isclose(recover_output_covariance(np.zeros((2, 2)), [1, 4], np.ones((2, 2)), np.eye(2))[0, 1], 2.0)
    assert np.isclose(recover_output_covariance(np.zeros((2, 2)), [1, 4], np.eye(2), np.eye(2))[0, 1], 0.0)


@pytest.fixture(scope="module")
def small_data():
    X, Y, C, S, W = _synthetic(60, 3, 4, seed=1)
    return X, Y


@pytest.fixture(scope="module")
def fitted(small_data):
    X, Y = small_data
    return {m: CoolMTGP(mtgp.kernels.Linear(), method=m, max_iter=100).fit(X, Y)
            for m in ("hierarchical", "approximate")}


def _dense_cool(model, X, Y, method):
    """Eqs. (21) / (26) term by term with scipy, from the fitted quantities."""
    K = np.asarray(model.kernel_(X, X))
    W = model.previous_output_weights_
    total = 0.0
    for t in range(Y.shape[1]):
        Yp = Y[:, :t]
        if method == "approximate":
            cov = model.b_[t] * K + Yp @ Yp.T + model.sigma2_[t] * np.eye(len(X))
            r = Y[:, t]
        else:
            cov = model.b_[t] * K + model.sigma2_[t] * np.eye(len(X))
            r = Y[:, t] - Yp @ W[t, :t]
        total += stats.multivariate_normal(np.zeros(len(X)), cov).logpdf(r)
    return total


@pytest.mark.parametrize("method", ["hierarchical", "approximate"])
def test_cool_objectives_match_dense(fitted, small_data, method):
    X, Y = small_data
    m = fitted[method]
    np.testing.assert_allclose(m.objective_, _dense_cool(m, X, Y, method), rtol=1e-9)


@pytest.mark.parametrize("kernel", [mtgp.kernels.SE(lengthscale=1.3), mtgp.kernels.Linear(0.7)])
def test_eigen_conditional_likelihoods_match_cholesky_forms(kernel):
    """Eqs. (21) and (26) through one eigh of K (Woodbury in the rotated
    basis, analytic VJP) equal the one-Cholesky-per-output forms, values and
    gradients in K, b, sigma^2, Y (and W_y), also for a singular K (linear
    kernel, D = 2 < N: repeated zero eigenvalues)."""
    from mtgp.multioutput import cool

    rng = np.random.default_rng(5)
    N, T = 20, 4
    X = jnp.asarray(rng.normal(size=(N, 2)))
    Y = jnp.asarray(rng.normal(size=(N, T)))
    K = kernel(X, X)
    b = jnp.asarray(rng.uniform(0.5, 2.0, T))
    s2 = jnp.asarray(rng.uniform(0.1, 1.0, T))
    W = jnp.tril(jnp.asarray(rng.normal(size=(T, T))), -1)
    cases = [(cool.approximate_log_likelihood, cool.approximate_log_likelihood_cholesky, (K, b, s2, Y)),
             (cool.hierarchical_log_likelihood, cool.hierarchical_log_likelihood_cholesky, (K, b, s2, Y, W))]
    for eig, chol, args in cases:
        np.testing.assert_allclose(float(eig(*args)), float(chol(*args)), rtol=1e-12)
        argnums = tuple(range(len(args)))
        for a, c in zip(jax.grad(eig, argnums)(*args), jax.grad(chol, argnums)(*args)):
            if a.ndim == 2 and a.shape[0] == a.shape[1] == N:  # K: symmetric part
                c = 0.5 * (c + c.T)
            assert np.all(np.isfinite(np.asarray(a)))
            np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-9, atol=1e-10)


def test_map_weights_dual_eq18_equals_primal_eq16(fitted, small_data):
    """w_bar_y,t = sigma^-2 A_t^-1 [Phi; Y_<t] y_t (eq. 16, primal, linear kernel
    Phi = X^T scaled by the kernel variance) equals Y_<t^T alpha (eq. 18)."""
    X, Y = small_data
    m = fitted["hierarchical"]
    v = m.kernel_.variance
    N, D = X.shape
    for t in range(1, Y.shape[1]):
        b, s2 = m.b_[t], m.sigma2_[t]
        Z = np.hstack([X, Y[:, :t]])  # rows [phi_i; y_<t,i]
        prior = np.diag(np.r_[np.full(D, b * v), np.ones(t)])
        A = Z.T @ Z / s2 + np.linalg.inv(prior)
        w = np.linalg.solve(A, Z.T @ Y[:, t]) / s2
        np.testing.assert_allclose(m.previous_output_weights_[t, :t], w[D:], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("method", ["hierarchical", "approximate"])
def test_model_predict_equals_dense_formula(small_data, method):
    X, Y = small_data
    Y = 3.0 * Y + 5.0
    m = CoolMTGP(mtgp.kernels.SE(), method=method, normalize_y=True, max_iter=60).fit(X, Y)
    Xs = X[:5] + 0.1
    pred = m.predict(Xs, full_cov=True)
    k = m.kernel_
    mu, sd = Y.mean(0), Y.std(0)
    C, S = m.output_covariance_, m.noise_covariance_
    # on the data scale: mean offset + dense eq. (5) with the reported C and Sigma
    mean, joint = dense_predict(k(X, X), k(Xs, X), k(Xs, Xs), C, S, Y - mu)
    np.testing.assert_allclose(pred.mean, mean + mu, atol=1e-8)
    np.testing.assert_allclose(pred.joint_cov, joint, atol=1e-8)
    np.testing.assert_allclose(pred.cov[2], joint.reshape(3, 5, 3, 5)[:, 2, :, 2], atol=1e-8)
    lo, hi = pred.interval(0.95)
    assert np.all(lo < pred.mean) and np.all(hi > pred.mean)
    pm = pred.joint_cov_point_major()
    np.testing.assert_allclose(pm[:3, :3], pred.cov[0], atol=1e-12)
    noisy = m.predict(Xs, include_noise=True)
    np.testing.assert_allclose(noisy.cov - pred.cov, np.broadcast_to(S, (5, 3, 3)), atol=1e-8)


def test_normalize_y_reports_data_scale(small_data):
    X, Y = small_data
    m1 = CoolMTGP(mtgp.kernels.Linear(), normalize_y=True, max_iter=60).fit(X, Y)
    m2 = CoolMTGP(mtgp.kernels.Linear(), normalize_y=True, max_iter=60).fit(X, 10 * Y + 1)
    np.testing.assert_allclose(m2.output_covariance_, 100 * m1.output_covariance_, rtol=1e-5)
    np.testing.assert_allclose(m2.noise_covariance_, 100 * m1.noise_covariance_, rtol=1e-5)
    np.testing.assert_allclose(m2.predict(X[:4]).mean, 10 * m1.predict(X[:4]).mean + 1, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls,kw", [(ICM, dict(rank=2)), (ICM, dict(rank=1, diagonal=True)),
                                    (StructuredNoiseMTGP, {}), (StructuredNoiseMTGP, dict(rank=1))])
def test_joint_baselines_predict_and_likelihood_dense(small_data, cls, kw):
    X, Y = small_data
    m = cls(mtgp.kernels.Linear(), max_iter=60, **kw).fit(X, Y)
    k = m.kernel_
    C, S = m.output_covariance_, m.noise_covariance_
    np.testing.assert_allclose(m.log_marginal_likelihood_, dense_log_likelihood(k(X, X), C, S, Y), rtol=1e-9)
    mean, joint = dense_predict(k(X, X), k(X[:4], X), k(X[:4], X[:4]), C, S, Y)
    pred = m.predict(X[:4], full_cov=True)
    np.testing.assert_allclose(pred.mean, mean, atol=1e-8)
    np.testing.assert_allclose(pred.joint_cov, joint, atol=1e-8)
    if cls is ICM:
        assert np.allclose(S, np.diag(np.diag(S)))
        if not kw.get("diagonal"):
            assert np.linalg.matrix_rank(C, tol=1e-8) <= kw["rank"]


def test_independent_gps_are_single_output_gps(small_data):
    X, Y = small_data
    m = IndependentGPs(mtgp.kernels.SE(), max_iter=60).fit(X, Y)
    pred = m.predict(X[:4])
    full = m.predict(X[:4], full_cov=True, include_noise=True)
    ll = 0.0
    for t, k in enumerate(m.kernel_):
        b, s2 = m.output_covariance_[t, t], m.noise_covariance_[t, t]
        K = b * np.asarray(k(X, X)) + s2 * np.eye(len(X))
        Ks = b * np.asarray(k(X[:4], X))
        np.testing.assert_allclose(pred.mean[:, t], Ks @ np.linalg.solve(K, Y[:, t]), atol=1e-8)
        cov = b * np.asarray(k(X[:4], X[:4])) - Ks @ np.linalg.solve(K, Ks.T)
        np.testing.assert_allclose(pred.cov[:, t, t], np.diag(cov), atol=1e-9)
        np.testing.assert_allclose(full.joint_cov[4 * t:4 * t + 4, 4 * t:4 * t + 4], cov + s2 * np.eye(4), atol=1e-9)
        ll += stats.multivariate_normal(np.zeros(len(X)), K).logpdf(Y[:, t])
    assert np.all(full.joint_cov[:4, 4:] == 0.0)
    np.testing.assert_allclose(m.log_marginal_likelihood_, ll, rtol=1e-9)
    assert np.allclose(pred.cov[0], np.diag(np.diag(pred.cov[0])))


def test_independent_gps_jitter_only_where_the_plain_factor_fails(small_data):
    """The outputs are factorised together (one vmapped program); an output
    whose covariance the plain Cholesky cannot factorise (here: a duplicated
    input and a noise variance set just below zero) gets safe_cholesky's
    jitter with a JitterWarning, the others keep their plain factor: their
    predictions are unchanged to the bit."""
    X, Y = small_data
    X = np.vstack([X, X[:1]])  # a duplicated input: b K is singular
    Y = np.vstack([Y, Y[:1]])
    m = IndependentGPs(mtgp.kernels.SE(), max_iter=20).fit(X, Y)
    before = m.predict(X[:5])
    m._s2 = m._s2.copy()
    m._s2[1] = -1e-9 * m._b[1]
    with pytest.warns(mtgp.JitterWarning, match="IndependentGPs"):
        m._build_predictor()
    after = m.predict(X[:5])
    for t in (0, 2):
        np.testing.assert_array_equal(after.mean[:, t], before.mean[:, t])
        np.testing.assert_array_equal(after.var[:, t], before.var[:, t])
    assert np.all(np.isfinite(after.mean)) and np.all(np.isfinite(after.var))
    assert not np.array_equal(after.mean[:, 1], before.mean[:, 1])


def test_recovery_moderate_n():
    """C and Sigma from 600 samples (fast version of the large-N test)."""
    X, Y, C, S, W = _synthetic(600, 3, 60, seed=5)
    m = CoolMTGP(mtgp.kernels.Linear(), method="approximate", max_iter=100).fit(X, Y)
    C_emp = W.T @ W / W.shape[0]
    assert np.linalg.norm(m.output_covariance_ - C_emp) / np.linalg.norm(C_emp) < 0.25
    assert np.linalg.norm(m.noise_covariance_ - S) / np.linalg.norm(S) < 0.2


@pytest.mark.slow
@pytest.mark.parametrize("method", ["hierarchical", "approximate"])
def test_recovery_large_n(method):
    """Large N: Sigma is estimated from N residual vectors (sampling error
    ~ sqrt(2/N) ~ 0.04 relative), while C can at best recover the D realised
    weight vectors' covariance W^T W / D (C itself is only seen through D
    draws): tolerances 0.1 vs that empirical C and vs the true Sigma."""
    X, Y, C, S, W = _synthetic(1500, 4, 150, seed=11)
    m = CoolMTGP(mtgp.kernels.Linear(), method=method, max_iter=150).fit(X, Y)
    C_emp = W.T @ W / W.shape[0]
    assert np.linalg.norm(m.output_covariance_ - C_emp) / np.linalg.norm(C_emp) < 0.1
    assert np.linalg.norm(m.noise_covariance_ - S) / np.linalg.norm(S) < 0.1
