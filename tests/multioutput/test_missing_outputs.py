"""Missing outputs (NaN in Y) and conditional prediction ``predict(X, Y_observed=...)``.

Every check compares with the dense Gaussian of the observed entries
(:mod:`mtgp.testing.oracles`, numpy, forms the NT x NT matrix): the fitted
model's likelihood and predictive must be those of the joint model
marginalised over the missing entries, and a row's conditional prediction
that of the dense conditional given the training data and that row's
observed outputs.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from mtgp import config
from mtgp.exceptions import DataError
from mtgp.multioutput import CoolMTGP, ICM, IndependentGPs, StructuredNoiseMTGP
from mtgp.multioutput.algebra import (ComplementPredictor, EigenPredictor, MaskedPredictor, complement_masked_log_likelihood,
                                      condition_on_own_row_noise, condition_on_row_outputs, coregional_masked_log_likelihood, make_predictor,
                                      masked_log_likelihood, observed_index, observed_values)
from mtgp.multioutput.baselines import _JointMTGP
from mtgp.testing import dense_masked_log_likelihood, dense_masked_predict, dense_training_conditional


def _data(N=24, T=3, frac=0.3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 2))
    F = np.sin(X[:, :1]) + 0.3 * X[:, 1:]
    Y = np.hstack([F, -F + 0.2 * rng.normal(size=(N, 1)), 0.5 * F + 0.3 * rng.normal(size=(N, 1))])[:, :T]
    Y = Y + 0.1 * rng.normal(size=Y.shape)
    Ym = Y.copy()
    Ym[rng.random(Y.shape) < frac] = np.nan
    return X, Y, Ym


def _random_model(N=9, T=3, n=4, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N + n, 2))
    K_all = np.exp(-0.5 * np.sum((X[:, None] - X[None]) ** 2, -1))
    A = rng.normal(size=(T, T))
    C = A @ A.T + 0.1 * np.eye(T)
    B = rng.normal(size=(T, T))
    S = 0.3 * B @ B.T + 0.05 * np.eye(T)
    Y = rng.normal(size=(N, T))
    Ym = Y.copy()
    Ym[rng.random(Y.shape) < 0.35] = np.nan
    Ym[0] = np.nan  # a row with nothing observed
    return K_all, C, S, Y, Ym, N


@config.float64
def test_masked_log_likelihood_and_gradient_match_dense():
    K_all, C, S, _, Ym, N = _random_model()
    K = K_all[:N, :N]
    i_o, t_o = observed_index(Ym)
    y_o = jnp.asarray(observed_values(Ym))
    ll = masked_log_likelihood(jnp.asarray(K), jnp.asarray(C), jnp.asarray(S), y_o, i_o, t_o)
    assert abs(float(ll) - dense_masked_log_likelihood(K, C, S, Ym)) < 1e-10

    # gradient against the dense (NT x NT) form differentiated by jax
    obs = ~np.isnan(Ym.T.reshape(-1))

    def dense(K, C, S):
        A = jnp.kron(C, K) + jnp.kron(S, jnp.eye(N))
        A = A[np.ix_(obs, obs)]
        return jax.scipy.stats.multivariate_normal.logpdf(y_o, jnp.zeros(len(y_o)), A)

    g1 = jax.grad(masked_log_likelihood, argnums=(0, 1, 2))(jnp.asarray(K), jnp.asarray(C), jnp.asarray(S),
                                                             y_o, i_o, t_o)
    g2 = jax.grad(dense, argnums=(0, 1, 2))(jnp.asarray(K), jnp.asarray(C), jnp.asarray(S))
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-9)


@config.float64
@pytest.mark.parametrize("rank,diagonal", [(1, True), (2, True), (1, False)])
def test_coregional_masked_log_likelihood_matches_dense(rank, diagonal):
    """ICM's latent-process form (Woodbury over F, T per-output blocks) equals
    the dense observed-entry likelihood, value and gradient, with a row that
    has nothing observed, an output observed once and a singular K (a
    repeated input: the form never inverts K)."""
    rng = np.random.default_rng(7 + rank)
    N, T = 10, 4
    X = rng.normal(size=(N, 2))
    X[1] = X[0]
    Ym = rng.normal(size=(N, T))
    Ym[rng.random(Ym.shape) < 0.3] = np.nan
    Ym[2] = np.nan
    Ym[:, 3] = np.nan
    Ym[5, 3] = 0.7
    K = jnp.asarray(np.exp(-0.5 * np.sum((X[:, None] - X[None]) ** 2, -1)))
    A = jnp.asarray(rng.normal(size=(T, rank)))
    kappa = jnp.asarray(rng.uniform(0.05, 0.5, size=T) if diagonal else np.zeros(T))
    s2 = jnp.asarray(rng.uniform(0.01, 0.2, size=T))
    i_o, t_o = observed_index(Ym)
    y_o = jnp.asarray(observed_values(Ym))
    Y0, W = jnp.asarray(np.nan_to_num(Ym)), jnp.asarray(~np.isnan(Ym), dtype=float)

    def dense(K, A, kappa, s2):
        return masked_log_likelihood(K, A @ A.T + jnp.diag(kappa), jnp.diag(s2), y_o, i_o, t_o)

    def factored(K, A, kappa, s2):
        return coregional_masked_log_likelihood(K, A, kappa, s2, Y0, W)

    C = np.asarray(A @ A.T + jnp.diag(kappa))
    assert abs(float(factored(K, A, kappa, s2)) - dense_masked_log_likelihood(np.asarray(K), C, np.diag(s2), Ym)) \
        < 1e-9
    g1 = jax.grad(dense, argnums=(0, 1, 2, 3))(K, A, kappa, s2)
    g2 = jax.grad(factored, argnums=(0, 1, 2, 3))(K, A, kappa, s2)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-8)
    # not positive definite: NaN as the dense form, not a wrong number
    assert np.isnan(float(factored(K, A, kappa, -s2 - 5.0)))


@config.float64
def test_coregional_analytic_gradient_equals_autodiff():
    """The custom VJP of the latent-process form (Woodbury blocks of
    A_OO^-1) equals jax's derivative of the same forward pass to 1e-9
    relative, for every argument with a gradient (K, A, kappa, s2, Y0), at
    rank 2 with half the entries missing."""
    from mtgp.multioutput.algebra import _coregional_parts

    rng = np.random.default_rng(3)
    N, T, P = 30, 6, 2
    X = rng.normal(size=(N, 2))
    K = jnp.asarray(np.exp(-0.5 * np.sum((X[:, None] - X[None]) ** 2, -1)))
    W = (rng.random((N, T)) > 0.5).astype(float)
    args = (K, jnp.asarray(rng.normal(size=(T, P))), jnp.asarray(rng.uniform(0.05, 0.3, T)),
            jnp.asarray(rng.uniform(0.01, 0.1, T)), jnp.asarray(rng.normal(size=(N, T)) * W), jnp.asarray(W))
    argnums = (0, 1, 2, 3, 4)
    analytic = jax.grad(coregional_masked_log_likelihood, argnums=argnums)(*args)
    autodiff = jax.grad(lambda *a: _coregional_parts(*a)[0], argnums=argnums)(*args)
    for a, b in zip(analytic, autodiff):
        assert float(jnp.max(jnp.abs(a - b))) < 1e-9 * float(jnp.max(jnp.abs(b)))


@config.float64
@pytest.mark.parametrize("frac", [0.15, 0.5])
def test_complement_masked_log_likelihood_matches_dense(frac):
    """The eigen route of the complete data plus the missing entries' block
    of A^-1 equals the dense observed-entry likelihood, value and (custom
    VJP) gradient w.r.t. K, C, Sigma and Y, with a row that has nothing
    observed, a repeated input (singular K) and a rank-1 C; the values at
    the missing entries of Y do not matter."""
    rng = np.random.default_rng(11)
    N, T = 12, 3
    X = rng.normal(size=(N, 2))
    X[1] = X[0]
    Ym = rng.normal(size=(N, T))
    Ym[rng.random(Ym.shape) < frac] = np.nan
    Ym[2] = np.nan
    Ym[0, 0] = 0.4
    K = jnp.asarray(np.exp(-0.5 * np.sum((X[:, None] - X[None]) ** 2, -1)))
    a = rng.normal(size=(T, 1))
    C = jnp.asarray(a @ a.T)
    B = rng.normal(size=(T, T))
    S = jnp.asarray(0.2 * B @ B.T + 0.05 * np.eye(T))
    miss = np.isnan(Ym)
    m_i, m_t = (jnp.asarray(v.astype(np.int32)) for v in np.nonzero(miss))
    Y0 = jnp.asarray(np.where(miss, 7.0, Ym))
    i_o, t_o = observed_index(Ym)
    y_o = jnp.asarray(observed_values(Ym))

    def dense(K, C, S, Y0):
        return masked_log_likelihood(K, C, S, Y0.T.reshape(-1)[np.asarray(~miss.T.reshape(-1))], i_o, t_o)

    def complement(K, C, S, Y0):
        return complement_masked_log_likelihood(K, C, S, Y0, m_i, m_t)

    assert abs(float(complement(K, C, S, Y0)) - dense_masked_log_likelihood(np.asarray(K), C, S, Ym)) < 1e-9
    assert float(complement(K, C, S, Y0)) == pytest.approx(float(complement(K, C, S, Y0 * 0 + jnp.nan_to_num(
        jnp.asarray(np.where(miss, -3.0, Ym))))), abs=1e-10)
    g1 = jax.grad(dense, argnums=(0, 1, 2, 3))(K, C, S, Y0)
    g2 = jax.grad(complement, argnums=(0, 1, 2, 3))(K, C, S, Y0)
    for a_, b_ in zip(g1, g2):
        np.testing.assert_allclose(np.asarray(b_), np.asarray(a_), atol=1e-8)
    assert np.all(np.asarray(g2[3])[miss] == 0.0)
    assert y_o.shape[0] == int((~miss).sum())


ROUTES = [("ICM", "masked coregional"), ("ICM", "masked complement"), ("SigmaMT", "masked complement")]


@pytest.mark.parametrize("model_name,route", ROUTES)
def test_masked_routes_reach_the_dense_fit(monkeypatch, model_name, route):
    """Each structured form of the observed entries' likelihood, when the fit
    takes it, reaches what the dense form reaches; fit_info_ names it."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(30, 2))
    F = np.sin(2 * X[:, :1])
    Ym = F * rng.normal(size=(1, 6)) + 0.2 * rng.normal(size=(30, 6))
    Ym[rng.random(Ym.shape) < 0.2] = np.nan
    make = {"ICM": lambda: ICM(diagonal=True, max_iter=40),
            "SigmaMT": lambda: StructuredNoiseMTGP(max_iter=40)}[model_name]
    costs = _JointMTGP._masked_costs
    monkeypatch.setattr(_JointMTGP, "_masked_costs", staticmethod(
        lambda Y, factored: {k: (0.0 if k == route else v) for k, v in costs(Y, factored).items()}))
    model = make().fit(X, Ym)
    assert model.fit_info_["likelihood"] == route
    monkeypatch.setattr(_JointMTGP, "_masked_costs", staticmethod(lambda Y, factored: {"masked dense": 1.0}))
    dense = make().fit(X, Ym)
    assert dense.fit_info_["likelihood"] == "masked dense"
    assert model.log_marginal_likelihood_ == pytest.approx(dense.log_marginal_likelihood_, abs=1e-6)
    np.testing.assert_allclose(model.output_covariance_, dense.output_covariance_, atol=1e-5)
    Xs = rng.normal(size=(5, 2))
    np.testing.assert_allclose(model.predict(Xs).mean, dense.predict(Xs).mean, atol=1e-5)


def test_masked_route_choice():
    """The cheapest form is taken: few missing entries -> the eigen
    complement; many outputs at rank 1 with many missing -> ICM's latent
    processes; two outputs with half missing -> dense."""
    rng = np.random.default_rng(0)

    def route(model, N, T, frac):
        Y = rng.normal(size=(N, T))
        Y[rng.random(Y.shape) < frac] = np.nan
        f = model._factored_masked_likelihood(Y)
        costs = model._masked_costs(Y, f)
        return min(costs, key=costs.get)

    assert route(ICM(diagonal=True), 614, 2, 0.1) == "masked complement"
    assert route(ICM(diagonal=True), 100, 16, 0.5) == "masked coregional"
    assert route(ICM(diagonal=True), 100, 16, 0.1) == "masked coregional"  # 5.4 ms against 11 ms (multioutput_many)
    assert route(StructuredNoiseMTGP(), 100, 16, 0.1) == "masked complement"
    assert route(StructuredNoiseMTGP(), 614, 2, 0.5) == "masked dense"


@pytest.mark.parametrize("predictor", [MaskedPredictor, ComplementPredictor])
@config.float64
def test_masked_predictor_matches_dense_and_eigen(predictor):
    """Both predictors given the observed entries (dense Cholesky of A_OO;
    complete-data eigen factors + complement on the missing entries) equal
    the dense Gaussian conditional."""
    K_all, C, S, Y, Ym, N = _random_model()
    K, Ks, Kss = (jnp.asarray(a) for a in (K_all[:N, :N], K_all[N:, :N], K_all[N:, N:]))
    n = Ks.shape[0]
    P = predictor(K, C, S, Ym)
    mean, cov, joint = dense_masked_predict(K_all, C, S, Ym)
    assert abs(P.log_likelihood - dense_masked_log_likelihood(K_all[:N, :N], C, S, Ym)) < 1e-10
    np.testing.assert_allclose(P.mean(Ks), mean, atol=1e-10)
    np.testing.assert_allclose(P.point_cov(Ks, jnp.diagonal(Kss)), cov, atol=1e-10)
    np.testing.assert_allclose(P.joint_cov(Ks, Kss), joint, atol=1e-10)
    _, covn, jointn = dense_masked_predict(K_all, C, S, Ym, include_noise=True)
    np.testing.assert_allclose(P.point_cov(Ks, jnp.diagonal(Kss), include_noise=True), covn, atol=1e-10)
    np.testing.assert_allclose(P.joint_cov(Ks, Kss, include_noise=True), jointn, atol=1e-10)
    # conditional mean of the missing training entries
    full = P.impute(Ym)
    miss = np.isnan(Ym)
    Kt = np.kron(C, K_all[:N, :N]) + np.kron(S, np.eye(N))
    o = ~miss.T.reshape(-1)
    cm = Kt[np.ix_(~o, o)] @ np.linalg.solve(Kt[np.ix_(o, o)], Ym.T.reshape(-1)[o])
    np.testing.assert_allclose(full.T.reshape(-1)[~o], cm, atol=1e-10)
    # nothing missing: the dense route equals the eigen route (eq. 5)
    E, M = EigenPredictor(K, C, S, Y), MaskedPredictor(K, C, S, Y)
    assert abs(E.log_likelihood - M.log_likelihood) < 1e-10
    np.testing.assert_allclose(E.mean(Ks), M.mean(Ks), atol=1e-10)
    np.testing.assert_allclose(E.point_cov(Ks, jnp.diagonal(Kss), True), M.point_cov(Ks, jnp.diagonal(Kss), True),
                               atol=1e-10)
    np.testing.assert_allclose(E.joint_cov(Ks, Kss), M.joint_cov(Ks, Kss), atol=1e-10)
    assert n == 4


@config.float64
def test_row_conditioning_matches_dense():
    K_all, C, S, _, Ym, N = _random_model()
    K, Ks, Kss = (jnp.asarray(a) for a in (K_all[:N, :N], K_all[N:, :N], K_all[N:, N:]))
    rng = np.random.default_rng(5)
    Yo = rng.normal(size=(4, 3))
    Yo[0] = np.nan  # nothing observed: the plain predictive
    Yo[1, 1:] = np.nan
    Yo[2, 0] = np.nan  # row 3: everything observed
    P = MaskedPredictor(K, C, S, Ym)
    mean0, cov0 = P.mean(Ks), P.point_cov(Ks, jnp.diagonal(Kss))
    for noise in (False, True):
        m, c = condition_on_row_outputs(mean0, cov0, S, Yo, include_noise=noise)
        dm, dc, _ = dense_masked_predict(K_all, C, S, Ym, Yo, include_noise=noise)
        np.testing.assert_allclose(m, dm, atol=1e-10)
        np.testing.assert_allclose(c, dc, atol=1e-10)
    np.testing.assert_allclose(m[0], mean0[0], atol=1e-12)  # nothing observed: the plain predictive
    np.testing.assert_allclose(c[0], cov0[0] + S, atol=1e-12)
    assert np.allclose(m[3], Yo[3]) and np.allclose(c[3], 0.0)  # y* of a measured entry: as measured


@config.float64
def test_condition_on_own_row_noise_matches_dense():
    """The training entries given the observed ones, from the latent
    predictive at the training inputs plus each row's own noise: equal to the
    dense Gaussian conditional of y given y_O (per row and joint), measured
    entries as measured with variance 0; with a diagonal Sigma the missing
    entries are f plus new noise (what predict(include_noise=True) gives)."""
    K_all, C, S, _, Ym, N = _random_model()
    Ym[1] = np.arange(3.0)  # a row with everything observed
    K = jnp.asarray(K_all[:N, :N])
    for Sig in (S, np.diag(np.diag(S))):
        P = MaskedPredictor(K, C, Sig, Ym)
        mean0, cov0 = P.mean(K), P.point_cov(K, jnp.diagonal(K))
        joint0 = P.joint_cov(K, K)
        m, c, J = condition_on_own_row_noise(mean0, cov0, Sig, Ym, joint0)
        dm, dc, dJ = dense_training_conditional(K_all[:N, :N], C, Sig, Ym)
        np.testing.assert_allclose(m, dm, atol=1e-10)
        np.testing.assert_allclose(c, dc, atol=1e-10)
        np.testing.assert_allclose(J, dJ, atol=1e-10)
        obs = ~np.isnan(Ym)
        assert np.array_equal(m[obs], Ym[obs])
        assert np.all(np.diagonal(c, axis1=1, axis2=2)[obs] == 0.0)
        np.testing.assert_allclose(c[0], cov0[0] + Sig, atol=1e-12)  # nothing observed in row 0
    # diagonal Sigma (the last one): the missing entries are the noisy predictive
    noisy = P.point_cov(K, jnp.diagonal(K), True)
    miss = np.isnan(Ym)
    np.testing.assert_allclose(m[miss], np.asarray(mean0)[miss], atol=1e-12)
    np.testing.assert_allclose(np.diagonal(c, axis1=1, axis2=2)[miss],
                               np.diagonal(np.asarray(noisy), axis1=1, axis2=2)[miss], atol=1e-12)


MODELS = {
    "ICM": lambda: ICM(rank=2, max_iter=15),
    "SigmaMT": lambda: StructuredNoiseMTGP(max_iter=15, normalize_y=True),
    "HCool": lambda: CoolMTGP(max_iter=10, n_outer=2),
    "~Cool": lambda: CoolMTGP(method="approximate", max_iter=10, normalize_y=True),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_fitted_models_are_exact_on_observed_entries(name):
    """The fitted model's likelihood, predictive (latent and noisy, per point
    and joint) and row-conditional predictive equal the dense Gaussian given
    only the observed entries, at the fitted C, Sigma and kernel."""
    X, _, Ym = _data()
    Ym[3] = np.nan  # a row with nothing observed is allowed
    model = MODELS[name]()
    if isinstance(model, CoolMTGP):
        model.MAX_IMPUTE = 3
    model.fit(X, Ym)
    assert isinstance(model._predictor, (MaskedPredictor, ComplementPredictor))  # the cheaper one
    if isinstance(model, CoolMTGP):
        assert 1 <= model.fit_info_["n_impute"] <= 3
    rng = np.random.default_rng(1)
    Xs = rng.normal(size=(4, 2))
    Xa = np.vstack([X, Xs])
    K_all = np.asarray(model.kernel_(Xa, Xa))
    mu, s = model._y_mean, model._y_std
    N = X.shape[0]
    ll = dense_masked_log_likelihood(K_all[:N, :N], model._C, model._Sigma, (Ym - mu) / s)
    ll -= np.sum((~np.isnan(Ym)).sum(axis=0) * np.log(s))
    assert abs(model.log_marginal_likelihood_ - ll) < 1e-8
    C, S = model.output_covariance_, model.noise_covariance_
    for noise in (False, True):
        pred = model.predict(Xs, full_cov=True, include_noise=noise)
        m, c, J = dense_masked_predict(K_all, C, S, Ym - mu, include_noise=noise)
        np.testing.assert_allclose(pred.mean, m + mu, atol=1e-8)
        np.testing.assert_allclose(pred.cov, c, atol=1e-8)
        np.testing.assert_allclose(pred.joint_cov, J, atol=1e-8)
        Yo = Xs[:, :1] + np.zeros((4, 3))
        Yo[0, 1:] = np.nan
        Yo[1, 0] = np.nan
        Yo[2] = np.nan
        pc = model.predict(Xs, Y_observed=Yo, include_noise=noise)
        m, c, _ = dense_masked_predict(K_all, C, S, Ym - mu, Yo - mu, include_noise=noise)
        np.testing.assert_allclose(pc.mean, m + mu, atol=1e-8)
        np.testing.assert_allclose(pc.cov, c, atol=1e-8)
    # the training entries that were not measured, given every observed one
    filled = model.predict_missing(full_cov=True)
    dm, dc, dJ = dense_training_conditional(K_all[:N, :N], C, S, Ym - mu)
    np.testing.assert_allclose(filled.mean, dm + mu, atol=1e-8)
    np.testing.assert_allclose(filled.cov, dc, atol=1e-8)
    np.testing.assert_allclose(filled.joint_cov, dJ, atol=1e-8)
    assert filled.include_noise and filled.output_names == model.output_names_
    miss = np.isnan(Ym)
    assert np.array_equal(filled.mean[~miss], Ym[~miss]) and np.all(filled.var[~miss] == 0.0)
    gap = np.max(np.abs(filled.mean - model.predict(X, include_noise=True).mean)[miss])
    if name == "ICM":  # diagonal Sigma: a new observation at x_i is the same Gaussian
        assert gap < 1e-10
    else:  # correlated noise: the measured outputs of the row inform its missing ones
        assert gap > 1e-3


def test_independent_gps_missing_outputs():
    """Each output's GP on its observed rows alone (exact, masked padding)."""
    X, _, Ym = _data()
    model = IndependentGPs(max_iter=15).fit(X, Ym)
    Xs = np.random.default_rng(2).normal(size=(3, 2))
    pred = model.predict(Xs, include_noise=True)
    N = X.shape[0]
    ll = 0.0
    for t, k in enumerate(model.kernel_):
        Xa = np.vstack([X, Xs])
        K_all = np.asarray(k(Xa, Xa))
        b, s2 = model._b[t], model._s2[t]
        m, c, _ = dense_masked_predict(K_all, [[b]], [[s2]], Ym[:, t:t + 1], include_noise=True)
        np.testing.assert_allclose(pred.mean[:, t], m[:, 0], atol=1e-8)
        np.testing.assert_allclose(pred.cov[:, t, t], c[:, 0, 0], atol=1e-8)
        ll += dense_masked_log_likelihood(K_all[:N, :N], [[b]], [[s2]], Ym[:, t:t + 1])
    assert abs(model.log_marginal_likelihood_ - ll) < 1e-8
    filled, noisy = model.predict_missing(), model.predict(X, include_noise=True)
    miss = np.isnan(Ym)
    np.testing.assert_allclose(filled.mean[miss], noisy.mean[miss], atol=1e-12)
    np.testing.assert_allclose(filled.var[miss], noisy.var[miss], atol=1e-12)
    assert np.array_equal(filled.mean[~miss], Ym[~miss]) and np.all(filled.var[~miss] == 0.0)


@config.float64
def test_make_predictor_route_and_fallback():
    """Few missing entries: the complement predictor (equal to the dense one
    at a larger size too, T = 6, N = 40); a noise covariance that is not positive definite fails the
    complement's factors, and the dense predictor (with its jitter and
    warning) is used instead."""
    rng = np.random.default_rng(5)
    N, T = 40, 6
    X = rng.normal(size=(N + 5, 2))
    K_all = np.exp(-0.5 * np.sum((X[:, None] - X[None]) ** 2, -1))
    A = rng.normal(size=(T, 2))
    C = A @ A.T + 0.05 * np.eye(T)
    S = np.diag(rng.uniform(0.05, 0.2, T))
    Ym = rng.normal(size=(N, T))
    Ym[rng.random(Ym.shape) < 0.1] = np.nan
    K, Ks, Kss = (jnp.asarray(a) for a in (K_all[:N, :N], K_all[N:, :N], K_all[N:, N:]))
    P = make_predictor(K, C, S, Ym)
    assert isinstance(P, ComplementPredictor)
    mean, cov, _ = dense_masked_predict(K_all, C, S, Ym, include_noise=True)
    assert abs(P.log_likelihood - dense_masked_log_likelihood(K_all[:N, :N], C, S, Ym)) < 1e-9
    np.testing.assert_allclose(P.mean(Ks), mean, atol=1e-9)
    np.testing.assert_allclose(P.point_cov(Ks, jnp.diagonal(Kss), include_noise=True), cov, atol=1e-9)
    S_bad = S.copy()
    S_bad[0, 0] = 0.0  # Sigma singular: A_OO stays positive definite through C, the complement cannot start
    assert not ComplementPredictor(K, C, S_bad, Ym).ok
    D = make_predictor(K, C, S_bad, Ym)
    assert isinstance(D, MaskedPredictor)
    oracle = dense_masked_log_likelihood(K_all[:N, :N], C, S_bad, Ym)  # A_OO is nearly singular there
    assert abs(D.log_likelihood - oracle) < 1e-6 * abs(oracle)


@pytest.mark.parametrize("noise", [1e-4, 1e-6])
@config.float64
def test_complement_predictor_keeps_its_digits_at_small_noise(noise):
    """A smooth kernel on 1-D inputs and a noise of 1e-4 / 1e-6 (whitened
    eigenvalues up to 4e8): the complement's covariances equal the dense
    predictor's to 1e-7 relative. The first form of it (the missing entries'
    columns of cov(f*, y) zeroed) cancelled terms of order 1/noise and was
    3e-3 off at 1e-6."""
    rng = np.random.default_rng(0)
    N, T = 100, 4
    X = np.sort(rng.uniform(0, 10, N + 5))[:, None]
    K_all = np.exp(-0.5 * ((X - X.T) / 2.0) ** 2)
    A = rng.normal(size=(T, T))
    C = A @ A.T + 0.01 * np.eye(T)
    S = noise * np.eye(T)
    f = np.linalg.cholesky(np.kron(C, K_all[:N, :N]) + 1e-9 * np.eye(N * T)) @ rng.normal(size=N * T)
    Ym = f.reshape(T, N).T + np.sqrt(noise) * rng.normal(size=(N, T))
    Ym[rng.random(Ym.shape) < 0.1] = np.nan
    K, Ks = jnp.asarray(K_all[:N, :N]), jnp.asarray(K_all[N:, :N])
    comp, dense = ComplementPredictor(K, C, S, Ym), MaskedPredictor(K, C, S, Ym)
    assert comp.ok
    for include_noise in (False, True):
        a, b = comp.point_cov(Ks, jnp.ones(5), include_noise), dense.point_cov(Ks, jnp.ones(5), include_noise)
        assert np.max(np.abs(a - b)) < 1e-7 * np.max(np.abs(b))
        da, db = (np.diagonal(v, axis1=1, axis2=2) for v in (a, b))
        np.testing.assert_allclose(da, db, rtol=1e-6)
        Kss = jnp.asarray(K_all[N:, N:])
        a, b = comp.joint_cov(Ks, Kss, include_noise), dense.joint_cov(Ks, Kss, include_noise)
        assert np.max(np.abs(a - b)) < 1e-7 * np.max(np.abs(b))
        np.testing.assert_allclose(np.diagonal(a), np.diagonal(b), rtol=1e-6)


def test_complement_joint_cov_needs_no_dense_factorisation(monkeypatch):
    """``full_cov`` through the complement never builds the |O| x |O|
    Cholesky: with MaskedPredictor made to fail, it still equals the dense
    Gaussian conditional."""
    K_all, C, S, _, Ym, N = _random_model()
    K, Ks, Kss = (jnp.asarray(a) for a in (K_all[:N, :N], K_all[N:, :N], K_all[N:, N:]))
    P = ComplementPredictor(K, C, S, Ym)

    def refuse(*args, **kwargs):
        raise AssertionError("the dense predictor was built")

    monkeypatch.setattr(MaskedPredictor, "__init__", refuse)
    _, _, joint = dense_masked_predict(K_all, C, S, Ym, include_noise=True)
    np.testing.assert_allclose(P.joint_cov(Ks, Kss, include_noise=True), joint, atol=1e-10)


def test_few_missing_fit_predicts_through_the_complement():
    """An ICM fit with 10% missing predicts through the complement predictor,
    equal to the dense predictor at the fitted parameters."""
    X, Y, _ = _data()
    Ym = Y.copy()
    Ym[np.random.default_rng(2).random(Y.shape) < 0.1] = np.nan
    model = ICM(max_iter=5).fit(X, Ym)
    assert isinstance(model._predictor, ComplementPredictor)
    K = model.kernel_(X, X)
    dense = MaskedPredictor(K, model._C, model._Sigma, model._Y)
    assert abs(model._ll_internal - dense.log_likelihood) < 1e-9
    Ks = model.kernel_(X[:5], X)
    np.testing.assert_allclose(model._predictor.mean(Ks), dense.mean(Ks), atol=1e-9)
    np.testing.assert_allclose(model._predictor.point_cov(Ks, jnp.ones(5), True), dense.point_cov(Ks, jnp.ones(5), True),
                               atol=1e-9)


def test_nothing_missing_keeps_the_eigen_route():
    X, Y, _ = _data()
    model = ICM(max_iter=5).fit(X, Y)
    assert isinstance(model._predictor, EigenPredictor)


def test_missing_outputs_bad_input_and_api():
    X, _, Ym = _data()
    Yb = Ym.copy()
    Yb[:, 1] = np.nan
    Yb[0, 1] = 1.0
    with pytest.raises(DataError, match="fewer than 2 observed"):
        ICM(max_iter=2).fit(X, Yb)
    names = ["a", "b", "c"]
    model = ICM(max_iter=5).fit(X, pd.DataFrame(Ym, columns=names))
    Xs = X[:3]
    Yo = np.array([[1.0, np.nan, 0.5], [np.nan] * 3, [0.2, 0.1, np.nan]])
    ref = model.predict(Xs, Y_observed=Yo)
    shuffled = pd.DataFrame(Yo, columns=names)[["c", "a", "b"]]
    np.testing.assert_allclose(model.predict(Xs, Y_observed=shuffled).mean, ref.mean)
    with pytest.raises(DataError, match="shape"):
        model.predict(Xs, Y_observed=Yo[:2])
    with pytest.raises(DataError, match=r"not the fitted outputs .*unknown \['z'\]"):
        model.predict(Xs, Y_observed=pd.DataFrame(Yo, columns=["a", "b", "z"]))
    with pytest.raises(DataError, match="repeated"):
        model.predict(Xs, Y_observed=pd.DataFrame(Yo, columns=["a", "b", "a"]))
    # X and Y_observed frames whose indexes disagree: matched by position, with a warning at the caller
    Xf = pd.DataFrame(Xs, index=[10, 11, 12])
    with pytest.warns(UserWarning, match=r"X and Y_observed have different row indexes") as rec:
        model.predict(Xf, Y_observed=pd.DataFrame(Yo, columns=names, index=[12, 11, 10]))
    assert rec[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(Xf, Y_observed=pd.DataFrame(Yo, columns=names, index=[10, 11, 12]))
    # a frame with only the measured outputs: the others were not measured
    only = pd.DataFrame({"c": [0.5, np.nan, np.nan], "a": [1.0, np.nan, 0.2]})
    full = np.column_stack([only["a"], np.full(3, np.nan), only["c"]])
    np.testing.assert_array_equal(model.predict(Xs, Y_observed=only).mean, model.predict(Xs, Y_observed=full).mean)
    with pytest.raises(ValueError, match="no joint covariance"):
        model.predict(Xs, Y_observed=Yo, full_cov=True)
    # a row with nothing observed is the plain predictive
    np.testing.assert_allclose(ref.mean[1], model.predict(Xs).mean[1], atol=1e-12)
    # score on partly missing Y: each output's R^2 on its observed rows
    assert np.isfinite(model.score(X, Ym))


def test_save_load_with_missing_outputs(tmp_path):
    X, _, Ym = _data()
    model = StructuredNoiseMTGP(max_iter=5).fit(X, Ym)
    back = StructuredNoiseMTGP.load(model.save(tmp_path / "m"))
    Xs = X[:4]
    np.testing.assert_allclose(back.predict(Xs).cov, model.predict(Xs).cov, atol=1e-12)
    assert back.log_marginal_likelihood_ == pytest.approx(model.log_marginal_likelihood_, abs=1e-10)


def test_predict_missing_with_nothing_missing_and_after_load(tmp_path):
    """Nothing missing: Y back, variance 0. A loaded model gives the same
    conditional of its missing entries."""
    X, Y, Ym = _data(N=16)
    full = CoolMTGP(max_iter=5).fit(X, Y).predict_missing()
    assert np.array_equal(full.mean, Y) and np.all(full.cov == 0.0)
    model = StructuredNoiseMTGP(max_iter=10).fit(X, Ym)
    path = model.save(tmp_path / "sigma")
    a, b = model.predict_missing(), StructuredNoiseMTGP.load(path).predict_missing()
    np.testing.assert_allclose(b.mean, a.mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(b.cov, a.cov, rtol=0, atol=1e-12)
    assert np.isnan(Ym).any() and np.all(b.var[np.isnan(Ym)] > 0)


def test_predictions_keep_the_callers_row_labels(tmp_path):
    """A DataFrame's index labels ``to_frame``'s rows: the training table's
    for ``predict_missing`` (so ``to_frame(False)`` is that table filled in,
    through save/load), X's for ``predict``; arrays give 0..n-1."""
    X, _, Ym = _data(N=16)
    labels = pd.Index([f"sample {i}" for i in range(16)], name="sample")
    Xd = pd.DataFrame(X, columns=["p", "q"], index=labels)
    Yd = pd.DataFrame(Ym, columns=["a", "b", "c"], index=labels)
    model = StructuredNoiseMTGP(max_iter=5).fit(Xd, Yd)
    filled = model.predict_missing().to_frame(include_std=False)
    assert filled.index.equals(labels) and list(filled.columns) == ["a", "b", "c"]
    observed = Yd.notna()
    assert filled[observed].equals(Yd[observed]) and filled.notna().all().all()
    back = StructuredNoiseMTGP.load(model.save(tmp_path / "m")).predict_missing().to_frame(False)
    assert back.index.equals(labels)
    pd.testing.assert_frame_equal(back, filled, check_exact=False, atol=1e-12, rtol=0, check_index_type=False)
    rows = Xd.iloc[[5, 2, 9]]
    assert model.predict(rows).to_frame().index.equals(rows.index)
    assert model.predict(rows, Y_observed=Yd.iloc[[5, 2, 9]]).to_frame().index.equals(rows.index)
    assert model.predict(rows.to_numpy()).to_frame().index.equals(pd.RangeIndex(3))


@pytest.mark.parametrize("index", [
    pd.date_range("2024-03-30", periods=12, freq="h", tz="Europe/Paris", name="when"),  # a DST change
    pd.MultiIndex.from_arrays([np.repeat([1, 2, 3], 4), [f"r{i}" for i in range(12)]], names=["plate", "well"]),
    pd.Index(np.arange(12) * 2.5), pd.RangeIndex(100, 112)], ids=["tz-datetime", "multi", "float", "range"])
def test_saved_row_index_round_trips(tmp_path, index):
    X, _, Ym = _data(N=12)
    model = ICM(max_iter=3).fit(pd.DataFrame(X, index=index), pd.DataFrame(Ym, index=index))
    back = ICM.load(model.save(tmp_path / "m")).predict_missing().index
    assert back.equals(index) and list(back.names) == list(index.names)
    assert getattr(back, "tz", None) == getattr(index, "tz", None)


def test_unsaveable_row_index_is_reported_at_save(tmp_path):
    X, _, Ym = _data(N=12)
    index = pd.Index([1, "a"] * 6)
    model = ICM(max_iter=3).fit(pd.DataFrame(X, index=index), pd.DataFrame(Ym, index=index))
    with pytest.warns(UserWarning, match=r"row index is not saved \(level 0 holds int, str values") as caught:
        path = model.save(tmp_path / "m")
    assert caught[0].filename == __file__
    assert ICM.load(path).predict_missing().index is None
