"""Prediction of a new individual (Sec. 4): the hyper-posterior of mu0 at
[t_pred, t_obs] (Prop. 4), the multi-task prior N(m_hat_0, K_hat + Psi_*)
of Prop. 5, optional learning of the new individual's HPs (Sec. 4.3), then
Gaussian conditioning on its observed points. Type II prediction (no
observed point) is the hyper-posterior plus the individual covariance."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..data import pad_observations, padded_size
from ..gp.numerics import gp_nll
from ..linalg import report_jitter, safe_cholesky, symmetrize, tri_solve
from ..optim import lbfgs_parallel_backtracking
from .numerics import mean_posterior_at, mean_posterior_at_jit

# quantiles of the trained population's log HPs used as starts (Sec. 4.3)
START_QUANTILES = (0.5, 0.1, 0.25, 0.75, 0.9)
# floor of the population prior's sd on each log HP (new_individual_hp="map")
PRIOR_SD_FLOOR = 0.1


@partial(jax.jit, static_argnames=("k0", "ki", "include_noise"))
def predict_jit(k0, ki, include_noise, theta0, theta_star, post, grid, Xp, m0_p, Xo, yo, m0_o,
                mask_o=None):
    """Type I prediction (Sec. 4): multi-task prior of Prop. 5 on [Xp, Xo],
    then Gaussian conditioning on the new individual's observations.

    ``mask_o`` (optional) marks real observations when Xo, yo are padded to a
    bucket size (one compiled program for many individuals): padded points
    get an identity block with no cross-covariance, so they change nothing."""
    Xa = jnp.concatenate([Xp, Xo], axis=0)
    mu, Kmu = mean_posterior_at(k0, theta0, post, grid, Xa, jnp.concatenate([m0_p, m0_o]))
    noise = jnp.exp(theta_star["log_noise"])
    G = Kmu + ki.evaluate(theta_star["kernel"], Xa, Xa)
    n_p = Xp.shape[0]
    G_pp, G_po, G_oo = G[:n_p, :n_p], G[:n_p, n_p:], G[n_p:, n_p:]
    if mask_o is None:
        mask_o = jnp.ones(Xo.shape[0], dtype=G.dtype)
    G_oo = G_oo * (mask_o[:, None] * mask_o[None, :]) + jnp.diag(noise * mask_o + (1.0 - mask_o))
    G_po = G_po * mask_o[None, :]
    if include_noise:
        G_pp = G_pp + noise * jnp.eye(n_p, dtype=G.dtype)
    L, jit_o = safe_cholesky(G_oo)
    W = tri_solve(L, G_po.T)
    mean = mu[:n_p] + W.T @ tri_solve(L, (yo - mu[n_p:]) * mask_o)
    cov = symmetrize(G_pp - W.T @ W)
    return mean, cov, jit_o


@partial(jax.jit, static_argnames=("k0", "ki", "include_noise"))
def predict_prior_jit(k0, ki, include_noise, theta0, theta_star, post, grid, Xp, m0_p):
    """Type II prediction: hyper-posterior of mu0 plus the individual covariance."""
    mu, Kmu = mean_posterior_at(k0, theta0, post, grid, Xp, m0_p)
    G = Kmu + ki.evaluate(theta_star["kernel"], Xp, Xp)
    if include_noise:
        G = G + jnp.exp(theta_star["log_noise"]) * jnp.eye(Xp.shape[0], dtype=G.dtype)
    return mu, G


def new_individual_nll(ki, theta, Xo, yo, mu_o, Kmu_o, mask_o=None):
    """-log N(y_*; m_hat(t_*), K_hat(t_*) + Psi_theta(t_*)) (Sec. 4.3): the GP
    marginal likelihood with the hyper-posterior covariance added (padding,
    where ``mask_o`` is 0, excluded exactly)."""
    return gp_nll(ki, theta, Xo, yo, mu_o, extra_cov=Kmu_o, mask=mask_o)


@partial(jax.jit, static_argnames=("ki", "max_iter"))
def fit_new_individual_jit(ki, max_iter, starts, Xo, yo, mu_o, Kmu_o, prior_mean, prior_prec, mask_o=None):
    """Sec. 4.3 from several starts at once (one vmapped L-BFGS); optional
    Gaussian prior on the flattened log HPs (prior_prec = 0 gives plain
    maximum likelihood). ``mask_o`` (optional) marks the real points when
    the observations are padded to a bucket size (padding excluded exactly).
    Returns the best start's HPs and objective."""
    _, unravel = ravel_pytree(jax.tree_util.tree_map(lambda a: a[0], starts))
    n_real = Xo.shape[0] if mask_o is None else jnp.sum(mask_o)

    def objective(flat):
        th = unravel(flat)
        pen = 0.5 * jnp.sum(prior_prec * (flat - prior_mean) ** 2)
        return (new_individual_nll(ki, th, Xo, yo, mu_o, Kmu_o, mask_o) + pen) / n_real

    flat_starts = jax.vmap(lambda t: ravel_pytree(t)[0])(starts)
    res = jax.vmap(lambda x: lbfgs_parallel_backtracking(objective, x, max_iter=max_iter))(flat_starts)
    best = jnp.argmin(jnp.where(jnp.isfinite(res.value), res.value, jnp.inf))
    return unravel(res.params[best]), res.value[best] * n_real


def population_starts(theta, mode: str):
    """Starts and prior of Sec. 4.3 taken in the trained population's
    (Different-HP) log HPs ``theta``: the quantiles
    :data:`START_QUANTILES` and the first three individuals as starts;
    ``mode="map"``: a Gaussian prior (population mean and sd, sd floored at
    :data:`PRIOR_SD_FLOOR`) on the flattened log HPs, ``"ml"``: none
    (zero precision). Returns (starts, prior_mean, prior_prec)."""
    flat_np = np.asarray(jax.vmap(lambda t: ravel_pytree(t)[0])(theta))  # (M, p)
    qs = np.quantile(flat_np, list(START_QUANTILES), axis=0)
    _, unravel = ravel_pytree(jax.tree_util.tree_map(lambda a: a[0], theta))
    starts = jax.vmap(unravel)(jnp.asarray(np.vstack([qs, flat_np[:3]])))
    if mode == "map":
        prior_mean = jnp.asarray(flat_np.mean(axis=0))
        prior_prec = jnp.asarray(1.0 / np.maximum(flat_np.std(axis=0), PRIOR_SD_FLOOR) ** 2)
    else:
        prior_mean = prior_prec = jnp.zeros(flat_np.shape[1])
    return starts, prior_mean, prior_prec


def learn_new_individual_hp(static, theta0, theta, post, grid, prior, Xo, yo, mode: str, max_iter: int):
    """Sec. 4.3 for Different HP: the new individual's log HPs, from several
    starts taken in the trained population (quantiles of the M individuals'
    log HPs and the first three of them); ``mode="map"`` adds a Gaussian
    prior fitted to the population (sd floored), ``"ml"`` is the paper's
    maximum likelihood. The observations are padded to a bucket size
    (:func:`mtgp.data.padded_size`, masked exactly), so that new individuals
    of similar size share one compiled program."""
    Xo, yo, m0_o, mask_o = pad_observations(Xo, yo, prior(Xo))
    mu_o, K_o = mean_posterior_at_jit(static.k0, theta0, post, jnp.asarray(grid), jnp.asarray(Xo),
                                      jnp.asarray(m0_o))
    starts, prior_mean, prior_prec = population_starts(theta, mode)
    theta_star, _ = fit_new_individual_jit(static.ki, int(max_iter), starts, jnp.asarray(Xo),
                                           jnp.asarray(yo), mu_o, K_o, prior_mean, prior_prec,
                                           jnp.asarray(mask_o))
    return theta_star


def pad_rows(A, n_pad: int) -> np.ndarray:
    """``A`` ((n, ...) array) with rows appended up to ``n_pad``: copies of its
    first row (finite inputs for the kernels; the results there are sliced
    off)."""
    A = np.asarray(A, dtype=np.float64)
    return np.concatenate([A, np.repeat(A[:1], n_pad - len(A), axis=0)])


def hyperposterior_at(k0, theta0, post, grid, prior, X):
    """Hyper-posterior mean (n,) and covariance (n, n) of mu0 at X (Prop. 4),
    with X padded to :func:`mtgp.data.padded_size` (padding copies a real
    input, the results are sliced back: exact) so that a new number of
    inputs reuses a compiled program."""
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    n_pad = padded_size(n)
    mean, cov = mean_posterior_at_jit(k0, theta0, post, jnp.asarray(grid), jnp.asarray(pad_rows(X, n_pad)),
                                      jnp.asarray(pad_rows(prior(X), n_pad)))
    return np.asarray(mean)[:n], np.asarray(cov)[:n, :n]


def predict_new_individual(static, theta0, theta_star, post, grid, prior, Xp, Xo=None, yo=None,
                           noise: bool = True):
    """Mean (n,) and covariance (n, n) at Xp: Type I (Prop. 5 then
    conditioning on (Xo, yo)) or Type II (``Xo`` None). The prediction
    inputs Xp are padded to :func:`mtgp.data.padded_size` (copies of a real
    input; the rows and columns of the padding are sliced off) and the
    observations to a bucket size (masked), so that new individuals and new
    numbers of prediction inputs of similar size share one compiled program;
    both paddings are exact."""
    Xp = np.asarray(Xp, dtype=np.float64)
    n = len(Xp)
    n_pad = padded_size(n)
    grid = jnp.asarray(grid)
    Xp_pad, m0_p = jnp.asarray(pad_rows(Xp, n_pad)), jnp.asarray(pad_rows(prior(Xp), n_pad))
    if Xo is None:
        mean, cov = predict_prior_jit(static.k0, static.ki, bool(noise), theta0, theta_star, post, grid,
                                      Xp_pad, m0_p)
        return np.asarray(mean)[:n], np.asarray(cov)[:n, :n]
    Xo, yo, m0_o, mask_o = pad_observations(Xo, yo, prior(Xo))
    mean, cov, jit_o = predict_jit(static.k0, static.ki, bool(noise), theta0, theta_star, post, grid,
                                   Xp_pad, m0_p, jnp.asarray(Xo), jnp.asarray(yo),
                                   jnp.asarray(m0_o), jnp.asarray(mask_o))
    report_jitter(np.asarray(jit_o), "Magma.predict (new individual's covariance)")
    return np.asarray(mean)[:n], np.asarray(cov)[:n, :n]


# --------------------------------------------------------------------------
# Many new individuals at once (issue 15): size buckets, one vmapped program
# per (bucket size, batch size), no Python loop over individuals.

# elements (float64) of the largest per-batch intermediate aimed at when the
# batch size is chosen automatically (about 256 MB of temporaries)
BATCH_ELEMENTS = 2 ** 25


@partial(jax.jit, static_argnames=("k0", "ki", "include_noise", "max_iter"))
def predict_batch_jit(k0, ki, include_noise, max_iter, theta0, theta, post, grid, Xp, m0_p,
                      Xo, yo, m0_o, mask_o, learn=None):
    """Sec. 4 for B new individuals padded to one size (``Xo`` (B, n, d),
    ``yo``, ``m0_o``, ``mask_o`` (B, n)) at the same prediction inputs
    ``Xp``: the vmap of :func:`predict_jit` over the individuals, preceded,
    with ``learn = (starts, prior_mean, prior_prec)`` (Different HP), by the
    vmap of :func:`fit_new_individual_jit` (Sec. 4.3: each individual's HPs
    by L-BFGS from the population starts; the batch runs in lock-step, a
    finished member frozen). ``theta`` is the shared individual HPs (Common
    HP) or ignored. Returns the means (B, n_p), the diagonals of the
    covariances (B, n_p), the jitter of each conditioning (B,) and the HPs
    used (batched)."""

    def one(X, y, m0, mk):
        if learn is None:
            th = theta
        else:
            starts, prior_mean, prior_prec = learn
            mu_o, K_o = mean_posterior_at(k0, theta0, post, grid, X, m0)
            th, _ = fit_new_individual_jit(ki, max_iter, starts, X, y, mu_o, K_o, prior_mean, prior_prec, mk)
        mean, cov, jit_o = predict_jit(k0, ki, include_noise, theta0, th, post, grid, Xp, m0_p, X, y, m0, mk)
        return mean, jnp.diagonal(cov), jit_o, th

    return jax.vmap(one)(Xo, yo, m0_o, mask_o)


def _batch_size(n_members: int, n_obs: int, n_pred: int, n_grid: int, batch_size) -> int:
    """Individuals per compiled batch: ``batch_size`` or, when None, as many
    as keep the largest per-individual intermediates ((n_pred + n_obs)^2 and
    (n_pred + n_obs) x n_grid) near :data:`BATCH_ELEMENTS`; rounded up the
    size ladder (:func:`mtgp.data.padded_size`) so that few batch shapes
    (compiled programs) occur."""
    if batch_size is None:
        n_a = n_pred + n_obs
        batch_size = max(1, BATCH_ELEMENTS // (n_a * n_a + n_a * n_grid))
    b = min(int(batch_size), int(n_members))
    if b < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    return padded_size(b, minimum=1)


def predict_buckets(inds, prior, batch, n_pred: int, n_grid: int, batch_size=None):
    """Run ``batch(X, y, m0, mask)`` (B new individuals padded to one size:
    ``X`` (B, n, d), ``y``, ``m0`` (prior mean), ``mask`` (B, n)) over the
    individuals of ``inds`` (an :class:`mtgp.data.Individuals`): each one's
    observations are padded to :func:`mtgp.data.padded_size` of its count
    (masked, exact), individuals of one padded size form a bucket, run as
    batches of :func:`_batch_size` (``n_pred``, ``n_grid``: the sizes it
    weighs; the last batch is filled with copies of its first individual,
    whose results are dropped). ``batch`` returns a pytree of arrays with a
    leading batch axis; the result is that pytree over the M individuals
    (numpy), in the order of ``inds``. Shared by :class:`NewIndividuals`
    and MagmaClust's batched prediction."""
    from ..data import Individuals, pad_individuals

    counts = inds.counts
    sizes = np.array([padded_size(c) for c in counts], dtype=np.int64)
    pieces = []
    for s in np.unique(sizes):  # one bucket per padded size
        rows = np.flatnonzero(sizes == s)
        sub = Individuals([inds.ids[k] for k in rows], [inds.inputs[k] for k in rows],
                          [inds.outputs[k] for k in rows], inds.input_columns)
        pad = pad_individuals(sub, [np.zeros(counts[k], dtype=np.int64) for k in rows], 0, size=int(s))
        m0 = np.zeros_like(pad.y)
        m0[pad.mask > 0] = prior(np.concatenate(sub.inputs, axis=0))
        B = _batch_size(len(rows), int(s), n_pred, n_grid, batch_size)
        for start in range(0, len(rows), B):  # batches of B individuals (the last padded)
            sel = np.arange(start, start + B)
            sel = np.where(sel < len(rows), sel, start)
            out = batch(jnp.asarray(pad.X[sel]), jnp.asarray(pad.y[sel]), jnp.asarray(m0[sel]),
                        jnp.asarray(pad.mask[sel]))
            k = min(B, len(rows) - start)
            pieces.append((rows[start:start + k], jax.tree_util.tree_map(lambda a: np.asarray(a)[:k], out)))
    back = np.argsort(np.concatenate([r for r, _ in pieces]))  # to the order of inds
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a)[back], *[p for _, p in pieces])


class NewIndividuals:
    """Batched Sec. 4 prediction of many new individuals at the same inputs,
    from a fitted Magma's state only: the hyper-posterior of mu0 on the
    pooled grid (factored form, O(N^2)), theta0, the individual HPs (Common
    HP) or the population starts and prior of Sec. 4.3 (Different HP), the
    prior mean and the prediction inputs. Small and picklable: it is what
    :meth:`mtgp.backends.Dask.predict_individuals` sends to the workers (no
    training data). Built by :meth:`mtgp.Magma.predict_individuals`.

    Each new individual's observations are padded to
    :func:`mtgp.data.padded_size` of its count (masked, exact; the same
    padding as :meth:`mtgp.Magma.predict`), individuals of one padded size
    form a bucket, and each bucket runs as vmapped batches of
    :func:`predict_batch_jit`."""

    def __init__(self, static, theta0, theta, post, grid, prior, Xp, input_columns, noise: bool,
                 learn=None, max_iter: int = 100, batch_size=None):
        to_np = lambda t: jax.tree_util.tree_map(np.asarray, t)
        self.static, self.prior = static, prior
        self.theta0, self.theta, self.post = to_np(theta0), to_np(theta), to_np(post)
        self.grid = np.asarray(grid, dtype=np.float64)
        self.Xp = np.asarray(Xp, dtype=np.float64)
        self.input_columns = list(input_columns)
        self.noise = bool(noise)
        self.learn = None if learn is None else to_np(tuple(learn))
        self.max_iter = int(max_iter)
        self.batch_size = batch_size

    def _device_state(self):
        """(k0, ki, theta0, theta, post, grid, learn) as device arrays."""
        theta0, theta, post, grid = (jax.tree_util.tree_map(jnp.asarray, t)
                                     for t in (self.theta0, self.theta, self.post, self.grid))
        learn = None if self.learn is None else jax.tree_util.tree_map(jnp.asarray, self.learn)
        return self.static.k0, self.static.ki, theta0, theta, post, grid, learn

    def _prediction_inputs(self):
        """(n, Xp padded to :func:`mtgp.data.padded_size`, prior mean there)."""
        n_pad = padded_size(len(self.Xp))
        return (len(self.Xp), jnp.asarray(pad_rows(self.Xp, n_pad)),
                jnp.asarray(pad_rows(self.prior(self.Xp), n_pad)))

    def predict(self, inds):
        """Means (M, n_p), variances (M, n_p) (clipped at 0) and the HPs used
        (log scale, batched over the M individuals of ``inds``, an
        :class:`mtgp.data.Individuals`), in the order of ``inds``."""
        from ..config import float64_scope

        with float64_scope():
            n, Xp, m0_p = self._prediction_inputs()
            k0, ki, theta0, theta, post, grid, learn = self._device_state()
            batch = lambda X, y, m0, mk: predict_batch_jit(k0, ki, self.noise, self.max_iter, theta0, theta,
                                                           post, grid, Xp, m0_p, X, y, m0, mk, learn=learn)
            mu, vv, jit_o, theta_all = predict_buckets(inds, self.prior, batch, Xp.shape[0], len(self.grid),
                                                       self.batch_size)
        report_jitter(np.asarray(np.max(jit_o)), "Magma.predict_individuals (new individuals' covariances)")
        return mu[:, :n], np.clip(vv[:, :n], 0.0, None), theta_all

    def frame(self, inds, level: float = 0.95):
        """The tidy table of :meth:`mtgp.Magma.predict_individuals` for
        ``inds``: ID, the input column(s), Mean, Var, Lower, Upper (central
        interval of probability ``level``), one row per (individual,
        prediction input); ``attrs["hyperparameters"]`` one row per
        individual (positive scale)."""
        from ..distributions import _normal_quantile

        mean, var, theta = self.predict(inds)
        z = _normal_quantile(level)
        sd = np.sqrt(var)
        return self.table(inds, mean, var, mean - z * sd, mean + z * sd, theta)

    def table(self, inds, mean, var, lower, upper, theta):
        """The tidy table of :meth:`frame` from the (M, n_p) arrays and the
        batched HPs."""
        import pandas as pd

        M, n = mean.shape
        df = pd.DataFrame(np.tile(self.Xp, (M, 1)), columns=self.input_columns)
        df.insert(0, "ID", np.repeat(np.asarray(inds.ids, dtype=object), n))
        df["Mean"], df["Var"] = mean.reshape(-1), var.reshape(-1)
        df["Lower"], df["Upper"] = lower.reshape(-1), upper.reshape(-1)
        hp = {"ID": list(inds.ids)}
        for name, v in self.static.ki.kernel.with_params(theta["kernel"]).hyperparameters().items():
            v = np.asarray(v).reshape(M, -1)
            names = [name] if v.shape[1] == 1 else [f"{name}_{j + 1}" for j in range(v.shape[1])]
            hp.update({c: v[:, j] for j, c in enumerate(names)})
        hp["noise"] = np.exp(np.asarray(theta["log_noise"])).reshape(M)
        df.attrs["hyperparameters"] = pd.DataFrame(hp)
        return df
