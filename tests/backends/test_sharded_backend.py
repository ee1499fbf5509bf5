"""Issue 15: the Sharded backend (individuals over this process' JAX
devices) gives Local's numbers. Forced host devices need XLA_FLAGS before
jax starts, so the check runs in a subprocess (mtgp never sets it)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import mtgp
from mtgp.backends import Local, Sharded

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np, jax
    import mtgp
    from mtgp.backends import Local, Sharded
    sim = mtgp.simulate(7, 30, common_grid=False, seed=3)
    rng = np.random.default_rng(3)
    cnt = {i: int(rng.integers(4, 12)) for i in sim.data.ID.unique()}
    df = sim.data[sim.data.groupby("ID").cumcount() < sim.data.ID.map(cnt)]
    out = {"n_devices": jax.device_count()}
    for common in (True, False):
        kw = dict(common_hp=common, buckets=2, max_iter=2)
        a = mtgp.Magma(backend=Local(), **kw).fit(df)
        b = mtgp.Magma(backend=Sharded(), **kw).fit(df)
        leaves = lambda t: np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(t)])
        out[str(common)] = {
            "history": float(np.max(np.abs(b.history_ - a.history_) / np.abs(a.history_))),
            "theta": float(np.max(np.abs(leaves(b.theta_) - leaves(a.theta_)) / (1e-10 + np.abs(leaves(a.theta_))))),
            "mean": float(np.max(np.abs(np.asarray(b.posterior_.mean) - np.asarray(a.posterior_.mean)))),
            "devices_per_bucket": [len(x.sharding.device_set) for x in b._handle.data.X],
            "padded": [int(x.shape[0]) for x in b._handle.data.X],
        }
    print("RESULT " + json.dumps(out))
""")


def test_sharded_one_device_equals_local():
    sim = mtgp.simulate(5, 30, common_grid=False, seed=1)
    df = sim.data[sim.data.groupby("ID").cumcount() < 9]
    a = mtgp.Magma(backend=Local(), buckets=2, max_iter=2).fit(df)
    b = mtgp.Magma(backend=Sharded(), buckets=2, max_iter=2).fit(df)
    np.testing.assert_allclose(b.history_, a.history_, rtol=1e-12)


def test_sharded_over_two_forced_host_devices():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                          timeout=900)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and line, proc.stderr[-3000:]
    out = json.loads(line[0][len("RESULT "):])
    assert out["n_devices"] == 2
    for common in ("True", "False"):
        r = out[common]
        assert all(n == 2 for n in r["devices_per_bucket"]), r
        assert all(p % 2 == 0 for p in r["padded"]), r
        assert r["history"] < 1e-10, r
        assert r["mean"] < 1e-8, r
        assert r["theta"] < (1e-10 if common == "True" else 1e-6), r
