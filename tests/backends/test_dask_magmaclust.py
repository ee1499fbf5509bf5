"""Issue 15: MagmaClust on the Dask backend gives Local's numbers (to the
order of the floating-point sums), on a 2-worker LocalCluster: each step of
the seam from the same state, then whole fits (ELBO, responsibilities,
hyper-posteriors, HPs, predictions), shared and per-individual HPs."""

import jax
import numpy as np
import pandas as pd
import pytest

import mtgp
from mtgp.backends import Dask, Local
from mtgp.backends import _partition as pt

distributed = pytest.importorskip("distributed")

from dask_client import client  # noqa: E402,F401 - the fixture


def three_groups(seed=0, M=12):
    """Three curve families, 4 or 8 points each on a common grid of 12: two
    size buckets of 6, which 2 partitions cut into equal halves (one
    compiled program per bucket shape serves both workers: quick)."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 10, 12)
    rows = []
    for i in range(M):
        g = i % 3
        t = np.sort(rng.choice(grid, 4 if i % 2 else 8, replace=False))
        y = 6.0 * g + 2 * np.sin(t + g) + 0.3 * rng.standard_normal(t.size)
        rows.append(pd.DataFrame({"ID": f"i{i:02d}", "Input": t, "Output": y}))
    return pd.concat(rows, ignore_index=True)


def _kw(shared):
    return dict(n_clusters=3, shared_individual_hp=shared, max_iter=3, m_step_max_iter=10, tol=1e-12,
                random_state=0, buckets=2)


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


def _close(got, ref, tol=1e-10):
    for a, b in zip(_leaves(got), _leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("shared", [True, False])
def test_dask_cluster_steps_equal_local(client, shared):
    """Each MagmaClust step of the seam, from the same (tau, Theta, q(mu_k)),
    on 2 partitions over 2 workers: the per-cluster weighted sums, E (M, K),
    the weighted M step."""
    from mtgp.magmaclust import numerics as cx

    m = mtgp.MagmaClust(**_kw(shared)).fit(three_groups(), optimize=False)
    static, data, tau = m._static.magma, m._data, np.asarray(m.responsibilities_)
    backend = Dask(client)
    h = backend.prepare(data)
    assert h.n_partitions == 2 and [len(r) for r in h.global_rows] == [6, 6]
    # weighted sums of each cluster
    got = cx.cluster_sums(backend, h, m._static, m.theta_, data.m0, tau)
    ref = cx.cluster_sums(Local(), data, m._static, m.theta_, data.m0, tau)
    _close(got, ref, 1e-11)
    # the responsibilities' terms: only the real rows, in training order
    before = backend.bytes_moved
    E = backend.responsibility_terms(h, static, m.theta_, m.posterior_)
    # what went out: the K means and covariances on the grid, not the
    # factors of S_k and B_k (about a third of the posterior per worker)
    slim = pt.cluster_moments_only(m.posterior_)
    K, N = np.shape(m.posterior_.mean)
    assert sum(a.size for a in _leaves(slim)) == K * N + K * N * N
    assert backend.bytes_moved - before < 2 * sum(a.nbytes for a in _leaves(m.posterior_))
    E_ref = Local().responsibility_terms(data, static, m.theta_, m.posterior_)
    assert E.shape == (data.n_individuals, 3)
    np.testing.assert_allclose(np.asarray(E), np.asarray(E_ref), rtol=1e-12, atol=1e-12)
    # the weighted M step (Different HP: where the data are; Common HP:
    # L-BFGS-B here on the partitions' partial values and gradients)
    before = backend.bytes_moved
    got = backend.individual_m_step(h, static, m.theta_, m.posterior_, weights=tau)
    ref = Local().individual_m_step(data, static, m.theta_, m.posterior_, weights=tau)
    _close(got, ref)
    assert backend.bytes_moved > before


@pytest.mark.parametrize("shared", [True, False])
def test_dask_magmaclust_equals_local(client, shared):
    df = three_groups()
    loc = mtgp.MagmaClust(backend=Local(), **_kw(shared)).fit(df)
    backend = Dask(client)
    das = mtgp.MagmaClust(backend=backend, **_kw(shared)).fit(df)
    assert backend.bytes_moved > 0
    assert das.n_iter_ == loc.n_iter_ == 3
    np.testing.assert_allclose(das.history_, loc.history_, rtol=1e-10)
    np.testing.assert_allclose(das.responsibilities_.to_numpy(), loc.responsibilities_.to_numpy(),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(das.mixture_weights_, loc.mixture_weights_, rtol=1e-10)
    for name in ("mean", "cov"):
        np.testing.assert_allclose(np.asarray(getattr(das.posterior_, name)),
                                   np.asarray(getattr(loc.posterior_, name)), rtol=1e-10, atol=1e-10)
    _close(das.theta_, loc.theta_)
    _close(das.theta0_, loc.theta0_)
    new = df[df.ID == "i04"].drop(columns="ID").iloc[:3]
    x = np.linspace(0, 10, 7)
    a, b = das.predict(new, inputs=x), loc.predict(new, inputs=x)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(a.cov, b.cov, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(a.cluster_probabilities, b.cluster_probabilities, rtol=1e-10, atol=1e-10)


def test_dask_magmaclust_predict_individuals_on_workers(client):
    """Issue 15: MagmaClust.predict_individuals on the Dask backend (new
    individuals as pandas, cut per worker, or as a Dask DataFrame, predicted
    where its partitions are) equals the same model's batched prediction
    here, cluster probabilities included."""
    import copy

    dd = pytest.importorskip("dask.dataframe")
    df = three_groups(M=15)
    train, new = df[df.ID < "i10"], df[df.ID >= "i10"]
    backend = Dask(client)
    das = mtgp.MagmaClust(backend=backend, **_kw(True)).fit(train)
    loc = copy.copy(das)
    loc.backend = None
    x = np.linspace(0, 10, 9)
    ref = loc.predict_individuals(new, inputs=x)
    parts = dd.concat([dd.from_pandas(new[new.ID.isin(g)], npartitions=1)
                       for g in np.array_split(new.ID.unique(), 2)])
    before = backend.bytes_moved
    for data in (new, parts):
        got = das.predict_individuals(data, inputs=x)
        assert got.ID.tolist() == ref.ID.tolist() and list(got.columns) == list(ref.columns)
        for col in ("Mean", "Var", "Lower", "Upper", "P_cluster_0", "P_cluster_2"):
            np.testing.assert_allclose(got[col], ref[col], rtol=1e-10, atol=1e-10)
        pd.testing.assert_frame_equal(got.attrs["cluster_probabilities"], ref.attrs["cluster_probabilities"],
                                      rtol=1e-10, atol=1e-10)
        assert got.attrs["hyperparameters"].ID.tolist() == ref.attrs["hyperparameters"].ID.tolist()
    assert backend.bytes_moved > before
