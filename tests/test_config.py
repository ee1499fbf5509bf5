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


BLAS = """
    import json, os
    from threadpoolctl import threadpool_info

    def blas():
        return sorted((d["filepath"], d["num_threads"]) for d in threadpool_info() if d["user_api"] == "blas")

    start = blas()
    import mtgp
    after_import = blas()
    import scipy.linalg  # the OpenBLAS that jaxlib's LAPACK kernels call (and numpy's)
    before = blas()
    seen = []
    from mtgp.kernels import SE

    class Spy(SE):  # evaluated inside Magma.fit: records the BLAS threads there
        def evaluate(self, params, X1, X2):
            seen.append(blas())
            return super().evaluate(params, X1, X2)

    s = mtgp.simulate(n_individuals=4, n_points=8, seed=0)
    m = mtgp.Magma(Spy(), Spy(), max_iter=2).fit(s.data)
    after_fit = blas()
    with mtgp.config.settings(blas_threads=0):
        seen0 = len(seen)
        other = mtgp.simulate(n_individuals=3, n_points=5, seed=1).data  # new shapes: traced again
        mtgp.Magma(Spy(), Spy(), max_iter=1).fit(other)
        inside_off = seen[seen0:]
    os.environ["MTGP_BLAS_THREADS"] = "2"
    seen1 = len(seen)
    m.predict(s.data[s.data.ID == "ID1"])
    inside_env = seen[seen1:]
    print(json.dumps({"start": start, "after_import": after_import, "before": before, "inside": seen[:seen0],
                      "after_fit": after_fit, "inside_off": inside_off, "inside_env": inside_env,
                      "after": blas()}))
"""


def test_blas_threads_are_scoped_to_mtgp_calls(tmp_path):
    """Inside fit/predict the BLAS pools run ``blas_threads`` threads (1 by
    default); the user's numbers are back afterwards; import changes none."""
    res, _ = _run(BLAS, tmp_path)
    before = res["before"]
    assert all(lib in before for lib in res["after_import"])  # libraries loaded, thread numbers untouched
    assert before and res["after_fit"] == before and res["after"] == before
    assert res["inside"] and all(n == 1 for seen in res["inside"] for _, n in seen)
    assert res["inside_off"] and all(seen == before for seen in res["inside_off"])  # blas_threads=0: left alone
    assert res["inside_env"] and all(n == 2 for seen in res["inside_env"] for _, n in seen)


def test_blas_threads_setting_is_checked():
    with config.settings(blas_threads=-1):
        with pytest.raises(ValueError, match="blas_threads"):
            config.float64(lambda: None)()
    os.environ["MTGP_BLAS_THREADS"] = "many"
    try:
        with pytest.raises(ValueError, match="MTGP_BLAS_THREADS"):
            config.float64(lambda: None)()
    finally:
        del os.environ["MTGP_BLAS_THREADS"]
    assert config.float64(lambda: 3)() == 3  # the failed calls left nothing behind
    assert config._BLAS_DEPTH == 0


def test_blas_scope_from_threads():
    """The limit is process-wide (OpenBLAS's pool is): set by the first mtgp
    call in progress, restored by the last one, whatever thread runs them."""
    import threading

    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_info

    def blas():
        return sorted(d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas")

    before, seen = blas(), {}

    def call(tag):
        seen[tag] = config.float64(blas)()

    for tag in ("main", "thread", "main again"):
        if tag == "thread":
            t = threading.Thread(target=call, args=(tag,))
            t.start()
            t.join()
        else:
            call(tag)
        assert seen[tag] == [1] * len(before) and blas() == before, tag
    config._blas_enter()  # entered in this thread, left last in another one
    t = threading.Thread(target=config._blas_exit)
    t.start()
    t.join()
    assert blas() == before and config._BLAS_DEPTH == 0


def test_import_is_lazy(tmp_path):
    """``import mtgp`` loads no heavy library; ``from mtgp import Magma``
    loads JAX, pandas and tinygp but not plotting, scikit-learn or scipy's
    spline fitting; the lazy names resolve and are listed."""
    code = """
        import json, sys
        heavy = ("jax", "pandas", "matplotlib", "sklearn", "scipy.interpolate", "scipy.optimize", "tinygp")
        loaded = lambda: sorted(m for m in heavy if m in sys.modules)
        import mtgp
        after_import = loaded()
        names = sorted(n for n in mtgp.__all__ if n not in dir(mtgp))
        from mtgp import Magma
        after_magma = loaded()
        resolved = all(getattr(mtgp, n) is not None for n in mtgp.__all__)
        print(json.dumps({"after_import": after_import, "after_magma": after_magma, "missing_from_dir": names,
                          "resolved": resolved, "magma": Magma is mtgp.magma.Magma,
                          "simulate_is_function": callable(mtgp.simulate) and not hasattr(mtgp.simulate, "__path__")}))
    """
    res, _ = _run(code, tmp_path)
    assert res["after_import"] == []
    assert res["after_magma"] == ["jax", "pandas", "tinygp"]
    assert res["missing_from_dir"] == [] and res["resolved"] and res["magma"] and res["simulate_is_function"]
