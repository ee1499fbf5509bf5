"""Many outputs: no (NT x NT) matrix anywhere, and the routes used for many
outputs give the numbers of the direct ones. The time and memory at
T = 100, N = 2000 are in benchmarks/multioutput_many.py (docs/results/multioutput_many.md)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtgp import config
from mtgp.multioutput import cool
from mtgp.multioutput.algebra import EigenPredictor, mtgp_log_likelihood


def _sizes(jaxpr):
    """Sizes of every intermediate in a (closed) jaxpr, sub-jaxprs included."""
    out = []
    for eqn in jaxpr.eqns:
        out += [int(np.prod(v.aval.shape)) for v in eqn.outvars if hasattr(v.aval, "shape")]
        for p in eqn.params.values():
            for sub in (p if isinstance(p, (list, tuple)) else [p]):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    out += _sizes(inner if hasattr(inner, "eqns") else inner.jaxpr)
                elif hasattr(sub, "eqns"):
                    out += _sizes(sub)
    return out


def _problem(N=40, T=12, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 2))
    K = jnp.asarray(np.exp(-0.5 * np.sum((X[:, None] - X[None]) ** 2, -1)))
    A = rng.normal(size=(T, T))
    Y = jnp.asarray(rng.normal(size=(N, T)) @ A.T)
    return K, jnp.asarray(A @ A.T), jnp.asarray(0.2 * np.eye(T)), Y


@config.float64
def test_joint_likelihood_and_predictive_never_form_an_NT_matrix():
    K, C, S, Y = _problem()
    N, T = Y.shape
    bound = 2 * max(N * N, T * T, N * T)  # far below (NT)^2 = 230400
    vg = jax.value_and_grad(mtgp_log_likelihood, argnums=(0, 1, 2))
    assert max(_sizes(jax.make_jaxpr(vg)(K, C, S, Y).jaxpr)) <= bound
    P = EigenPredictor(K, C, S, Y)  # what the predictor keeps
    assert max(int(np.prod(np.shape(v))) for v in vars(P).values()) <= bound


@config.float64
@pytest.mark.parametrize("method", ["hierarchical", "approximate"])
@pytest.mark.parametrize("sequential", [False, True])
def test_cool_objectives_memory(method, sequential, monkeypatch):
    """Cool's objective and gradient: memory O(N^2 + T^2 + N T) for HCool and
    for ~Cool on the sequential route (used for many outputs); ~Cool's
    vmapped route holds O(N T^2) (T capacitance systems of size T)."""
    K, _, _, Y = _problem()
    N, T = Y.shape
    if sequential:
        monkeypatch.setattr(cool, "SEQUENTIAL_CONDITIONALS_MIN", 0)
    b, s2 = jnp.ones(T), 0.3 * jnp.ones(T)
    if method == "approximate":
        f = lambda K, b, s2: cool.approximate_log_likelihood(K, b, s2, Y)  # noqa: E731
        bound = 2 * max(N * N, T * T, N * T) if sequential else 4 * max(N * N, T * T, N * T * T)
    else:
        f = lambda K, b, s2: cool.hierarchical_log_likelihood(K, b, s2, Y, jnp.zeros((T, T)))  # noqa: E731
        bound = 2 * max(N * N, T * T, N * T)
    jp = jax.make_jaxpr(jax.value_and_grad(f, argnums=(0, 1, 2)))(K, b, s2)
    assert max(_sizes(jp.jaxpr)) <= bound


@config.float64
def test_sequential_conditionals_match_batched(monkeypatch):
    """The one-output-at-a-time route of the conditional likelihoods (value
    and analytic gradient in K, b, sigma^2, targets and previous outputs)
    equals the vmapped one, for ~Cool's and HCool's forms."""
    K, _, _, Y = _problem(N=25, T=6)
    N, T = Y.shape
    rng = np.random.default_rng(2)
    b, s2 = jnp.asarray(rng.uniform(0.5, 2, T)), jnp.asarray(rng.uniform(0.1, 0.5, T))
    Yr = jnp.asarray(rng.normal(size=(N, T)))
    cases = [(Y, Y, jnp.tril(jnp.ones((T, T)), -1)), (Yr, jnp.zeros((N, 1)), jnp.zeros((T, 1)))]
    for Yt, Yp, mask in cases:
        f = lambda *a: cool.conditional_log_likelihoods(*a, mask)  # noqa: E731
        ref = jax.value_and_grad(f, argnums=(0, 1, 2, 3, 4))(K, b, s2, Yt, Yp)
        monkeypatch.setattr(cool, "SEQUENTIAL_CONDITIONALS_MIN", 0)
        seq = jax.value_and_grad(f, argnums=(0, 1, 2, 3, 4))(K, b, s2, Yt, Yp)
        monkeypatch.setattr(cool, "SEQUENTIAL_CONDITIONALS_MIN", 1 << 22)
        assert abs(float(ref[0]) - float(seq[0])) < 1e-9
        for x, y in zip(ref[1], seq[1]):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-8, atol=1e-9)


@config.float64
def test_many_output_routes_match_cholesky(monkeypatch):
    """MAP weights and HCool's duals through K's eigendecomposition (used when
    T N^2 is large) equal the T Cholesky factorisations."""
    K, _, _, Y = _problem(N=30, T=5)
    T = Y.shape[1]
    rng = np.random.default_rng(1)
    b, s2 = jnp.asarray(rng.uniform(0.5, 2, T)), jnp.asarray(rng.uniform(0.1, 0.5, T))
    W1, a1 = cool.map_previous_weights(K, b, s2, Y)
    d1 = cool.hierarchical_duals(K, b, s2, Y, W1)
    monkeypatch.setattr(cool, "PER_OUTPUT_DENSE_MAX", 0)
    W2, a2 = cool.map_previous_weights(K, b, s2, Y)
    d2 = cool.hierarchical_duals(K, b, s2, Y, W1)
    for x, y in ((W1, W2), (a1, a2), (d1, d2)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-8, atol=1e-9)
    # and the eigen route holds no (T, N, N) stack
    sizes = _sizes(jax.make_jaxpr(cool.map_previous_weights)(K, b, s2, Y).jaxpr)
    assert max(sizes) <= 2 * 30 * 30
