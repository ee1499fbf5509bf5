"""Shared by the Dask backend's tests (``from dask_client import client``;
not a conftest.py, whose module name tests/conftest.py already has): one
2-worker LocalCluster (threads of this process) per test module; skipped
without the ``dask`` extra."""

import pytest


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=":0")
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()
