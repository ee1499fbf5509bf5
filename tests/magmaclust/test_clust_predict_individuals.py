"""Issue 15: MagmaClust.predict_individuals (batched mixture prediction of
many new individuals) equals MagmaClust.predict called on each one."""

import numpy as np
import pandas as pd
import pytest

import mtgp


def _split(seed=0, M=9, M_new=7):
    """M training individuals; M_new new ones keeping a random 3 to 12 of
    their 20 points (uneven sizes: padded buckets 8 and 12)."""
    data = mtgp.simulate(M + M_new, 20, common_grid=False, seed=seed).data
    rng = np.random.default_rng(seed)
    code = data.ID.astype("category").cat.codes.to_numpy()
    keep = np.ones(len(data), dtype=bool)
    for k in range(M, M + M_new):
        rows = np.flatnonzero(code == k)
        keep[rows] = np.isin(rows, rng.choice(rows, int(rng.integers(3, 13)), replace=False))
    return data[keep & (code < M)], data[keep & (code >= M)]


def _per_individual(model, new, grid, noise=True, level=0.95):
    rows, hps, probs = [], [], []
    for iid, g in new.groupby("ID", sort=False):
        p = model.predict(g.drop(columns="ID"), inputs=grid, noise=noise)
        lo, hi = p.interval(level)
        rows.append(pd.DataFrame({"ID": iid, "Mean": p.mean, "Var": p.var, "Lower": lo, "Upper": hi}))
        hps.append({"ID": iid, **p.hyperparameters})
        probs.append(p.cluster_probabilities)
    return pd.concat(rows, ignore_index=True), pd.DataFrame(hps), np.array(probs)


@pytest.mark.parametrize("shared", [True, False])
def test_clust_predict_individuals_equals_predict(shared):
    train, new = _split()
    model = mtgp.MagmaClust(n_clusters=2, shared_individual_hp=shared, max_iter=3, random_state=0).fit(train)
    grid = np.linspace(0, 10, 23)
    got = model.predict_individuals(new, inputs=grid, batch_size=3)  # batches of 3 (the last padded)
    ref, ref_hp, ref_tau = _per_individual(model, new, grid)
    assert list(got.columns) == ["ID", "Input", "Mean", "Var", "Lower", "Upper", "P_cluster_0", "P_cluster_1"]
    assert got.ID.tolist() == ref.ID.tolist()
    np.testing.assert_allclose(got.Input, np.tile(grid, new.ID.nunique()))
    tau = got.attrs["cluster_probabilities"]
    assert tau.ID.tolist() == ref_hp.ID.tolist() and list(tau.columns) == ["ID", 0, 1]
    # shared HPs: the same program on other shapes, 1e-10. Learnt HPs: the
    # same in-graph L-BFGS from the same starts, batched here and alone in
    # predict; rounding (other XLA shapes) moves where it stops, to its
    # tolerance (as Magma's, tests/magma/test_predict_individuals.py)
    tol = 1e-10 if shared else 1e-5
    for col in ("Mean", "Var", "Lower", "Upper"):
        np.testing.assert_allclose(got[col], ref[col], rtol=tol, atol=tol, err_msg=col)
    np.testing.assert_allclose(tau[[0, 1]].to_numpy(), ref_tau, rtol=tol, atol=tol)
    np.testing.assert_allclose(got.P_cluster_1, np.repeat(ref_tau[:, 1], len(grid)), rtol=tol, atol=tol)
    hp = got.attrs["hyperparameters"]
    for col in ref_hp.columns[1:]:
        np.testing.assert_allclose(hp[col], ref_hp[col], rtol=1e-8 if shared else 1e-4)
    if not shared:  # learnt per individual, and given them, exact
        assert hp.noise.nunique() == len(hp)
        for k, (iid, g) in enumerate(new.groupby("ID", sort=False)):
            theta = {"kernel": {c: np.log(hp.loc[k, c]) for c in ("variance", "lengthscale")},
                     "log_noise": np.log(hp.loc[k, "noise"])}
            p = model.predict(g.drop(columns="ID"), inputs=grid, hyperparameters=theta)
            mine = got.loc[got.ID == iid, ["Mean", "Var", "P_cluster_0"]].to_numpy()
            np.testing.assert_allclose(mine[:, :2].T, [p.mean, p.var], rtol=1e-10, atol=1e-10)
            np.testing.assert_allclose(mine[0, 2], p.cluster_probabilities[0], rtol=1e-10, atol=1e-12)


def test_clust_predict_individuals_oracle_mixture():
    """The table's Mean/Var are the mixture moments of the dense per-cluster
    Gaussian conditionals (an oracle independent of the batching code)."""
    train, new = _split(seed=3, M_new=2)
    model = mtgp.MagmaClust(n_clusters=2, max_iter=2, random_state=0).fit(train)
    Xp = np.array([0.5, 4.0, 9.0])
    got = model.predict_individuals(new, inputs=Xp, noise=False, level=0.8)
    g = new[new.ID == new.ID.iloc[0]]
    Xo, yo = g[["Input"]].to_numpy(), g.Output.to_numpy()
    theta = model.theta_
    ki = model.individual_kernel_
    hyp = model.hyperposterior(np.vstack([Xp[:, None], Xo]))
    lw, means, vars_ = [], [], []
    for k, h in enumerate(hyp):  # dense Gaussian conditioning per cluster
        n = len(Xp)
        G = h.cov + np.asarray(ki(np.vstack([Xp[:, None], Xo])))
        Goo = G[n:, n:] + float(np.exp(theta["log_noise"])) * np.eye(len(yo))
        r = yo - h.mean[n:]
        means.append(h.mean[:n] + G[:n, n:] @ np.linalg.solve(Goo, r))
        vars_.append(np.diag(G[:n, :n] - G[:n, n:] @ np.linalg.solve(Goo, G[n:, :n])))
        _, ld = np.linalg.slogdet(Goo)
        lw.append(np.log(model.mixture_weights_[k]) - 0.5 * (r @ np.linalg.solve(Goo, r) + ld
                                                              + len(yo) * np.log(2 * np.pi)))
    w = np.exp(np.array(lw) - np.max(lw))
    w /= w.sum()
    mean = w @ np.array(means)
    var = w @ (np.array(vars_) + (np.array(means) - mean) ** 2)
    np.testing.assert_allclose(got.Mean[:3], mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(got.Var[:3], var, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(got.attrs["cluster_probabilities"].iloc[0, 1:].to_numpy(dtype=float), w,
                               rtol=1e-8, atol=1e-12)
    assert np.all(got.Lower < got.Mean) and np.all(got.Mean < got.Upper)


def test_clust_predict_individuals_bad_value_names_individual():
    train, new = _split(seed=2, M_new=3)
    model = mtgp.MagmaClust(n_clusters=2, max_iter=1, random_state=0).fit(train)
    bad = new.copy()
    bad.loc[bad.index[4], "Output"] = np.nan
    with pytest.raises(mtgp.DataError, match="Output"):
        model.predict_individuals(bad, inputs=[1.0])
