"""Issue 15: data that start on the workers (a Dask DataFrame, Parquet files
partitioned by individual) and batched predictions of new individuals on
the workers, on a 2-worker LocalCluster: the numbers equal Local's."""

import copy

import numpy as np
import pytest

import mtgp
from mtgp.backends import Dask, Local

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")

# the simulated uneven individuals, the 2-worker LocalCluster and the
# pytree leaves helper of the EM tests (pytest puts tests/backends on sys.path)
from test_dask_backend import _leaves, _uneven, client  # noqa: E402,F401


def _by_individual(df, n_parts):
    """A Dask DataFrame whose partitions hold whole individuals."""
    ids = df.ID.unique()
    groups = np.array_split(ids, n_parts)
    return dd.concat([dd.from_pandas(df[df.ID.isin(g)], npartitions=1) for g in groups])


def test_fit_from_dask_frame_equals_pandas(client):
    df = _uneven()
    ddf = _by_individual(df, 3)
    assert ddf.npartitions == 3
    kw = dict(buckets=3, max_iter=3)
    ref = mtgp.Magma(backend=Local(), **kw).fit(df)
    got = mtgp.Magma(backend=Dask(client), **kw).fit(ddf)
    assert got.ids_ == ref.ids_
    assert got._handle.n_partitions == 3
    assert got.fit_info_["bucket_sizes"] == ref.fit_info_["bucket_sizes"]
    np.testing.assert_array_equal(got.grid_, ref.grid_)
    np.testing.assert_allclose(got.history_, ref.history_, rtol=1e-10)
    for a, b in zip(_leaves(got.theta_) + _leaves(got.theta0_), _leaves(ref.theta_) + _leaves(ref.theta0_)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(got.posterior_.mean), np.asarray(ref.posterior_.mean),
                               rtol=1e-10, atol=1e-10)
    # the training data never came here
    with pytest.raises(mtgp.DataError, match="stay on the Dask workers"):
        got.inds_.to_frame()


def test_fit_from_parquet_directory(client, tmp_path):
    pytest.importorskip("pyarrow")
    df = _uneven(seed=3, M=6)
    for k, g in enumerate(np.array_split(df.ID.unique(), 2)):
        df[df.ID.isin(g)].to_parquet(tmp_path / f"part-{k}.parquet", index=False)
    ddf = mtgp.data.read_parquet_individuals(str(tmp_path))
    assert ddf.npartitions == 2
    kw = dict(buckets=2, max_iter=2)
    got = mtgp.Magma(backend=Dask(client), **kw).fit(ddf)
    ref = mtgp.Magma(**kw).fit(ddf.compute())
    np.testing.assert_allclose(got.history_, ref.history_, rtol=1e-10)
    assert got.ids_ == ref.ids_


def test_bad_value_in_one_partition_names_it(client):
    df = _uneven()
    ids = df.ID.unique()
    bad = df.copy()
    row = bad.index[bad.ID == ids[-1]][2]
    bad.loc[row, "Input"] = np.inf
    with pytest.raises(mtgp.DataError, match=rf"partition 2\).*Input.*individual {ids[-1]!r}"):
        mtgp.Magma(backend=Dask(client), max_iter=1).fit(_by_individual(bad, 3))
    # an individual split over two partitions is an error, not two individuals
    cut = int((df.ID == ids[0]).sum()) // 2
    split = dd.concat([dd.from_pandas(df.iloc[:cut], npartitions=1), dd.from_pandas(df.iloc[cut:], npartitions=1)])
    with pytest.raises(mtgp.DataError, match="partitions \\[0, 1\\]"):
        mtgp.Magma(backend=Dask(client), max_iter=1).fit(split)


@pytest.mark.parametrize("common", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_predict_individuals_on_workers_equals_local(client, common):
    df = _uneven(seed=4, M=12)
    ids = df.ID.unique()
    train, new = df[df.ID.isin(ids[:7])], df[df.ID.isin(ids[7:])]
    backend = Dask(client)
    das = mtgp.Magma(backend=backend, common_hp=common, buckets=2, max_iter=2).fit(train)
    # the same fitted state predicted in this process (a Local fit differs
    # from the Dask fit by the order of the E-step sums: ~1e-8 on Different
    # HPs after EM, see test_dask_backend.py)
    loc = copy.copy(das)
    loc.backend_ = Local()
    grid = np.linspace(0, 10, 23)
    ref = loc.predict_individuals(new, inputs=grid)
    before = backend.bytes_moved
    for data in (new, _by_individual(new, 2)):  # pandas here, or partitions on the workers
        got = das.predict_individuals(data, inputs=grid)
        assert got.ID.tolist() == ref.ID.tolist()
        # Different HP: the new individuals' L-BFGS runs are batched by
        # worker here, by bucket there: other shapes, other rounding, end
        # points equal to the optimiser's tolerance (see
        # tests/magma/test_predict_individuals.py, which checks the
        # prediction given the HPs to 1e-10)
        tol = 1e-10 if common else 1e-5
        for col in ("Mean", "Var", "Lower", "Upper"):
            np.testing.assert_allclose(got[col], ref[col], rtol=tol, atol=tol)
        np.testing.assert_allclose(got.attrs["hyperparameters"].noise, ref.attrs["hyperparameters"].noise,
                                   rtol=1e-8 if common else 1e-4)
    assert backend.bytes_moved > before


def test_default_grid_of_new_individuals_on_workers_is_the_local_one(client):
    # without inputs=, the grid spans the training inputs and every new
    # individual's range; on the workers that range is computed there
    df = _uneven(seed=5, M=10)
    ids = df.ID.unique()
    train, new = df[df.ID.isin(ids[:6])], df[df.ID.isin(ids[6:])].copy()
    new.loc[new.ID == ids[-1], "Input"] += 3.0  # beyond the training range
    das = mtgp.Magma(backend=Dask(client), max_iter=1).fit(train)
    loc = copy.copy(das)
    loc.backend_ = Local()
    ref = loc.predict_individuals(new)
    got = das.predict_individuals(_by_individual(new, 2))
    assert ref.Input.max() == pytest.approx(new.Input.max())
    np.testing.assert_allclose(got.Input, ref.Input, rtol=0, atol=0)
    np.testing.assert_allclose(got.Mean, ref.Mean, rtol=1e-10, atol=1e-10)


@pytest.mark.slow
def test_worker_loss_in_a_frame_fit_is_recomputed_from_the_graph():
    """Issue 15: a fit from a Dask DataFrame keeps no copy here; a partition
    lost with its worker is recomputed by the scheduler from the frame's
    graph and the step gives the same sums; one Dask cannot recompute is a
    clear error naming the partition (not the keep_copy message)."""
    from test_dask_backend import _kill_first_worker

    df = _uneven()
    m = mtgp.Magma(common_hp=True, buckets=3).fit(df, optimize=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        backend = Dask(client)
        _, _, _, h = backend.prepare_frame(_by_individual(df, 3), ["Input"], 3, lambda g: np.zeros(len(g)))
        assert h.copies is None and None not in h.workers
        ref = backend.e_step_sums(h, m._static, m.theta_)
        _kill_first_worker(backend, h)
        assert h.futures[0].status != "finished"
        # what a step that failed with the worker does: repair (nothing to
        # re-scatter, the scheduler recomputes), then the same sums
        assert backend._repair(h, ConnectionError("worker gone")) is True
        got = backend.e_step_sums(h, m._static, m.theta_)
        for a, b in zip(got, ref):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)
        client.cancel([h.futures[1]])  # a partition Dask cannot recompute
        with pytest.raises(RuntimeError, match=r"partition\(s\) \[1\].*could not recompute"):
            backend._repair(h, ConnectionError("worker gone"))


@pytest.mark.parametrize("n_partitions", [2, 5])
def test_frame_fit_honours_n_partitions(client, n_partitions):
    """Issue 15: Dask(n_partitions=...) regroups a Dask DataFrame's
    individuals (3 frame partitions here) into that many partitions, whole
    individuals, each bucket spread over them; the numbers are unchanged."""
    df = _uneven(M=11)
    ddf = _by_individual(df, 3)
    kw = dict(buckets=3, max_iter=2)
    ref = mtgp.Magma(backend=Dask(client), **kw).fit(ddf)  # one partition per frame partition
    assert ref._handle.n_partitions == 3
    got = mtgp.Magma(backend=Dask(client, n_partitions=n_partitions), **kw).fit(ddf)
    h = got._handle
    assert h.n_partitions == n_partitions
    rows = np.concatenate(h.global_rows)
    assert sorted(rows.tolist()) == list(range(len(ref.ids_)))  # each individual in exactly one
    assert max(len(r) for r in h.global_rows) - min(len(r) for r in h.global_rows) <= 3  # balanced
    assert got.ids_ == ref.ids_
    np.testing.assert_allclose(got.history_, ref.history_, rtol=1e-10)
    for a, b in zip(_leaves(got.theta_) + _leaves(got.theta0_), _leaves(ref.theta_) + _leaves(ref.theta0_)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
