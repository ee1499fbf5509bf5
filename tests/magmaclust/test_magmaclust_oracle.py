"""Oracle tests of MagmaClust (shared/MAGMACLUST.md, Sec. 7): K = 1 is Magma,
the VE step equals the dense formula with explicit weights, the ELBO never
decreases, is a lower bound of the exact (enumerated) log-likelihood, and
relabelling changes nothing."""

import itertools

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import mtgp
from mtgp.kernels import SE
from mtgp.magmaclust import numerics as cx
from mtgp.testing import DenseMagma, dense_kernel

RTOL = 1e-8


def clustered_data(seed=0, M=6, lattice=8, n=4, K=2, sep=6.0, uneven=True):
    """M individuals on subsets of a fixed lattice (so the pooled grid and
    the shapes repeat across seeds), K well-separated group levels."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, 10.0, lattice)
    rows = []
    for i in range(M):
        k = i % K
        t = np.sort(rng.choice(grid, n, replace=False)) if uneven else grid[:n]
        y = sep * k + np.sin(t + k) + 0.3 * rng.standard_normal(n)
        rows.append(pd.DataFrame({"ID": f"i{i}", "Input": t, "Output": y}))
    return pd.concat(rows, ignore_index=True)


def as_pairs(df):
    return [(g["Input"].to_numpy()[:, None], g["Output"].to_numpy()) for _, g in df.groupby("ID", sort=False)]


# ------------------------------------------------------------ (1) K = 1 is Magma

@pytest.mark.parametrize("shared_i", [True, False])
def test_one_cluster_equals_magma(shared_i):
    sim = mtgp.simulate(n_individuals=6, n_points=5, n_grid=25, common_grid=False, seed=3)
    k0, ki = SE(20.0, 2.0), SE(4.0, 1.0)
    prior = lambda X: 0.3 * X[:, 0] + 2.0
    Xp = np.linspace(-1, 11, 7)[:, None]
    new = sim.data[sim.data.ID == "ID1"].iloc[:3]
    # fixed HPs: ELBO = exact log-likelihood, same hyper-posterior, same predictions
    mc = mtgp.MagmaClust(1, k0, ki, shared_individual_hp=shared_i, noise=0.5, prior_mean=prior,
                         max_iter=0).fit(sim.data)
    mg = mtgp.Magma(k0, ki, common_hp=shared_i, noise=0.5, prior_mean=prior).fit(sim.data, optimize=False)
    assert mc.elbo_ == pytest.approx(mg.log_likelihood_, rel=1e-10)
    hp, = mc.hyperposterior(Xp)
    ref = mg.hyperposterior(Xp)
    np.testing.assert_allclose(hp.mean, ref.mean, rtol=RTOL, atol=1e-9)
    np.testing.assert_allclose(hp.cov, ref.cov, rtol=RTOL, atol=1e-9)
    th = {"kernel": ki.init_params(), "log_noise": jnp.log(0.5)}
    p, q = mc.predict(new, inputs=Xp, hyperparameters=th), mg.predict(new, inputs=Xp, hyperparameters=th)
    np.testing.assert_allclose(p.mean, q.mean, rtol=RTOL, atol=1e-9)
    np.testing.assert_allclose(p.cov, q.cov, rtol=RTOL, atol=1e-9)
    assert p.cluster_probabilities == pytest.approx([1.0])
    # training: the same EM trajectory (the same steps: individual HPs, then gamma by ECME)
    mc = mtgp.MagmaClust(1, k0, ki, shared_individual_hp=shared_i, noise=0.5, prior_mean=prior,
                         max_iter=4, tol=1e-12).fit(sim.data)
    mg = mtgp.Magma(k0, ki, common_hp=shared_i, noise=0.5, prior_mean=prior, max_iter=4,
                    tol=1e-12).fit(sim.data)
    np.testing.assert_allclose(mc.history_, mg.history_, rtol=1e-8)
    hp, = mc.hyperposterior(Xp)
    np.testing.assert_allclose(hp.mean, mg.hyperposterior(Xp).mean, rtol=1e-6, atol=1e-6)
    # and at MagmaClust's fitted HPs, Magma's exact log-likelihood is its ELBO
    mg2 = mtgp.Magma(mc.mean_kernels_[0], mc.individual_kernel_, common_hp=True, noise=mc.noise_,
                     prior_mean=prior).fit(sim.data, optimize=False) if shared_i else None
    if mg2 is not None:
        assert mc.elbo_ == pytest.approx(mg2.log_likelihood_, rel=1e-10)


# ----------------------------------------------- (2) VE step against the dense formula

def dense_cluster_posterior(C_full, m_full, grid_pos, data, kis, noises, w):
    """(C^-1 + S)^-1 (C^-1 m + b) on the union grid; data touch only
    ``grid_pos`` (indices of the training grid in the union)."""
    n = C_full.shape[0]
    S, b = np.zeros((n, n)), np.zeros(n)
    for (X, y), ki, s, wi in zip(data, kis, noises, w):
        Pinv = np.linalg.inv(dense_kernel(ki, X, X) + s * np.eye(len(y)))
        pos = [grid_pos[float(x)] for x in X[:, 0]]
        S[np.ix_(pos, pos)] += wi * Pinv
        b[pos] += wi * Pinv @ y
    Ci = np.linalg.inv(C_full)
    Ch = np.linalg.inv(Ci + S)
    return Ch @ (Ci @ m_full + b), Ch


def ragged_data(seed, sizes, lattice=8):
    """Individuals of different sizes (several padding buckets)."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, 10.0, lattice)
    rows = []
    for i, n in enumerate(sizes):
        t = np.sort(rng.choice(grid, n, replace=False))
        rows.append(pd.DataFrame({"ID": f"i{i}", "Input": t, "Output": 2 * (i % 2) + np.cos(t)
                                  + 0.2 * rng.standard_normal(n)}))
    return pd.concat(rows, ignore_index=True)


@pytest.mark.parametrize("ragged", [False, True])
def test_ve_step_matches_dense_with_weights(ragged):
    df = ragged_data(4, [1, 2, 3, 5, 7]) if ragged else clustered_data(seed=1, M=5, lattice=6, n=3)
    data = as_pairs(df)
    M, K = 5, 3
    rng = np.random.default_rng(0)
    tau = np.zeros((M, K))
    tau[[0, 1], 2] = [0.7, 0.2]  # cluster 2 sees only individuals 0 and 1: S_2 singular
    f = rng.uniform(size=M)
    tau[:, 0] = f * (1.0 - tau[:, 2])
    tau[:, 1] = 1.0 - tau[:, 0] - tau[:, 2]
    tau[3] = [1.0, 0.0, 0.0]
    k0, ki, noise = SE(3.0, 1.5), SE(1.0, 0.8), 0.3
    mc = mtgp.MagmaClust(K, k0, ki, noise=noise, prior_mean=1.0, init_responsibilities=tau,
                         max_iter=0).fit(df)
    grid = mc.grid_[:, 0]
    Xn = np.array([-1.0, 3.3, 7.1])
    union = np.concatenate([Xn, grid])
    pos = {float(t): len(Xn) + j for j, t in enumerate(grid)}
    C = dense_kernel(k0, union[:, None], union[:, None])
    hps = mc.hyperposterior(union[:, None])
    for k in range(K):
        m_ref, C_ref = dense_cluster_posterior(C, np.ones(len(union)), pos, data, [ki] * M, [noise] * M,
                                               tau[:, k])
        np.testing.assert_allclose(hps[k].mean, m_ref, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(hps[k].cov, C_ref, rtol=1e-7, atol=1e-8)
    # the collapsed ELBO equals the dense ELBO (note, 2.5) at the E-step optimum
    E = cx.expected_terms(mc._static.ki, True, mc.theta_, mc._data, mc.posterior_)
    dense = cx.dense_elbo(mc.posterior_, mc._static.k0, mc.theta0_, mc._data.grid, np.ones(len(grid)),
                          jnp.asarray(tau), jnp.asarray(mc.mixture_weights_), E)
    assert mc.elbo_ == pytest.approx(dense, rel=1e-9)


def test_empty_cluster_is_the_prior_and_warned():
    df = clustered_data(seed=2, M=4, lattice=6, n=3)
    tau = np.zeros((4, 3))
    tau[:, 0] = [1, 0, 1, 0]
    tau[:, 1] = [0, 1, 0, 1]
    k0 = SE(3.0, 1.5)
    with pytest.warns(RuntimeWarning, match="cluster 2 is empty"):
        mc = mtgp.MagmaClust(3, k0, SE(), init_responsibilities=tau, max_iter=3,
                             shared_mean_hp=False).fit(df)
    assert np.all(np.isfinite(mc.responsibilities_.to_numpy()))
    assert mc.mixture_weights_[2] == 0.0 and np.isfinite(mc.elbo_)
    hp = mc.hyperposterior(np.array([0.0, 5.0]))[2]
    np.testing.assert_allclose(hp.mean, 0.0, atol=1e-12)
    np.testing.assert_allclose(hp.cov, dense_kernel(k0, [[0.0], [5.0]], [[0.0], [5.0]]), atol=1e-10)
    pred = mc.predict(df[df.ID == "i0"], inputs=np.linspace(0, 10, 4))
    assert pred.cluster_probabilities[2] == 0.0 and np.all(np.isfinite(pred.mean))


# --------------------------------------------------- (3) + (4) monotone ELBO, rows sum to one

SETTINGS = [(True, True), (False, True), (True, False), (False, False)]


@pytest.mark.parametrize("setting", range(4), ids=["H_oo", "H_ko", "H_oi", "H_ki"])
def test_elbo_never_decreases_random_problems(setting):
    # 20 random problems in all: 5 per hyper-parameter setting
    for seed in range(setting, 20, 4):
        shared_k, shared_i = SETTINGS[setting]
        df = clustered_data(seed=seed, M=6, lattice=7, n=4, sep=float(seed % 3) * 3.0)
        rng = np.random.default_rng(100 + seed)
        tau0 = rng.dirichlet(np.ones(2), 6)
        mc = mtgp.MagmaClust(2, SE(float(rng.uniform(0.5, 5)), float(rng.uniform(0.5, 3))),
                             SE(float(rng.uniform(0.5, 3)), 1.0), shared_mean_hp=shared_k,
                             shared_individual_hp=shared_i, noise=float(rng.uniform(0.1, 1)),
                             init_responsibilities=tau0, max_iter=3, tol=1e-14,
                             freeze_first=bool(seed % 2), m_step_max_iter=15).fit(df)
        h = mc.history_
        assert np.all(np.isfinite(h))
        assert np.all(np.diff(h) >= -1e-8 * np.abs(h[1:])), (seed, h)
        tau = mc.responsibilities_.to_numpy()
        np.testing.assert_allclose(tau.sum(axis=1), 1.0, atol=1e-12)
        assert np.all(tau >= 0)


# ------------------------------------------------------------ (5) relabelling

@pytest.mark.parametrize("shared_k", [True, False])
def test_relabelling_leaves_predictions_unchanged(shared_k):
    df = clustered_data(seed=5, M=6, lattice=7, n=4, K=3, sep=4.0)
    rng = np.random.default_rng(1)
    tau0 = rng.dirichlet(np.ones(3), 6)
    perm = [2, 0, 1]
    kw = dict(mean_kernel=SE(2.0, 2.0), shared_mean_hp=shared_k, max_iter=3, m_step_max_iter=15)
    a = mtgp.MagmaClust(3, init_responsibilities=tau0, **kw).fit(df)
    b = mtgp.MagmaClust(3, init_responsibilities=tau0[:, perm], **kw).fit(df)
    assert a.elbo_ == pytest.approx(b.elbo_, rel=1e-9)
    np.testing.assert_allclose(a.responsibilities_.to_numpy()[:, perm], b.responsibilities_.to_numpy(),
                               atol=1e-7)
    Xp = np.linspace(0, 10, 6)
    pa, pb = a.predict(df[df.ID == "i1"], inputs=Xp), b.predict(df[df.ID == "i1"], inputs=Xp)
    np.testing.assert_allclose(pa.mean, pb.mean, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(pa.var, pb.var, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(pa.cluster_probabilities[perm], pb.cluster_probabilities, atol=1e-8)


# ------------------------------------------- (6) ELBO <= exact log-likelihood (enumeration)

def exact_loglik(model, data):
    """log p(y) = logsumexp over the K^M labellings of
    sum_i log pi_{z_i} + sum_k log p_Magma({y_i : z_i = k}) (dense)."""
    K, M = model.n_clusters, len(data)
    ki, s = model.individual_kernel_, model.noise_
    prior = lambda X: np.zeros(len(X))
    logpi = np.log(model.mixture_weights_)
    terms = []
    for z in itertools.product(range(K), repeat=M):
        t = sum(logpi[zi] for zi in z)
        for k in range(K):
            sub = [data[i] for i in range(M) if z[i] == k]
            if sub:
                t += DenseMagma(model.mean_kernels_[k], [ki] * len(sub), [s] * len(sub), sub, prior).loglik()
        terms.append(t)
    terms = np.array(terms)
    return terms.max() + np.log(np.exp(terms - terms.max()).sum())


def test_elbo_is_a_lower_bound_and_tight_at_convergence():
    df = clustered_data(seed=7, M=4, lattice=6, n=4, K=2, sep=8.0)
    data = as_pairs(df)
    mc = mtgp.MagmaClust(2, SE(2.0, 2.0), SE(0.5, 1.0), noise=0.1, shared_mean_hp=False, max_iter=15,
                         tol=1e-10).fit(df)
    ll = exact_loglik(mc, data)
    assert mc.elbo_ <= ll + 1e-9
    assert ll - mc.elbo_ < 1e-3  # separated clusters: tau ~ 0/1, q(mu) exact given Z
    # not at convergence (soft responsibilities, initial HPs): a strict bound
    tau0 = np.full((4, 2), 0.5)
    tau0[0] = [0.6, 0.4]
    mc0 = mtgp.MagmaClust(2, SE(2.0, 2.0), SE(0.5, 1.0), noise=0.1, init_responsibilities=tau0,
                          max_iter=0).fit(df)
    assert mc0.elbo_ < exact_loglik(mc0, data) - 1e-3


# ----------------------------------------------------- (7) mixture quantiles

def test_mixture_interval_is_exact():
    rng = np.random.default_rng(0)
    X = np.linspace(0, 1, 5)[:, None]
    comps = []
    for k in range(3):
        A = rng.standard_normal((5, 5))
        comps.append(mtgp.Prediction(X, rng.normal(0, 5, 5), A @ A.T * (0.1 + k)))
    mix = mtgp.distributions.MixtureOfGaussians(comps, [0.2, 0.5, 0.3])
    for level in (0.5, 0.9, 0.95):
        lo, hi = mix.interval(level)
        np.testing.assert_allclose(mix.cdf(lo), (1 - level) / 2, atol=1e-10)
        np.testing.assert_allclose(mix.cdf(hi), (1 + level) / 2, atol=1e-10)
    # moments and the sampler
    d = np.stack([c.mean for c in comps]) - mix.mean
    np.testing.assert_allclose(mix.var, np.diagonal(mix.cov))
    np.testing.assert_allclose(mix.mean, 0.2 * comps[0].mean + 0.5 * comps[1].mean + 0.3 * comps[2].mean)
    draws = mix.sample(40000, seed=1)
    np.testing.assert_allclose(draws.mean(axis=0), mix.mean, atol=0.1 * np.sqrt(mix.var.max()))
    # one component: the Gaussian interval
    one = mtgp.distributions.MixtureOfGaussians([comps[0]], [1.0])
    for a, b in zip(one.interval(0.9), comps[0].interval(0.9)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    frame = mix.to_frame()
    assert list(frame.columns) == ["Input", "Mean", "Var", "Lower", "Upper"]


@pytest.mark.parametrize("shared_k,shared_i", [(True, True), (False, False)])
def test_each_sub_step_increases_the_elbo(shared_k, shared_i):
    """tau, pi, q(mu), individual HPs, gamma: each a coordinate ascent on the
    ELBO (dense form of the note, 2.5, for non-optimal q)."""
    from mtgp.backends import Local
    from mtgp.magmaclust.numerics import ClustParams

    df = clustered_data(seed=11, M=5, lattice=6, n=3, sep=3.0)
    tau0 = np.random.default_rng(2).dirichlet(np.ones(2), 5)
    mc = mtgp.MagmaClust(2, SE(3.0, 1.5), SE(1.0, 1.0), noise=0.3, init_responsibilities=tau0,
                         shared_mean_hp=shared_k, shared_individual_hp=shared_i, max_iter=0).fit(df)
    st, data, be = mc._static, mc._data, Local()
    grid, m = data.grid, np.asarray(data.m0)
    p = ClustParams(mc.theta0_, mc.theta_, jnp.asarray(mc.mixture_weights_))
    post = mc.posterior_
    E = lambda th, q: cx.expected_terms(st.ki, shared_i, th, data, q)
    dense = lambda q, th0, th, tau, pi: cx.dense_elbo(q, st.k0, th0, grid, m, tau, pi, E(th, q))
    steps = [mc.elbo_]
    tau = cx.responsibilities(E(p.theta, post), p.pi)
    steps.append(dense(post, p.theta0, p.theta, tau, p.pi))
    pi = jnp.mean(tau, axis=0)
    steps.append(dense(post, p.theta0, p.theta, tau, pi))
    p = ClustParams(p.theta0, p.theta, pi)
    post, v = mtgp.magmaclust.em.e_step(be, data, st, p, data, tau)
    steps.append(v)
    theta = cx.individual_m_step(st, p.theta, data, post, tau)
    steps.append(dense(post, p.theta0, theta, tau, pi))
    sums = cx.cluster_sums(be, data, st, theta, data.m0, tau)
    theta0 = cx.mean_m_step(st, p.theta0, grid, sums[0], sums[1], np.ones(2, bool))
    _, v = mtgp.magmaclust.em.e_step(be, data, st, ClustParams(theta0, theta, pi), data, tau, sums)
    steps.append(v)
    steps = np.array(steps)
    assert np.all(np.diff(steps) >= -1e-9 * np.abs(steps[1:])), steps
    assert steps[-1] > steps[0] + 1e-3
