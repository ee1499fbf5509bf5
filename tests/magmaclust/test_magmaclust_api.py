"""MagmaClust's estimator API: conventions, attributes, the four settings,
several starts, k-means start, prediction types, errors."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError

import mtgp
from mtgp.kernels import SE
from mtgp.magmaclust.estimator import kmeans_responsibilities


def two_groups(seed=0, M=8, n=5):
    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 10, 9)
    rows = []
    for i in range(M):
        k = i % 2
        t = np.sort(rng.choice(grid, n, replace=False))
        y = 10.0 * k + 2 * np.sin(t) * (1 - 2 * k) + 0.2 * rng.standard_normal(n)
        rows.append(pd.DataFrame({"ID": f"ind{i}", "Input": t, "Output": y}))
    return pd.concat(rows, ignore_index=True)


def test_estimator_protocol():
    kernel = SE(2.0, 3.0)
    est = mtgp.MagmaClust(n_clusters=2, mean_kernel=kernel)
    params = est.get_params(deep=False)
    assert "n_init" in params and "random_state" in params and params["mean_kernel"] is kernel
    twin = clone(est)
    twin.set_params(n_init=3)
    assert twin.n_init == 3 and est.n_init == 1
    with pytest.raises(mtgp.NotFittedError) as info:
        est.predict()
    assert isinstance(info.value, SklearnNotFittedError)
    assert not any(k.endswith("_") and not k.startswith("_") for k in vars(est))


def test_fit_attributes_and_predict():
    df = two_groups()
    m = mtgp.MagmaClust(2, max_iter=5, n_init=2, random_state=0).fit(df)
    tau = m.responsibilities_
    assert list(tau.index) == [f"ind{i}" for i in range(8)] and list(tau.columns) == [0, 1]
    np.testing.assert_allclose(tau.sum(axis=1), 1.0)
    # the two groups are found (up to labels)
    lab = m.clusters_.to_numpy()
    assert len(set(lab[0::2])) == 1 and len(set(lab[1::2])) == 1 and lab[0] != lab[1]
    np.testing.assert_allclose(m.mixture_weights_, tau.mean(axis=0))
    assert m.elbo_ == m.history_[-1] and np.all(np.diff(m.history_) >= -1e-8 * abs(m.elbo_))
    info = m.fit_info_
    assert info["n_init"] == 2 and len(info["elbo_per_start"]) == 2
    assert m.elbo_ == max(info["elbo_per_start"])
    assert info["elbo_package"] == pytest.approx(m.elbo_ - 2 * len(m.grid_) / 2 * (1 + np.log(2 * np.pi)))
    assert m.n_parameters_ == 2 + 3 + 1 and m.vbic_ == pytest.approx(m.elbo_ - 3 * np.log(8))
    hps = m.hyperposterior(np.linspace(0, 10, 4))
    assert len(hps) == 2 and all(isinstance(h, mtgp.Prediction) for h in hps)
    new = df[df.ID == "ind1"].iloc[:3]
    pred = m.predict(new, inputs=np.linspace(0, 10, 6))
    assert pred.cluster_probabilities[lab[1]] > 0.99
    assert len(pred.components) == 2 and pred.mean.shape == (6,)
    lo, hi = pred.interval(0.95)
    assert np.all(lo < pred.mean) and np.all(pred.mean < hi)
    assert pred.sample(3, seed=0).shape == (3, 6)
    assert list(pred.to_frame().columns) == ["Input", "Mean", "Var", "Lower", "Upper"]
    # Type II: the pi-weighted mixture
    p2 = m.predict(inputs=np.linspace(0, 10, 3))
    np.testing.assert_allclose(p2.cluster_probabilities, m.mixture_weights_)
    # a one-hot mixture is its component
    one = mtgp.distributions.MixtureOfGaussians(pred.components, np.eye(2)[lab[1]])
    np.testing.assert_allclose(one.mean, pred.components[lab[1]].mean)
    np.testing.assert_allclose(one.var, pred.components[lab[1]].var)


@pytest.mark.parametrize("shared_k,shared_i", [(False, True), (True, False), (False, False)])
def test_other_settings(shared_k, shared_i):
    df = two_groups(seed=1)
    m = mtgp.MagmaClust(2, shared_mean_hp=shared_k, shared_individual_hp=shared_i, max_iter=3,
                        m_step_max_iter=20).fit(df)
    assert np.all(np.isfinite(m.history_)) and np.all(np.diff(m.history_) >= -1e-8 * abs(m.elbo_))
    assert len(m.mean_kernels_) == 2 and len(m.hyperparameters_) == 8
    M, K = 8, 2
    assert m.n_parameters_ == 2 * (1 if shared_k else K) + 3 * (1 if shared_i else M) + K - 1
    pred = m.predict(df[df.ID == "ind2"].iloc[:4], inputs=np.linspace(0, 10, 5))
    assert np.all(np.isfinite(pred.mean)) and np.all(np.isfinite(pred.var))
    assert set(pred.hyperparameters) == {"variance", "lengthscale", "noise"}


def test_kmeans_start_and_errors():
    outs = [np.array([0.0, 1.0]), np.array([10.0, 11.0]), np.array([0.2, 0.9]), np.array([10.5, 9.8])]
    tau = kmeans_responsibilities(outs, 2, random_state=0)
    assert tau.shape == (4, 2) and set(np.unique(tau)) == {0.0, 1.0}
    assert (tau[0] == tau[2]).all() and (tau[1] == tau[3]).all() and not (tau[0] == tau[1]).all()
    df = two_groups(M=4)
    with pytest.raises(mtgp.DataError, match="shape"):
        mtgp.MagmaClust(2, init_responsibilities=np.ones((3, 2)) / 2).fit(df)
    with pytest.raises(mtgp.DataError, match="summing to one"):
        mtgp.MagmaClust(2, init_responsibilities=np.ones((4, 2))).fit(df)
    with pytest.raises(mtgp.DataError, match="exceeds"):
        mtgp.MagmaClust(5).fit(df)
    with pytest.raises(ValueError, match="n_clusters"):
        mtgp.MagmaClust(0).fit(df)


def test_cluster_probabilities_are_bayes_rule():
    """tau_*k ∝ pi_k N(y_*; m_hat_k(t_*), C_hat_k(t_*) + Psi_*), from the
    hyper-posteriors and dense Gaussians; components: dense conditioning."""
    from scipy.stats import multivariate_normal

    df = two_groups(seed=3)
    m = mtgp.MagmaClust(2, max_iter=3).fit(df)
    new = df[df.ID == "ind3"].iloc[:3]
    Xo, yo = new[["Input"]].to_numpy(), new["Output"].to_numpy()
    Xp = np.array([[1.5], [8.0]])
    pred = m.predict(new, inputs=Xp)
    ki, s2 = m.individual_kernel_, m.noise_
    Xa = np.vstack([Xp, Xo])
    logp = []
    for k, h in enumerate(m.hyperposterior(Xa)):
        G = h.cov + np.asarray(ki(Xa, Xa)) + s2 * np.eye(len(Xa))
        logp.append(np.log(m.mixture_weights_[k]) + multivariate_normal(h.mean[2:], G[2:, 2:]).logpdf(yo))
        A = G[:2, 2:] @ np.linalg.inv(G[2:, 2:])
        np.testing.assert_allclose(pred.components[k].mean, h.mean[:2] + A @ (yo - h.mean[2:]), rtol=1e-8)
        np.testing.assert_allclose(pred.components[k].cov, G[:2, :2] - A @ G[2:, :2], rtol=1e-7, atol=1e-9)
    logp = np.array(logp)
    np.testing.assert_allclose(pred.cluster_probabilities, np.exp(logp - np.logaddexp.reduce(logp)),
                               rtol=1e-8, atol=1e-12)


def test_select_n_clusters_by_vbic():
    from mtgp.magmaclust import select_n_clusters

    df = two_groups(seed=4, M=8)
    best, table = select_n_clusters(df, n_clusters=[1, 2], max_iter=4)
    assert list(table.index) == [1, 2]
    np.testing.assert_allclose(table["vbic"], table["elbo"] - table["df"] / 2 * np.log(8))
    assert best.n_clusters == int(table["vbic"].idxmax())


@pytest.mark.parametrize("shared_i", [True, False])
def test_save_load_round_trip(tmp_path, shared_i):
    df = two_groups(seed=5)
    m = mtgp.MagmaClust(2, shared_mean_hp=False, shared_individual_hp=shared_i, prior_mean=1.5,
                        max_iter=3).fit(df)
    path = m.save(tmp_path / "clust")
    m2 = mtgp.MagmaClust.load(path)
    assert m2.get_params()["n_clusters"] == 2 and m2.shared_individual_hp is shared_i
    assert m2.fit_info_["elbo_at_load"] == pytest.approx(m.elbo_, rel=1e-12)
    np.testing.assert_allclose(m2.history_, m.history_)
    pd.testing.assert_frame_equal(m2.responsibilities_, m.responsibilities_)
    Xp = np.linspace(0, 10, 5)
    new = df[df.ID == "ind0"].iloc[:3]
    a, b = m.predict(new, inputs=Xp), m2.predict(new, inputs=Xp)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-10)
    np.testing.assert_allclose(a.var, b.var, rtol=1e-10)
    from mtgp.exceptions import ModelFileError

    with pytest.raises(ModelFileError):
        mtgp.Magma.load(path)


def test_variational_cluster_probabilities():
    from scipy.stats import multivariate_normal

    df = two_groups(seed=6)
    m = mtgp.MagmaClust(2, max_iter=2).fit(df)
    new = df[df.ID == "ind2"].iloc[:2]
    Xo, yo = new[["Input"]].to_numpy(), new["Output"].to_numpy()
    pred = m.predict(new, inputs=np.array([1.0]), cluster_probabilities="variational")
    Psi = np.asarray(m.individual_kernel_(Xo, Xo)) + m.noise_ * np.eye(2)
    lr = [np.log(m.mixture_weights_[k]) + multivariate_normal(h.mean, Psi).logpdf(yo)
          - 0.5 * np.trace(np.linalg.solve(Psi, h.cov)) for k, h in enumerate(m.hyperposterior(Xo))]
    lr = np.array(lr)
    np.testing.assert_allclose(pred.cluster_probabilities, np.exp(lr - np.logaddexp.reduce(lr)), rtol=1e-8,
                               atol=1e-12)
    with pytest.raises(ValueError, match="cluster_probabilities"):
        m.predict(new, cluster_probabilities="other")


def test_buckets_change_nothing():
    rng = np.random.default_rng(7)
    rows = []
    for i, n in enumerate([1, 2, 3, 5, 7, 8]):
        t = np.sort(rng.choice(np.linspace(0, 10, 12), n, replace=False))
        rows.append(pd.DataFrame({"ID": f"r{i}", "Input": t, "Output": 5.0 * (i % 2) + np.sin(t)}))
    df = pd.concat(rows, ignore_index=True)
    tau0 = np.eye(2)[[0, 1, 0, 1, 0, 1]] * 0.8 + 0.1
    kw = dict(init_responsibilities=tau0, shared_individual_hp=False, max_iter=2, m_step_max_iter=10)
    a = mtgp.MagmaClust(2, buckets=4, **kw).fit(df)
    b = mtgp.MagmaClust(2, buckets=None, **kw).fit(df)
    assert len(a.fit_info_["bucket_sizes"]) > 1 and len(b.fit_info_["bucket_sizes"]) == 1
    np.testing.assert_allclose(a.history_, b.history_, rtol=1e-9)
    np.testing.assert_allclose(a.responsibilities_, b.responsibilities_, atol=1e-9)
