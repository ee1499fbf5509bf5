"""Issue 11, fast first calls: the number of XLA programs a FIRST Magma fit,
a FIRST Cool-MTGP fit and its first predict, and a first IndependentGPs fit compile, in a fresh process (an upper bound: a
change that multiplies programs, e.g. eager ``jnp`` operations outside a
compiled function, each compiling a small program, fails here). Counts, not
timings: the timings are in benchmarks/cold_start.py."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: measured with this child on jax 0.4.30 and 0.12.0.1: Magma 6, Cool-MTGP 6
#: (after the Magma fit, which compiled two of its small programs); before
#: issue 11's first-fit work, at the sizes of benchmarks/cold_start.py, 26 and 118;
#: Magma 8 before the kernels' log initial values moved to the host (issue 15)
MAGMA_MAX = 8
COOL_MAX = 8
#: the first predict after that fit: 5 on jax 0.12.0.1 (23 before the kernel
#: evaluations, mean and covariances were compiled as one program each)
COOL_PREDICT_MAX = 8
#: a first IndependentGPs fit (SE kernel; after the Cool-MTGP fit): 6 on jax
#: 0.12.0.1 (37 when its outputs were factorised one by one, eagerly)
INDEPENDENT_MAX = 10

CHILD = textwrap.dedent("""
    import json
    import numpy as np
    import jax
    import mtgp
    from mtgp.kernels import SE, Linear
    from mtgp.multioutput import CoolMTGP, IndependentGPs

    events = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: events.append(event) if event == "/jax/core/compile/backend_compile_duration" else None)
    out = {}
    data = mtgp.simulate(n_individuals=6, n_points=10, seed=0).data
    mtgp.Magma(common_hp=True).fit(data)
    out["magma"] = len(events)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4))
    Y = X @ rng.normal(size=(4, 3)) + 0.3 * rng.normal(size=(30, 3))
    del events[:]
    model = CoolMTGP(Linear(), max_iter=50).fit(X, Y)
    out["cool"] = len(events)
    del events[:]
    model.predict(X[:7], include_noise=True)
    out["cool_predict"] = len(events)
    del events[:]
    IndependentGPs(SE(), max_iter=20).fit(X, Y)
    out["independent"] = len(events)
    print(json.dumps(out))
""")


def test_first_fits_compile_few_programs(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "MTGP_", "XLA_"))}
    env.update(PYTHONPATH=str(ROOT), MTGP_CACHE_DIR="off", HOME=str(tmp_path))
    res = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    counts = json.loads(res.stdout.strip().splitlines()[-1])
    assert counts["magma"] <= MAGMA_MAX, f"first Magma fit compiled {counts['magma']} programs (max {MAGMA_MAX})"
    assert counts["cool"] <= COOL_MAX, f"first Cool-MTGP fit compiled {counts['cool']} programs (max {COOL_MAX})"
    assert counts["cool_predict"] <= COOL_PREDICT_MAX, \
        f"first Cool-MTGP predict compiled {counts['cool_predict']} programs (max {COOL_PREDICT_MAX})"
    assert counts["independent"] <= INDEPENDENT_MAX, \
        f"first IndependentGPs fit compiled {counts['independent']} programs (max {INDEPENDENT_MAX})"


def test_kernel_init_params_on_host_are_float64_logs():
    """Kernel.init_params takes the log on the host (no compiled program),
    float64 inside mtgp's float64 scope, scalars and ARD vectors alike."""
    import numpy as np

    import mtgp
    from mtgp.config import float64_scope

    with float64_scope():
        p = mtgp.kernels.SE(variance=2.0, lengthscale=[0.5, 3.0]).init_params()
    assert p["variance"].dtype == np.float64 and p["variance"].shape == ()
    assert p["lengthscale"].dtype == np.float64 and p["lengthscale"].shape == (2,)
    np.testing.assert_array_equal(np.asarray(p["lengthscale"]), np.log([0.5, 3.0]))
    assert float(p["variance"]) == np.log(2.0)
