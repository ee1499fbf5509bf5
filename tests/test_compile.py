"""mtgp.compile: the one bounded cache of compiled programs, and the
stale-program question (a program fetched for a kernel it was not compiled
for).

What the pre-restructuring code did (``/work/baseline/mtgp/multioutput/base.py``,
``kernel_key``): the key of a kernel was ``json.dumps`` of its ``to_dict()``
with values replaced by shapes, and ``f"id:{id(kernel)}"`` when ``to_dict``
raised (any user subclass of ``Kernel`` that does not implement it). Run by
hand against the baseline (two such classes, ``ExpQuad`` then ``Laplace``,
fitted by ICM one after the other with the first deleted and collected):
the id was NOT reused and the second fit equalled a fresh process's, because
the cached program closes over the first kernel and keeps it alive (an
unbounded cache: a leak, not a wrong result). The id key was a latent bug:
wrong as soon as an entry outlives the object its key names without
holding it. Now every key is ``Kernel.structure()``; the tests below check
that the two classes get different structures and that the second fit is
unaffected by the first.

Found while writing them, and fixed: structure() named a class by
``__module__``/``__qualname__`` (``Kernel`` default) or by ``__name__`` only
(``_Leaf`` kernels: SE, Matern...), so two DIFFERENT classes with the same
name (a class made in a factory function, or a user subclass ``SE`` of
``mtgp.kernels.SE`` in another module) shared programs: the second silently
ran the first's ``evaluate`` (a GP predicted 0.078 where 0.065 is right).
structure() now holds the class object itself (``type(self)``): a key holds
the class, which cannot be collected and its id reused while the entry
lives. The last tests below failed before the fix.

Left as designed: the default structure() of a raw ``Kernel`` subclass
includes its hashable attributes (static configuration such as a fixed
period must not share programs), so such a kernel that stores its *values*
as float attributes compiles once per value; subclassing the leaf base
(named positive parameters) avoids it.
"""

import gc
import json
import os
import subprocess
import sys
import types

import jax.numpy as jnp
import numpy as np
import pytest

import mtgp
from mtgp import compile as mc
from mtgp import config
from mtgp.kernels import SE, Kernel


def test_cache_is_bounded_and_a_dropped_program_is_rebuilt():
    built = []

    def builder(i):
        def build():
            built.append(i)
            return lambda x: x + i
        return build

    mc.clear_cache()
    with config.settings(compile_cache_size=3):
        fns = [mc.cached_jit(("test-bounded", i), builder(i)) for i in range(5)]
        assert mc.cache_size() == 3
        assert [float(f(1.0)) for f in fns] == [1.0, 2.0, 3.0, 4.0, 5.0]
        again = mc.cached_jit(("test-bounded", 4), builder(4))  # still cached: not rebuilt
        assert again is fns[4] and built == [0, 1, 2, 3, 4]
        dropped = mc.cached_jit(("test-bounded", 0), builder(0))  # least recently used: dropped, rebuilt
        assert built == [0, 1, 2, 3, 4, 0] and float(dropped(1.0)) == 1.0
        assert mc.cache_size() == 3
    mc.clear_cache()


def test_numerical_settings_are_part_of_the_key():
    mc.clear_cache()
    a = mc.cached_jit(("test-settings",), lambda: lambda x: x)
    with config.settings(jitter=1e-6):
        b = mc.cached_jit(("test-settings",), lambda: lambda x: x)
    assert a is not b and mc.cached_jit(("test-settings",), lambda: None) is a
    with pytest.raises(TypeError):
        mc.cached_jit((["unhashable"],), lambda: lambda x: x)


# --- two user kernels: same parameter shapes, different evaluate ----------

USER_KERNELS = '''
import jax.numpy as jnp
import numpy as np
from mtgp.kernels import Kernel


class _Base(Kernel):
    def __init__(self, variance=1.0, lengthscale=1.0):
        self.variance, self.lengthscale = variance, lengthscale

    def init_params(self):
        return {"variance": jnp.log(jnp.float64(self.variance)),
                "lengthscale": jnp.log(jnp.float64(self.lengthscale))}

    def with_params(self, p):
        return type(self)(float(np.exp(p["variance"])), float(np.exp(p["lengthscale"])))

    def _r(self, p, X1, X2):
        return jnp.abs(X1[:, None, 0] - X2[None, :, 0]) / jnp.exp(p["lengthscale"])


class ExpQuad(_Base):
    def evaluate(self, p, X1, X2):
        return jnp.exp(p["variance"]) * jnp.exp(-0.5 * self._r(p, X1, X2) ** 2)


class Laplace(_Base):
    def evaluate(self, p, X1, X2):
        return jnp.exp(p["variance"]) * jnp.exp(-self._r(p, X1, X2))


def tiny_problem():
    rng = np.random.default_rng(0)
    X = np.sort(rng.uniform(0, 5, 12))[:, None]
    Y = np.c_[np.sin(X[:, 0]), np.cos(X[:, 0])] + 0.1 * rng.normal(size=(12, 2))
    return X, Y


def icm_fit(kernel):
    from mtgp.multioutput import ICM
    X, Y = tiny_problem()
    m = ICM(kernel=kernel, max_iter=30).fit(X, Y)
    return [m.log_marginal_likelihood_] + np.asarray(m.predict(X).mean).ravel().tolist()
'''


@pytest.fixture(scope="module")
def user_kernels():
    mod = types.ModuleType("mtgp_test_user_kernels")
    exec(USER_KERNELS, mod.__dict__)
    sys.modules[mod.__name__] = mod
    yield mod
    del sys.modules[mod.__name__]


def test_structure_differs_for_different_classes(user_kernels):
    a, b = user_kernels.ExpQuad(), user_kernels.Laplace()
    assert a.structure() != b.structure()
    assert a.static() != b.static() and hash(a.structure()) != hash(b.structure())


def test_second_kernel_unaffected_by_a_collected_first_one(user_kernels, tmp_path):
    first = user_kernels.ExpQuad()
    old_id = id(first)
    res_first = user_kernels.icm_fit(first)
    del first
    gc.collect()
    for _ in range(200):  # try to get the first kernel's id for the second one
        second = user_kernels.Laplace()
        if id(second) == old_id:
            break
    res_second = user_kernels.icm_fit(second)
    assert not np.allclose(res_first[0], res_second[0])
    # a fresh process in which ExpQuad never existed
    script = tmp_path / "fresh.py"
    script.write_text(USER_KERNELS + "\nimport json\nprint(json.dumps(icm_fit(Laplace())))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(mtgp.__file__))]))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    fresh = json.loads(out.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(res_second, fresh, rtol=1e-10, atol=1e-12)


def _factory_kernel(power):
    class Custom(Kernel):  # the same __qualname__ for every call
        def init_params(self):
            return {"variance": jnp.zeros(()), "lengthscale": jnp.zeros(())}

        def with_params(self, p):
            return self

        def evaluate(self, p, X1, X2):
            r = jnp.abs(X1[:, None, 0] - X2[None, :, 0]) / jnp.exp(p["lengthscale"])
            return jnp.exp(p["variance"]) * jnp.exp(-(r**power))

    return Custom()


def _shadowing_se():
    mod = types.ModuleType("user_module")
    exec("from mtgp.kernels import SE as _SE\n"
         "class SE(_SE):\n"
         "    def evaluate(self, p, X1, X2):\n"
         "        return 2.0 * super().evaluate(p, X1, X2)\n", mod.__dict__)
    return mod.SE()


@pytest.mark.parametrize("pair", ["factory", "shadowing"])
def test_same_named_classes_have_different_structures(pair):
    a, b = (_factory_kernel(1.0), _factory_kernel(2.0)) if pair == "factory" else (SE(), _shadowing_se())
    assert a.structure() != b.structure()


def test_same_named_class_gets_its_own_program():
    """GP predictions with mtgp.kernels.SE, then with a user class also named
    SE whose kernel is twice as large: the second must not reuse the first's
    compiled prediction program."""
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 5, 10)
    y = np.sin(X)
    Xp = np.linspace(0, 5, 4)
    mtgp.GP(SE(), noise=0.1).fit((X, y), optimize=False).predict(Xp)
    two = mtgp.GP(_shadowing_se(), noise=0.1).fit((X, y), optimize=False).predict(Xp)
    K = 2.0 * np.asarray(SE()(X[:, None])) + 0.1 * np.eye(10)
    Kp = 2.0 * np.asarray(SE()(Xp[:, None], X[:, None]))
    np.testing.assert_allclose(two.mean, Kp @ np.linalg.solve(K, y), rtol=1e-8)
