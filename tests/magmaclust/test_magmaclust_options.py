"""MagmaClust options of issue 12 not covered elsewhere: the backend seam,
multi-dimensional inputs, prior means, several starts, user-given initial
responsibilities, empty clusters reported."""

import warnings

import numpy as np
import pandas as pd
import pytest

import mtgp
from mtgp.backends import Local

from test_magmaclust_api import two_groups  # noqa: E402 (rootdir-less test folder)


class Recording(Local):
    """The local backend, counting the calls MagmaClust makes through the seam."""

    def __init__(self):
        self.calls = {"prepare": 0, "e_step_sums": 0, "individual_m_step": 0, "responsibility_terms": 0}

    def prepare(self, data):
        self.calls["prepare"] += 1
        return super().prepare(data)

    def e_step_sums(self, *a, **k):
        self.calls["e_step_sums"] += 1
        return super().e_step_sums(*a, **k)

    def individual_m_step(self, *a, **k):
        self.calls["individual_m_step"] += 1
        assert k.get("weights") is not None  # MagmaClust always passes tau
        return super().individual_m_step(*a, **k)

    def responsibility_terms(self, *a, **k):
        self.calls["responsibility_terms"] += 1
        return super().responsibility_terms(*a, **k)


@pytest.mark.parametrize("shared_i", [True, False])
def test_every_touch_of_the_individuals_goes_through_the_backend(shared_i):
    df = two_groups(seed=3)
    kw = dict(n_clusters=2, shared_individual_hp=shared_i, max_iter=3, m_step_max_iter=15, tol=1e-12,
              random_state=0)
    rec = Recording()
    a = mtgp.MagmaClust(backend=rec, **kw).fit(df)
    b = mtgp.MagmaClust(**kw).fit(df)
    n = a.n_iter_
    assert rec.calls["prepare"] == 1
    assert rec.calls["individual_m_step"] == n
    assert rec.calls["responsibility_terms"] == n - 1  # tau frozen in the first iteration
    # per cluster: the initial E step, the new tau's E step (not in iteration 1), after the M step
    assert rec.calls["e_step_sums"] == 2 * (1 + n + (n - 1))
    np.testing.assert_allclose(a.history_, b.history_, rtol=1e-9)  # L-BFGS round-off
    np.testing.assert_allclose(a.responsibilities_, b.responsibilities_, atol=1e-9)
    assert a.backend is rec and "backend" in a.get_params()


def test_multidimensional_inputs():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        X = rng.uniform(0, 5, (6, 2))
        y = 10.0 * (i % 2) + np.sin(X[:, 0]) + 0.3 * X[:, 1] + 0.1 * rng.standard_normal(6)
        rows.append(pd.DataFrame({"ID": f"i{i}", "Input_1": X[:, 0], "Input_2": X[:, 1], "Output": y}))
    df = pd.concat(rows, ignore_index=True)
    m = mtgp.MagmaClust(2, max_iter=4, m_step_max_iter=20).fit(df)
    lab = m.clusters_.to_numpy()
    assert lab[0] != lab[1] and (lab[::2] == lab[0]).all() and (lab[1::2] == lab[1]).all()
    assert m.input_columns_ == ["Input_1", "Input_2"]
    new = df[df.ID == "i1"].drop(columns="ID").iloc[:3]
    pred = m.predict(new, inputs=np.array([[1.0, 1.0], [2.0, 2.0]]))
    assert pred.mean.shape == (2,) and pred.cluster_probabilities[lab[1]] > 0.99
    assert np.all(pred.mean > 8)  # the upper cluster's level
    with pytest.raises(mtgp.DataError, match="inputs= is required"):
        m.predict(new)
    hp = m.hyperposterior(np.array([[0.0, 0.0]]))
    assert len(hp) == 2


def test_prior_mean_is_used_and_matches_a_shifted_problem():
    """A constant prior mean m and data y are the zero-mean problem on y - m:
    same ELBO, responsibilities, and predictions shifted by m."""
    df = two_groups(seed=2)
    kw = dict(n_clusters=2, max_iter=4, m_step_max_iter=20, tol=1e-12,
              init_responsibilities=np.eye(2)[[0, 1] * 4] * 0.8 + 0.1)
    a = mtgp.MagmaClust(prior_mean=7.0, **kw).fit(df)
    b = mtgp.MagmaClust(**kw).fit(df.assign(Output=df.Output - 7.0))
    np.testing.assert_allclose(a.history_, b.history_, rtol=1e-8)
    np.testing.assert_allclose(a.responsibilities_, b.responsibilities_, atol=1e-8)
    x = np.linspace(0, 10, 4)
    new = df[df.ID == "ind3"].iloc[:3]
    pa = a.predict(new, inputs=x)
    pb = b.predict(new.assign(Output=new.Output - 7.0), inputs=x)
    np.testing.assert_allclose(pa.mean, pb.mean + 7.0, atol=1e-7)
    np.testing.assert_allclose(pa.var, pb.var, rtol=1e-7)
    # a callable prior mean is the hyper-posteriors' mean far from the data
    # (HPs fixed at lengthscale 1: fitted ones may grow to span the gap)
    c = mtgp.MagmaClust(prior_mean=lambda X: 100.0 + 0 * X[:, 0], **kw).fit(df, optimize=False)
    far = c.hyperposterior(np.array([1e3]))
    assert all(abs(h.mean[0] - 100.0) < 1e-6 for h in far)


def test_several_starts_keep_the_best_elbo():
    df = two_groups(seed=4)
    m = mtgp.MagmaClust(2, n_init=3, random_state=0, max_iter=3, m_step_max_iter=15).fit(df)
    per = m.fit_info_["elbo_per_start"]
    assert len(per) == 3 and m.fit_info_["best_start"] == int(np.argmax(per))
    assert m.elbo_ == pytest.approx(max(per))


def test_user_given_initial_responsibilities_are_the_start():
    df = two_groups(seed=5)
    tau = np.eye(2)[[1, 0] * 4]
    m = mtgp.MagmaClust(2, init_responsibilities=tau, max_iter=1, m_step_max_iter=10).fit(df)
    # tau is frozen in the first iteration: the fitted tau is the given one
    np.testing.assert_array_equal(m.responsibilities_.to_numpy(), tau)
    np.testing.assert_array_equal(m.clusters_.to_numpy(), [1, 0] * 4)
    np.testing.assert_allclose(m.mixture_weights_, [0.5, 0.5])


def test_empty_clusters_are_reported_not_nan():
    df = two_groups(seed=6)
    tau = np.zeros((8, 3))
    tau[:, 0] = [1, 0] * 4
    tau[:, 1] = [0, 1] * 4  # cluster 2 starts (and stays) empty
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m = mtgp.MagmaClust(3, init_responsibilities=tau, max_iter=3, m_step_max_iter=10).fit(df)
    assert any("cluster 2 is empty" in str(x.message) for x in w)
    assert m.fit_info_["empty_clusters"] == [2] and m.mixture_weights_[2] == 0.0
    assert np.all(np.isfinite(m.history_)) and np.all(np.isfinite(m.responsibilities_.to_numpy()))
    pred = m.predict(df[df.ID == "ind0"].iloc[:3], inputs=np.linspace(0, 10, 3))
    assert pred.cluster_probabilities[2] == 0.0 and np.all(np.isfinite(pred.mean))


def test_backend_without_cluster_support_is_refused_before_any_work():
    from mtgp.backends import Backend

    class MagmaOnly(Backend):
        def prepare(self, data):  # pragma: no cover - must not be reached
            raise AssertionError("prepare called")

    from mtgp.backends.local import resolve_backend

    with pytest.raises(NotImplementedError, match="MagmaClust does not run on the MagmaOnly backend"):
        resolve_backend(MagmaOnly(), clusters=True)
    assert isinstance(resolve_backend(None, clusters=True), Local)
