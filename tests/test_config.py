"""mtgp.config: a quiet import (fresh interpreters), float64 results
without the global x64 flag, scoped settings."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mtgp
from mtgp import config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(mtgp.__file__)))


def _run(code, tmp_path, x64=False):
    """Run ``code`` in a fresh interpreter with HOME and XDG_CACHE_HOME in
    an empty temporary folder; its last stdout line, parsed as JSON."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "MTGP_"))}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PYTHONPATH=ROOT,
               PYTHONDONTWRITEBYTECODE="1")
    if x64:
        env["JAX_ENABLE_X64"] = "1"
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         env=env, cwd=str(tmp_path), timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), home


def test_import_changes_nothing(tmp_path):
    code = """
        import json, os, sys
        before = dict(os.environ)
        import jax
        after_jax = dict(os.environ)
        import mtgp
        import mtgp.gp, mtgp.optim, mtgp.compile, mtgp.linalg
        print(json.dumps({
            "env_same_as_jax": dict(os.environ) == after_jax,
            "jax_added": sorted(set(after_jax) - set(before)),
            "xla_flags": [before.get("XLA_FLAGS"), os.environ.get("XLA_FLAGS")],
            "x64": bool(jax.config.jax_enable_x64),
            "cache_dir": jax.config.jax_compilation_cache_dir,
            "modules": sorted(m for m in ("sklearn", "matplotlib") if m in sys.modules),
        }))
    """
    res, home = _run(code, tmp_path)
    assert res["env_same_as_jax"]
    assert set(res["jax_added"]) <= {"TF_CPP_MIN_LOG_LEVEL", "TPU_SKIP_MDS_QUERY"}
    assert res["xla_flags"][0] == res["xla_flags"][1]
    assert res["x64"] is False and not res["cache_dir"]
    assert res["modules"] == []
    assert [str(p.relative_to(home)) for p in home.rglob("*")] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # nothing in the working folder


FITS = """
    import json
    import jax
    import numpy as np
    import mtgp
    from mtgp.kernels import SE
    s = mtgp.simulate(n_individuals=5, n_points=10, seed=0)
    d = s.data
    one = d[d.ID == "ID1"]
    gp = mtgp.GP(SE(), noise=1.0, n_init=2, random_state=0).fit(one[["Input", "Output"]])
    gp_pred = gp.predict(s.grid[:6])
    train = d[d.ID != "ID5"]
    magma = mtgp.Magma(SE(50.0, 3.0), SE(20.0, 3.0), noise=1.0, max_iter=3).fit(train)
    new = d[d.ID == "ID5"]
    mg_pred = magma.predict(new.iloc[:6], new.Input.to_numpy()[6:])
    arrays = [np.asarray(gp_pred.mean), np.asarray(gp_pred.cov), np.asarray(mg_pred.mean), np.asarray(mg_pred.cov)]
    print(json.dumps({
        "x64_flag": bool(jax.config.jax_enable_x64),
        "dtypes": [str(a.dtype) for a in arrays],
        "values": [gp.log_likelihood_, magma.log_likelihood_] + [a.ravel().tolist() for a in arrays],
    }))
"""


def test_fits_without_the_global_flag_equal_fits_with_it(tmp_path):
    scoped, _ = _run(FITS, tmp_path)
    glob, _ = _run(FITS, tmp_path, x64=True)
    assert scoped["x64_flag"] is False and glob["x64_flag"] is True
    assert scoped["dtypes"] == ["float64"] * 4
    for a, b in zip(scoped["values"], glob["values"]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_settings_are_scoped():
    base = config.get()
    with config.settings(jitter=1e-6, compile_cache_size=7) as s:
        assert s is config.get() and s.jitter == 1e-6 and s.compile_cache_size == 7
        with config.settings(jitter=1e-3):
            assert config.get().jitter == 1e-3 and config.get().compile_cache_size == 7
        assert config.get().jitter == 1e-6
    assert config.get() == base
    with pytest.raises(RuntimeError):
        with config.settings(jitter=1e-2):
            raise RuntimeError("restored on error too")
    assert config.get() == base
    with pytest.raises(TypeError, match="unknown mtgp setting"):
        with config.settings(jiter=1e-6):
            pass
    assert config.get() == base


def test_float64_scope_without_the_global_flag():
    import jax
    import jax.numpy as jnp

    # jax >= 0.4.36 has jax.enable_x64 (a config State); older jax has
    # jax.experimental.enable_x64(new_val), which newer jax removed
    x64 = getattr(jax, "enable_x64", None)
    if not callable(x64):
        from jax.experimental import enable_x64 as x64
    with x64(False):
        assert jnp.asarray(1.0).dtype == jnp.float32
        with config.float64_scope():
            assert jnp.asarray(1.0).dtype == jnp.float64
        assert config.float64(lambda: jnp.asarray(1.0).dtype)() == jnp.float64
        assert jnp.asarray(1.0).dtype == jnp.float32
