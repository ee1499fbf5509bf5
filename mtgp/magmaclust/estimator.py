"""MagmaClust (Leroy, Latouche, Guedj & Gey, JMLR 2023): K clusters of
individuals, each with its own mean process mu_k ~ GP(m, C_{gamma_k}),

    Z_i ~ M(1, pi),   y_i | {Z_ik = 1} = mu_k + f_i + eps_i,

trained by variational EM (:mod:`~mtgp.magmaclust.em`) on the collapsed ELBO
(exact, no C_k^-1). K = 1 is Magma (same likelihood, hyper-posterior and
predictions; tested). Data forms, buckets and padding as :class:`mtgp.Magma`.
"""

from __future__ import annotations

import time
import warnings
from typing import List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.flatten_util import ravel_pytree

from .. import config
from .._progress import progress
from ..backends import resolve_backend
from ..base import Estimator
from ..data import as_inputs, bucket_individuals, pooled_grid, to_individuals
from ..distributions import MixtureOfGaussians, Prediction
from ..exceptions import DataError
from ..kernels import SE, Kernel
from ..linalg import LOG_2PI
from ..magma.estimator import (_check_kernel, _flat_hp, _positive_scalar, batched_predictions,
                               default_prediction_grid, new_individual_hp, new_individual_inputs,
                               used_hyperparameters)
from ..magma.prediction import population_starts
from ..magma.numerics import MagmaData
from ..means import PriorMean
from ..optim import check_n_init, perturbed_starts
from . import em
from . import prediction as pr
from .numerics import ClustParams, ClustStatic

#: a cluster whose responsibilities sum to less than this (but is not empty)
#: is reported as vanishing
VANISHING_COUNT = 1e-3


#: above this many (individual, start) pairs the k-means start runs in
#: scikit-learn, one start at a time (the vectorised one holds all starts'
#: (individual, cluster) distances at once)
KMEANS_VECTOR_MAX = 200_000

#: the initial partitions that ``init="auto"`` tries (:func:`initial_partitions`)
INIT_CANDIDATES = ("min-mean-max", "standardised", "curves")

#: VEM iterations that each distinct candidate partition of ``init="auto"``
#: runs before the one with the best ELBO is continued. 0 (default): the
#: candidates are compared by the collapsed ELBO at the initial
#: hyper-parameters with q(mu) optimal for the partition (one E step each);
#: 1: after the first iteration (tau kept at the partition, HPs fitted to
#: it), the same choice on the peer benchmark's 13 data sets at M = 60 but
#: 35% more CPU (docs/results/magmaclust_peer.md)
SCREEN_ITER = 0

#: k-means restarts of the candidates other than MagmaClustR's (which keeps
#: the package's 50): at M = 600 each 50-restart k-means costs about 0.1 s
#: CPU, a sixth of the fit
CANDIDATE_N_INIT = 10

#: "curves" features on uneven 1-D grids: each curve interpolated at this
#: many points (at most the pooled grid's size) over the pooled range
CURVE_POINTS = 30


def _kmeans_vectorised(X, K: int, n_init: int, random_state=None, max_iter: int = 300):
    """Labels (M,) of the best of ``n_init`` k-means runs (k-means++ seeding,
    Lloyd iterations until the centres stop moving), all runs at once in
    numpy: on (M, d) features with small d the per-run overheads of a
    library call are most of the cost."""
    M, d = X.shape
    rng = np.random.default_rng(random_state)
    S = int(n_init)
    xx = np.sum(X * X, axis=1)

    def dist2(C):  # (S, M, K') squared distances, without an (S, M, K', d) array
        return np.maximum(xx[None, :, None] - 2.0 * np.einsum("md,skd->smk", X, C)
                          + np.sum(C * C, axis=-1)[:, None, :], 0.0)

    C = np.empty((S, K, d))
    C[:, 0] = X[rng.integers(M, size=S)]
    D = dist2(C[:, :1])[..., 0]  # (S, M) squared distance to the nearest centre
    for j in range(1, K):
        tot = D.sum(axis=1, keepdims=True)
        p = np.where(tot > 0, D / np.where(tot > 0, tot, 1.0), 1.0 / M)
        idx = np.minimum((np.cumsum(p, axis=1) < rng.random((S, 1))).sum(axis=1), M - 1)
        C[:, j] = X[idx]
        D = np.minimum(D, dist2(C[:, j:j + 1])[..., 0])
    for _ in range(int(max_iter)):
        lab = np.argmin(dist2(C), axis=2)
        onehot = (lab[..., None] == np.arange(K)).astype(float)  # (S, M, K)
        cnt = onehot.sum(axis=1)
        new = np.where(cnt[..., None] > 0, np.einsum("smk,md->skd", onehot, X) / np.maximum(cnt, 1)[..., None], C)
        moved = np.max(np.abs(new - C))
        C = new
        if moved == 0.0:
            break
    d2 = dist2(C)
    lab = np.argmin(d2, axis=2)
    inertia = np.take_along_axis(d2, lab[..., None], axis=2)[..., 0].sum(axis=1)
    return lab[int(np.argmin(inertia))]


def _kmeans_labels(feats: np.ndarray, K: int, random_state=None, n_init: int = 50) -> np.ndarray:
    """Labels (M,) of the best of ``n_init`` k-means runs on ``feats`` (M, d):
    vectorised in numpy (:func:`_kmeans_vectorised`) up to
    ``KMEANS_VECTOR_MAX`` individual-runs, else scikit-learn's KMeans on one
    OpenMP thread (its threads' start-up and spin-waits cost far more than
    the work on small features: 14 s wall instead of 0.15 s at M = 600 on a
    loaded 2-core machine)."""
    if feats.shape[0] * int(n_init) <= KMEANS_VECTOR_MAX:
        return _kmeans_vectorised(feats, int(K), int(n_init), random_state)
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return KMeans(n_clusters=int(K), n_init=int(n_init), random_state=random_state).fit(feats).labels_


def curve_summaries(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """(min, mean, max, sd) of each individual's outputs, (M, 4), computed
    on the concatenated outputs at once (``np.ufunc.reduceat``)."""
    sizes = np.array([len(y) for y in outputs])
    y = np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in outputs])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    mean = np.add.reduceat(y, starts) / sizes
    var = np.add.reduceat((y - np.repeat(mean, sizes)) ** 2, starts) / sizes
    return np.stack([np.minimum.reduceat(y, starts), mean, np.maximum.reduceat(y, starts), np.sqrt(var)], axis=1)


def kmeans_responsibilities(outputs: Sequence[np.ndarray], n_clusters: int, random_state=None,
                            n_init: int = 50) -> np.ndarray:
    """Hard (0/1) initial responsibilities (M, K) by k-means on each
    individual's (min, mean, max) of its outputs (MagmaClustR's
    ``ini_kmeans``, nstart 50): the best of ``n_init`` runs
    (:func:`_kmeans_labels`)."""
    feats = curve_summaries(outputs)[:, :3]
    K = int(n_clusters)
    return np.eye(K)[_kmeans_labels(feats, K, random_state, n_init)]


def _standardised_summaries(outputs) -> np.ndarray:
    """(min, max, mean, sd) of each curve, each column standardised over the
    individuals (mimosa-ml's k-means features; a constant column is 0)."""
    F = curve_summaries(outputs)[:, [0, 2, 1, 3]]
    sd = F.std(axis=0)
    return (F - F.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _curve_features(inds) -> Optional[np.ndarray]:
    """Each curve as a vector: its outputs when every individual has the same
    inputs (the paper code's k-means features), else, for 1-D inputs, the
    curve linearly interpolated (constant beyond its ends) at
    ``CURVE_POINTS`` points over the pooled range; None for uneven
    multi-dimensional inputs."""
    X0 = inds.inputs[0]
    if all(X.shape == X0.shape and np.array_equal(X, X0) for X in inds.inputs):
        return np.stack([np.asarray(y, dtype=np.float64) for y in inds.outputs])
    if inds.input_dim != 1:
        return None
    lo = min(float(X.min()) for X in inds.inputs)
    hi = max(float(X.max()) for X in inds.inputs)
    n = len(np.unique(np.concatenate([X[:, 0] for X in inds.inputs])))
    t = np.linspace(lo, hi, max(2, min(CURVE_POINTS, n)))
    out = []
    for X, y in zip(inds.inputs, inds.outputs):
        order = np.argsort(X[:, 0], kind="stable")
        out.append(np.interp(t, X[order, 0], np.asarray(y, dtype=np.float64)[order]))
    return np.stack(out)


def _canonical(labels: np.ndarray) -> tuple:
    """Labels renumbered by first appearance: equal for two partitions that
    differ only by the clusters' names."""
    first = {}
    return tuple(first.setdefault(int(v), len(first)) for v in labels)


def initial_partitions(inds, n_clusters: int, random_state=None, n_init: int = 50,
                       n_init_other: int = CANDIDATE_N_INIT) -> List[tuple]:
    """The distinct candidate initial partitions of ``init="auto"``: hard
    k-means on (1) each curve's (min, mean, max) (MagmaClustR's
    ``ini_kmeans``; best of ``n_init`` runs), (2) the standardised (min,
    max, mean, sd) (mimosa-ml's features), (3) the curves themselves on a
    common grid (:func:`_curve_features`; the paper code's features on
    common grids) (2, 3: best of ``n_init_other`` runs).
    Returns [(name, tau (M, K))], the first one first, without repeats (the
    same partition up to the clusters' names is kept once, under its first
    name)."""
    K = int(n_clusters)
    feats = {"min-mean-max": curve_summaries(inds.outputs)[:, :3],
             "standardised": _standardised_summaries(inds.outputs),
             "curves": _curve_features(inds)}
    out, seen = [], set()
    for name in INIT_CANDIDATES:
        F = feats[name]
        if F is None or len(F) < K:
            continue
        labels = _kmeans_labels(F, K, random_state, n_init if name == INIT_CANDIDATES[0] else n_init_other)
        key = _canonical(labels)
        if key not in seen:
            seen.add(key)
            out.append((name, np.eye(K)[labels]))
    return out


class MagmaClust(Estimator):
    """Cluster-specific multi-task GPs (MagmaClust).

    Parameters
    ----------
    n_clusters : K.
    mean_kernel, individual_kernel : Kernel (default ``SE()``); their values
        are the initial hyper-parameters of every cluster / individual.
    shared_mean_hp : one gamma for all clusters (H_o*) or one per cluster (H_k*).
    shared_individual_hp : one (theta, sigma^2) for all individuals (H_*o) or
        one per individual (H_*i).
    noise : initial noise variance.
    prior_mean : m, the prior mean of every mu_k (constant, callable, or values
        on the pooled grid), fixed.
    max_iter, tol : at most ``max_iter`` VEM iterations; stop when the relative
        ELBO change is below ``tol`` (MagmaClustR: 25 and 1e-3).
    init : how start 0 partitions the individuals. "auto" (default): the
        distinct partitions of :func:`initial_partitions` (k-means on each
        curve's (min, mean, max) as MagmaClustR, on standardised (min, max,
        mean, sd) as mimosa-ml, on the curves on a common grid as the paper
        code) are compared by their ELBO at the initial HPs (one E step
        each; ``SCREEN_ITER``) and the best one is run
        (``fit_info_["init"]``); "kmeans": MagmaClustR's start
        only (k-means on (min, mean, max), 50 restarts).
    n_init, random_state : several starts (start 0: as ``init``, with the
        given HPs; start s > 0: MagmaClustR's k-means with another seed and
        HPs perturbed by :func:`mtgp.optim.perturbed_starts`); the best
        final ELBO is kept.
    init_responsibilities : optional (M, K) array (rows in training order,
        summing to one), replacing ``init`` for every start.
    freeze_first : keep tau at its start in the first iteration (the
        package's rule, robust to poor initial HPs).
    m_step_max_iter : L-BFGS iterations per M-step problem.
    input_columns, buckets, verbose : as :class:`mtgp.Magma` (``verbose``:
        progress of the VEM iterations with the ELBO, and of the starts).
    backend : None or an :class:`mtgp.backends.Backend`: where the
        per-individual work runs (the weighted E-step sums of each cluster,
        the responsibilities' terms, the individual M step); None:
        :class:`~mtgp.backends.Local`, this process. Same results on every
        backend.

    Attributes (after fit)
    ----------------------
    responsibilities_ : DataFrame (index ID, one column per cluster 0..K-1).
    clusters_ : Series, the MAP cluster of each individual.
    mixture_weights_ : pi (K,).
    elbo_ : the final ELBO (exact, constants included; = Magma's
        log-likelihood for K = 1); ``fit_info_["elbo_package"]`` is
        MagmaClustR's value (without K N (1 + log 2 pi) / 2).
    vbic_ : elbo_ - df log(M) / 2 (df of the note, Sec. 3.2).
    history_ : ELBO after each iteration (never decreases).
    mean_kernels_ : one fitted mean kernel per cluster; individual_kernel_,
        noise_, hyperparameters_ as Magma.
    fit_info_ : n_iter, converged, history, fit_time, n_init, best_start,
        elbo_per_start, init (one dict per tried partition: start,
        candidate, n_iter, elbo after them, chosen), empty_clusters,
        vanishing_clusters, bucket_sizes, elbo_package.
    """

    def __init__(self, n_clusters: int = 3, mean_kernel: Optional[Kernel] = None,
                 individual_kernel: Optional[Kernel] = None, shared_mean_hp: bool = True,
                 shared_individual_hp: bool = True, noise: float = 1.0, prior_mean=0.0,
                 max_iter: int = 25, tol: float = 1e-3, init: str = "auto", n_init: int = 1,
                 random_state=None, init_responsibilities=None, freeze_first: bool = True, m_step_max_iter: int = 50,
                 input_columns: Optional[Sequence[str]] = None, buckets: Optional[int] = 4,
                 verbose: Optional[bool] = None, backend=None):
        self.n_clusters = n_clusters
        self.mean_kernel = mean_kernel
        self.individual_kernel = individual_kernel
        self.shared_mean_hp = shared_mean_hp
        self.shared_individual_hp = shared_individual_hp
        self.noise = noise
        self.prior_mean = prior_mean
        self.max_iter = max_iter
        self.tol = tol
        self.init = init
        self.n_init = n_init
        self.random_state = random_state
        self.init_responsibilities = init_responsibilities
        self.freeze_first = freeze_first
        self.m_step_max_iter = m_step_max_iter
        self.input_columns = input_columns
        self.buckets = buckets
        self.verbose = verbose
        self.backend = backend

    # ------------------------------------------------------------ helpers
    def _check_params(self):
        K = int(self.n_clusters)
        if K != self.n_clusters or K < 1:
            raise ValueError(f"n_clusters must be a positive integer, got {self.n_clusters!r}")
        if int(self.max_iter) < 0:
            raise ValueError("max_iter must be >= 0")
        if not self.tol > 0:
            raise ValueError(f"tol must be positive, got {self.tol}")
        check_n_init(self.n_init)
        if self.init not in ("auto", "kmeans"):
            raise ValueError(f"init must be 'auto' or 'kmeans', got {self.init!r}")
        _positive_scalar(self.noise, "noise")
        k0 = _check_kernel(self.mean_kernel if self.mean_kernel is not None else SE(), "mean_kernel")
        ki = _check_kernel(self.individual_kernel if self.individual_kernel is not None else SE(),
                           "individual_kernel")
        return K, k0, ki

    def _initial_params(self, k0, ki, K, M) -> ClustParams:
        theta0 = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (K,) + jnp.shape(a)), k0.init_params())
        theta = {"kernel": ki.init_params(),
                 "log_noise": jnp.log(jnp.asarray(float(self.noise), dtype=jnp.float64))}
        if not self.shared_individual_hp:
            theta = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (M,) + jnp.shape(a)), theta)
        return ClustParams(theta0, theta, jnp.full(K, 1.0 / K))

    def _check_tau(self, tau, M, K):
        tau = np.asarray(tau, dtype=np.float64)
        if tau.shape != (M, K):
            raise DataError(f"init_responsibilities must have shape (n_individuals, n_clusters) = "
                            f"({M}, {K}), got {tau.shape}")
        if not np.all(np.isfinite(tau)) or np.any(tau < 0) or not np.allclose(tau.sum(axis=1), 1.0,
                                                                               atol=1e-8):
            raise DataError("init_responsibilities must be non-negative with rows summing to one")
        return tau

    def _starts(self, params, inds, K):
        """[(candidates [(name, tau0)], initial params)], one per start."""
        n = int(self.n_init)
        hp = perturbed_starts((params.theta0, params.theta), n, self.random_state)
        rng = np.random.default_rng(self.random_state)
        out = []
        for s in range(n):
            if self.init_responsibilities is not None:
                cands = [("given", self._check_tau(self.init_responsibilities, inds.n_individuals, K))]
            elif K == 1:
                cands = [("one cluster", np.ones((inds.n_individuals, 1)))]
            elif s == 0 and self.init == "auto":
                cands = initial_partitions(inds, K, self.random_state)
            else:
                seed = self.random_state if s == 0 else int(rng.integers(2**31 - 1))
                cands = [("min-mean-max", kmeans_responsibilities(inds.outputs, K, seed, n_init=50 if s == 0 else 1))]
            out.append((cands, params._replace(theta0=hp[s][0], theta=hp[s][1])))
        return out

    def _run_start(self, backend, handle, static, p0, data_, cands, optimize, bar, s, tried):
        """The VEM of one start. Several candidate partitions: each runs
        ``SCREEN_ITER`` iterations (0: its ELBO after the E step at the
        initial HPs), the best ELBO is continued from where it stopped (the
        same iterations as one run from it). Appends one dict per candidate
        to ``tried``."""
        kw = dict(tol=float(self.tol), optimize=bool(optimize), bar=bar)
        max_iter = int(self.max_iter)
        first = min(SCREEN_ITER, max_iter) if len(cands) > 1 else max_iter
        runs = [em.run_em(backend, handle, static, p0, data_, tau0, max_iter=first,
                          freeze_first=bool(self.freeze_first), **kw) for _, tau0 in cands]
        ends = [r.history[-1] if np.isfinite(r.history[-1]) else -np.inf for r in runs]
        j = int(np.argmax(ends))  # the first one on ties
        for k, ((name, _), r) in enumerate(zip(cands, runs)):
            tried.append({"start": s, "candidate": name, "n_iter": r.n_iter, "elbo": float(r.history[-1]),
                          "chosen": k == j})
        res = runs[j]
        if res.n_iter < max_iter and not res.converged and np.isfinite(res.history[-1]) and len(cands) > 1:
            more = em.run_em(backend, handle, static, res.params, data_, res.tau, max_iter=max_iter - res.n_iter,
                             freeze_first=bool(self.freeze_first) and res.n_iter == 0, **kw)
            res = more._replace(history=list(res.history) + list(more.history[1:]),
                                n_iter=res.n_iter + more.n_iter)
        return res

    def _layout(self, inds, k0, ki):
        """Pooled grid, size buckets, prior mean, the data pytree, the static model."""
        d = inds.input_dim
        k0.check_input_dim(d, "training inputs (mean_kernel)")
        ki.check_input_dim(d, "training inputs (individual_kernel)")
        grid, splits = pooled_grid(inds)
        buckets = bucket_individuals(inds, splits, grid.shape[0], self.buckets)
        prior = PriorMean(self.prior_mean, grid)
        data_ = MagmaData.from_buckets(buckets, grid, prior.values)
        static = ClustStatic(k0.static(), ki.static(), bool(self.shared_mean_hp),
                             bool(self.shared_individual_hp), int(self.m_step_max_iter))
        return grid, buckets, prior, data_, static

    # ---------------------------------------------------------------- fit
    @config.float64
    def fit(self, data, optimize: bool = True) -> "MagmaClust":
        """Train by variational EM. ``data`` as :meth:`mtgp.Magma.fit`.
        With ``optimize=False`` the HPs stay at their initial values and only
        the VE steps (and pi) run."""
        K, k0, ki = self._check_params()
        t_start = time.perf_counter()
        self._unused_warned = set()  # "column not used": once per fit (see predict)
        inds = to_individuals(data, self.input_columns, what="training data", warned=self._unused_warned)
        M = inds.n_individuals
        if M < K:
            raise DataError(f"n_clusters = {K} exceeds the number of individuals ({M})")
        grid, buckets, prior, data_, static = self._layout(inds, k0, ki)
        backend = resolve_backend(self.backend, clusters=True)
        handle = backend.prepare(data_)
        params0 = self._initial_params(k0, ki, K, M)
        best, per_start, tried = None, [], []
        n_starts = int(self.n_init)
        with progress(int(self.max_iter) * n_starts, "MagmaClust VEM", self.verbose) as bar:
            for s, (cands, p0) in enumerate(self._starts(params0, inds, K)):
                if n_starts > 1:
                    bar.note(f"MagmaClust VEM, start {s + 1}/{n_starts}")
                res = self._run_start(backend, handle, static, p0, data_, cands, optimize, bar, s, tried)
                per_start.append(res.history[-1])
                if best is None or (np.isfinite(res.history[-1])
                                    and not res.history[-1] <= best[1].history[-1]):
                    best = (s, res)
        s, res = best
        if not np.isfinite(res.history[-1]):
            raise FloatingPointError(
                "MagmaClust: the ELBO is not finite at the initial hyper-parameters of every start: an "
                "individual covariance is not positive definite (noise variance too small for the "
                "kernel?). Try a larger `noise` or different initial kernel values.")
        tau = np.asarray(res.tau)
        counts = tau.sum(axis=0)
        empty = [k for k in range(K) if counts[k] < em.EMPTY_COUNT]
        for k in range(K):
            if counts[k] < em.EMPTY_COUNT:
                warnings.warn(f"MagmaClust: cluster {k} is empty (responsibilities sum to {counts[k]:.3g}); "
                              "its mixture weight is 0, its mean process is its prior and its mean "
                              "hyper-parameters are frozen", RuntimeWarning, stacklevel=2)
            elif counts[k] < VANISHING_COUNT:
                warnings.warn(f"MagmaClust: cluster {k} is vanishing (responsibilities sum to "
                              f"{counts[k]:.3g}, less than {VANISHING_COUNT} of one individual); "
                              "consider fewer clusters", RuntimeWarning, stacklevel=2)
        N = grid.shape[0]
        info = {"n_iter": res.n_iter, "converged": res.converged, "history": np.array(res.history),
                "fit_time": time.perf_counter() - t_start, "n_init": int(self.n_init), "best_start": s,
                "elbo_per_start": per_start, "init": tried, "empty_clusters": empty,
                "vanishing_clusters": [k for k in range(K) if em.EMPTY_COUNT <= counts[k] < VANISHING_COUNT],
                "bucket_sizes": list(buckets.sizes),
                "elbo_package": float(res.history[-1]) - K * N / 2.0 * (1.0 + LOG_2PI)}
        self._set_state(inds, grid, prior, data_, static, res, info)
        return self

    def _set_state(self, inds, grid, prior, data_, static, res, info):
        K = int(self.n_clusters)
        self.inds_, self.grid_ = inds, grid
        self.input_columns_ = list(inds.input_columns)
        self.ids_ = list(inds.ids)
        self._prior, self._data, self._static = prior, data_, static
        self.theta0_, self.theta_ = res.params.theta0, res.params.theta
        self.posterior_ = res.posterior
        tau = np.asarray(res.tau)
        cols = list(range(K))
        self.responsibilities_ = pd.DataFrame(tau, index=pd.Index(self.ids_, name="ID"), columns=cols)
        self.clusters_ = pd.Series(np.argmax(tau, axis=1), index=self.responsibilities_.index,
                                   name="cluster")
        self.mixture_weights_ = np.asarray(res.params.pi, dtype=float)
        self.elbo_ = float(res.history[-1])
        self.history_ = np.asarray(res.history, dtype=float)
        self.n_iter_, self.converged_ = int(res.n_iter), bool(res.converged)
        self.mean_kernels_ = [static.k0.kernel.with_params(jax.tree_util.tree_map(lambda a: a[k], self.theta0_))
                              for k in range(K)]
        self._set_individual_attributes(static.ki.kernel)
        self.n_parameters_ = self._n_free_parameters()
        self.vbic_ = self.elbo_ - 0.5 * self.n_parameters_ * np.log(len(self.ids_))
        self.fit_info_ = info

    def _set_individual_attributes(self, ki):
        theta = self.theta_
        if self.shared_individual_hp:
            self.individual_kernel_ = ki.with_params(theta["kernel"])
            self.noise_ = float(jnp.exp(theta["log_noise"]))
            hp = _flat_hp(self.individual_kernel_.hyperparameters())
            rows = [{"ID": i, **hp, "noise": self.noise_} for i in self.ids_]
        else:
            median = jax.tree_util.tree_map(lambda a: jnp.median(a, axis=0), theta)
            self.individual_kernel_ = ki.with_params(median["kernel"])
            self.noise_ = np.exp(np.asarray(theta["log_noise"]))
            rows = []
            for k, i in enumerate(self.ids_):
                kern = ki.with_params(jax.tree_util.tree_map(lambda a: a[k], theta["kernel"]))
                rows.append({"ID": i, **_flat_hp(kern.hyperparameters()), "noise": float(self.noise_[k])})
        self.hyperparameters_ = pd.DataFrame(rows)

    def _n_free_parameters(self) -> int:
        """df of the VBIC (note, Sec. 3.2): |gamma| (x K unless shared) +
        (|theta| + 1) (x M unless shared) + K - 1."""
        K, M = int(self.n_clusters), len(self.ids_)
        n_gamma = int(ravel_pytree(jax.tree_util.tree_map(lambda a: a[0], self.theta0_))[0].size)
        one = self.theta_ if self.shared_individual_hp else jax.tree_util.tree_map(lambda a: a[0], self.theta_)
        n_theta = int(ravel_pytree(one)[0].size)
        return (n_gamma * (1 if self.shared_mean_hp else K) + n_theta * (1 if self.shared_individual_hp else M)
                + K - 1)

    # ------------------------------------------------------- save / load
    def save(self, path) -> str:
        """Save the fitted model (format "mtgp.MagmaClust/1", see
        :mod:`mtgp.magmaclust.io`); returns the file name."""
        from .io import save_magmaclust

        return save_magmaclust(self, path)

    @classmethod
    def load(cls, path) -> "MagmaClust":
        """Load a model written by :meth:`save`: one VE step (q(mu_k)) at the
        saved responsibilities and log HPs, no refit."""
        from .io import load_magmaclust

        return load_magmaclust(cls, path)

    # ------------------------------------------------------- hyper-posterior
    def _inputs(self, inputs, what):
        return as_inputs(inputs, self.input_columns_, what=what)

    @config.float64
    def hyperposterior(self, inputs=None) -> List[Prediction]:
        """q(mu_k) at ``inputs`` (default: the pooled grid): one Prediction
        per cluster (exact extension to any inputs)."""
        self._check_is_fitted()
        X = self.grid_ if inputs is None else self._inputs(inputs, "hyperposterior inputs")
        mean, cov = pr.hyperposteriors_at_jit(self._static.k0, self.theta0_, self.posterior_,
                                              jnp.asarray(self.grid_), jnp.asarray(X),
                                              jnp.asarray(self._prior(X)))
        return [Prediction(X, mean[k], cov[k], self.input_columns_, includes_noise=False,
                           what=f"hyper-posterior of the mean process of cluster {k}")
                for k in range(int(self.n_clusters))]

    # ---------------------------------------------------------------- predict
    def _default_grid(self, inds_new):
        return default_prediction_grid(self, inds_new)

    @config.float64
    def predict(self, new_data=None, inputs=None, noise: bool = True,
                hyperparameters: Optional[dict] = None,
                cluster_probabilities: str = "integrated") -> MixtureOfGaussians:
        """Predict a new individual: a mixture over clusters (note, Sec. 4).

        new_data : its observed points (as :meth:`mtgp.Magma.predict`);
            ``None``: Type II, the pi-weighted mixture of q(mu_k) plus the
            individual covariance.
        inputs : where to predict (default: 500 points over the ranges).
        noise : predict y_* (noise included) or the latent curve.
        hyperparameters : optional log HPs {"kernel", "log_noise"} of the new
            individual. Default: shared individual HPs are reused; otherwise
            they maximise the mixture marginal likelihood of y_* with a
            population prior (median for Type II).
        cluster_probabilities : "integrated" (default): the exact
            P(cluster k | y_*) given q(mu), pi_k N(y_*; m_hat_k, C_hat_k + Psi_*)
            normalised (the paper code); "variational": MagmaClustR's
            training-style form pi_k N(y_*; m_hat_k, Psi_*) exp(-tr(Psi_*^-1 C_hat_k) / 2)
            normalised (not rounded).
        """
        if cluster_probabilities not in ("integrated", "variational"):
            raise ValueError("cluster_probabilities must be 'integrated' or 'variational', got "
                             f"{cluster_probabilities!r}")
        self._check_is_fitted()
        inds_new, Xp, Xo, yo = new_individual_inputs(self, new_data, inputs)
        theta_star = new_individual_hp(
            self, hyperparameters, self.shared_individual_hp, inds_new,
            lambda: pr.learn_new_individual_hp(self._static, self.theta0_, self.theta_, self.posterior_,
                                               self.mixture_weights_, self.grid_, self._prior, Xo, yo,
                                               int(self.m_step_max_iter) * 2))
        means, covs, tau = pr.predict_new_individual(self._static, self.theta0_, theta_star, self.posterior_,
                                                     self.mixture_weights_, self.grid_, self._prior, Xp, Xo,
                                                     yo, noise=noise, probabilities=cluster_probabilities)
        kind = "MagmaClust prediction" + (" (Type II)" if inds_new is None else "")
        comps = [Prediction(Xp, means[k], covs[k], self.input_columns_, includes_noise=bool(noise),
                            what=f"{kind}, cluster {k}") for k in range(len(tau))]
        out = MixtureOfGaussians(comps, tau, what=kind)
        out.hyperparameters = used_hyperparameters(self._static.ki.kernel, theta_star)
        return out


    @config.float64
    def predict_individuals(self, new_data, inputs=None, noise: bool = True, level: float = 0.95,
                            batch_size: Optional[int] = None) -> pd.DataFrame:
        """Predict many new individuals at once (note, Sec. 4, batched): the
        same numbers as :meth:`predict` on each (to rounding; with its
        default ``cluster_probabilities="integrated"``), computed as vmapped
        batches of individuals of similar size, each one's K components at
        once, with no Python loop over them (:meth:`mtgp.Magma.predict_individuals`'s
        buckets and batches).

        new_data, inputs, level, batch_size : as
            :meth:`mtgp.Magma.predict_individuals` (a Dask DataFrame on the
            :class:`~mtgp.backends.Dask` backend is predicted on the workers).
        noise : as in :meth:`predict`.

        Returns the tidy DataFrame of :meth:`mtgp.Magma.predict_individuals`
        (``ID``, input column(s), ``Mean``, ``Var``, ``Lower``, ``Upper``), its
        values those of each individual's mixture (:class:`mtgp.MixtureOfGaussians`:
        moments, exact pointwise quantiles), then ``P_cluster_0`` ...
        ``P_cluster_{K-1}`` (the individual's cluster probabilities tau_*k,
        repeated on its rows). ``attrs["cluster_probabilities"]``: one row per
        individual (ID, then one column per cluster); ``attrs["hyperparameters"]``:
        its individual HPs (positive scale), the trained ones if shared,
        otherwise learnt as in :meth:`predict` (all individuals' L-BFGS runs in
        lock-step). Marginal variances only: use :meth:`predict` for one
        individual's covariance and components.
        """
        self._check_is_fitted()
        learn = None if self.shared_individual_hp else population_starts(self.theta_, "map")
        return batched_predictions(self, self.backend, new_data, inputs, level, lambda Xp: pr.NewIndividuals(
            self._static, self.theta0_, self.theta_ if self.shared_individual_hp else None, self.posterior_,
            self.mixture_weights_, self.grid_, self._prior, Xp, self.input_columns_, noise=noise, learn=learn,
            max_iter=int(self.m_step_max_iter) * 2, batch_size=batch_size))

def select_n_clusters(data, n_clusters=range(1, 7), **kwargs):
    """Fit :class:`MagmaClust` for each K in ``n_clusters`` (other arguments
    passed on) and pick the largest VBIC (note, Sec. 3: exact ELBO, df of
    Sec. 3.2; K = 1 is Magma). Returns (best model, DataFrame with one row
    per K: ELBO, df, VBIC)."""
    models, rows = {}, []
    for K in n_clusters:
        m = MagmaClust(n_clusters=int(K), **kwargs).fit(data)
        models[int(K)] = m
        rows.append({"n_clusters": int(K), "elbo": m.elbo_, "df": m.n_parameters_, "vbic": m.vbic_})
    table = pd.DataFrame(rows).set_index("n_clusters")
    return models[int(table["vbic"].idxmax())], table
