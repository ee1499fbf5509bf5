"""Magma: multi-task GPs with a common mean process (Leroy et al. 2022).

Model (Sec. 2): y_i = mu_0 + f_i + eps_i, with mu_0 ~ GP(m_0, k_theta0) shared
by all individuals, f_i ~ GP(0, c_theta_i), eps_i ~ N(0, sigma_i^2).
Training is EM (Sec. 3, Algorithm 1); the hyper-posterior of mu_0 is
available on any grid (Prop. 4); a new, partially observed individual is
predicted through the multi-task prior of Prop. 5 (Sec. 4).

The numerics live in :mod:`mtgp._magma_core` (pure JAX, batched over
individuals, no K0^-1: see its docstring for the exact formulation).
"""

from __future__ import annotations

import json
import time
import warnings
from typing import Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.flatten_util import ravel_pytree

from .. import config
from ..data import (Individuals, as_inputs, bin_inputs, bucket_individuals, pad_observations,
                    pooled_grid, to_individuals)
from ..distributions import Prediction
from ..base import Estimator, check_is_fitted
from ..exceptions import DataError
from ..kernels import SE, Kernel, kernel_from_dict
from ..linalg import report_jitter
from ..means import PriorMean, PriorMeanSpec
from . import numerics as core


def _check_kernel(kernel, name):
    if not isinstance(kernel, Kernel):
        raise TypeError(f"{name} must be an mtgp.kernels.Kernel, got {type(kernel).__name__}")
    return kernel


def _positive_scalar(value, name):
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return v


def _tree_index(tree, i):
    return jax.tree_util.tree_map(lambda a: a[i], tree)


class Magma(Estimator):
    """Multi-task GP with a common mean process (Magma).

    Parameters
    ----------
    mean_kernel, task_kernel : Kernel
        Covariance of the mean process mu_0 (k_theta0) and of the individual
        processes f_i (c_theta_i). Their values are the initial
        hyper-parameters. Default ``SE()``.
    noise : float
        Initial noise variance sigma^2 of every individual.
    common_hp : bool
        True: all individuals share (theta, sigma^2) (Prop. 3, "Common HP");
        False: each has its own (Prop. 2, "Different HP").
    prior_mean : float, callable or array
        m_0: a constant, a callable of the inputs (n, d) -> (n,), or one value
        per distinct training input (sorted).
    max_iter, tol : EM stops after ``max_iter`` iterations or when the
        relative change of the exact marginal log-likelihood is below ``tol``
        (MagmaClustR's defaults: 25 and 1e-3).
    n_init, init_iter : repeated short runs (Sec. 3.2): with ``n_init > 1``,
        EM runs ``init_iter`` iterations from the given hyper-parameters and
        from ``n_init - 1`` random perturbations of them (log scale, sd 0.5),
        and continues from the best one.
    mean_update : "marginal" or "expected"
        How theta_0 is updated in the M step. "expected" is the paper's
        objective (Props. 2/3: log N(m_hat; m0, K0) - Tr(K_hat K0^-1)/2), which
        needs K0^-1 and so a small jitter (relative 1e-8): on dense grids,
        where K0 is numerically singular, that jitter is not negligible and
        the likelihood was seen to decrease along EM iterations.
        "marginal" (default) first updates the individual HPs (Props. 2/3),
        then maximises the exact marginal likelihood in theta_0 at the new
        individual HPs (an ECME step, Liu & Rubin 1994): monotone, and exact
        on numerically singular K0.
    new_individual_hp : "map", "ml"
        Different HP only: how a new individual's HPs are learnt (Sec. 4.3).
        "ml" maximises N(y_*; m_hat(t_*), K_hat + Psi_*) as in the paper;
        "map" (default) adds a Gaussian prior on the log HPs fitted to the
        trained individuals (mean and sd, sd floored at 0.1), which avoids the
        degenerate fits that 10-20 points often give. Both use several starts
        (the population median and quantiles).
    m_step_max_iter : L-BFGS iterations per M-step optimisation.
    random_state : seed for the random starts.
    input_columns : names of the input columns of DataFrame data (default:
        ``Input`` or ``Input_1..Input_d``).
    buckets : int or None
        Exact speed-up: individuals are grouped into at most this many buckets
        of similar size, each padded only to its own size (sizes 1, 2, 3, 4,
        6, 8, 12, 16, 24, 32, 48, ...), so one long individual does not pad
        everyone. ``None`` or 1 pads all to the largest. Same results.
    grid_binning : None or float (or one float per input dimension)
        APPROXIMATE, opt-in. ``None`` (default): the pooled grid is the exact
        union of the training inputs. A width ``w`` moves every input to the
        nearest multiple of ``w`` before fitting (nothing is dropped), so the
        pooled grid has at most range / w points: this bounds the (N x N)
        work when the union is very large (e.g. ages recorded to the day).
        Inputs move by at most w / 2; keep w well below the lengthscales.
        The training data stored in the model are the binned ones.

    Attributes (after fit)
    ----------------------
    mean_kernel_ : the fitted mean kernel.
    task_kernel_ : fitted individual kernel (Common HP) or the per-individual
        median (Different HP); ``hyperparameters_`` has one row per individual.
    noise_ : fitted noise variance (Common HP) or array per individual.
    log_likelihood_ : exact log p({y_i} | Theta) at the fitted HPs.
    history_ : that log-likelihood after each E step (never decreases).
    n_iter_, converged_, fit_time_ : EM diagnostics.
    ids_ : the individuals' IDs in training order.
    grid_ : the pooled grid of distinct training inputs (N, d).
    """

    def __init__(self, mean_kernel: Optional[Kernel] = None, task_kernel: Optional[Kernel] = None,
                 noise: float = 1.0, common_hp: bool = True, prior_mean: PriorMeanSpec = 0.0,
                 max_iter: int = 25, tol: float = 1e-3, n_init: int = 1, init_iter: int = 5,
                 mean_update: str = "marginal", new_individual_hp: str = "map",
                 m_step_max_iter: int = 50, random_state: Optional[int] = None,
                 input_columns: Optional[Sequence[str]] = None, buckets: Optional[int] = 4,
                 grid_binning=None):
        self.mean_kernel = mean_kernel
        self.task_kernel = task_kernel
        self.noise = noise
        self.common_hp = common_hp
        self.prior_mean = prior_mean
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.init_iter = init_iter
        self.mean_update = mean_update
        self.new_individual_hp = new_individual_hp
        self.m_step_max_iter = m_step_max_iter
        self.random_state = random_state
        self.input_columns = input_columns
        self.buckets = buckets
        self.grid_binning = grid_binning

    # ------------------------------------------------------------ helpers
    def _kernels(self):
        k0 = _check_kernel(self.mean_kernel if self.mean_kernel is not None else SE(), "mean_kernel")
        ki = _check_kernel(self.task_kernel if self.task_kernel is not None else SE(), "task_kernel")
        return k0, ki

    def _check_params(self):
        if self.mean_update not in ("marginal", "expected"):
            raise ValueError(f"mean_update must be 'marginal' or 'expected', got {self.mean_update!r}")
        if self.new_individual_hp not in ("map", "ml"):
            raise ValueError(f"new_individual_hp must be 'map' or 'ml', got {self.new_individual_hp!r}")
        if int(self.max_iter) < 1 or int(self.n_init) < 1:
            raise ValueError("max_iter and n_init must be >= 1")
        if not self.tol > 0:
            raise ValueError(f"tol must be positive, got {self.tol}")
        _positive_scalar(self.noise, "noise")

    def _require_fit(self):
        check_is_fitted(self, "theta0_")

    # ---------------------------------------------------------------- fit
    @config.float64
    def fit(self, data, optimize: bool = True) -> "Magma":
        """Train by EM (Algorithm 1). ``data``: long DataFrame (ID, Input(s),
        Output), dict {id: (X, y)} or list of (X, y).

        With ``optimize=False`` only the E step runs: the hyper-posterior is
        computed with the given hyper-parameters, which are left unchanged.
        """
        self._check_params()
        t_start = time.perf_counter()
        k0, ki = self._kernels()
        inds = to_individuals(data, self.input_columns, what="training data")
        if self.grid_binning is not None:
            inds = bin_inputs(inds, self.grid_binning)
        d = inds.input_dim
        k0.check_input_dim(d, "training inputs (mean_kernel)")
        ki.check_input_dim(d, "training inputs (task_kernel)")
        grid, splits = pooled_grid(inds)
        pad = bucket_individuals(inds, splits, grid.shape[0], self.buckets)
        prior = PriorMean(self.prior_mean, grid)
        M = inds.n_individuals

        theta0 = k0.init_params()
        theta = {"kernel": ki.init_params(), "log_noise": jnp.log(jnp.asarray(_positive_scalar(self.noise, "noise"), dtype=jnp.float64))}
        if not self.common_hp:
            theta = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (M,) + jnp.shape(a)), theta)

        blk = lambda f: tuple(jnp.asarray(getattr(b, f)) for b in pad.blocks)
        arrays = (jnp.asarray(grid), jnp.asarray(prior.values), blk("X"), blk("y"), blk("mask"),
                  blk("idx"), tuple(jnp.asarray(r) for r in pad.rows))
        sk0, ski = k0.static(), ki.static()
        common = bool(self.common_hp)

        def e_step(t0, th):
            return core.e_step_jit(sk0, ski, common, t0, th, *arrays)

        def iterate(t0, th, post):
            return core.em_iteration(sk0, ski, common, self.mean_update, int(self.m_step_max_iter),
                                         t0, th, post, *arrays)

        jitter = []
        post = e_step(theta0, theta)
        history = [float(post.loglik)]
        jitter.append(max(float(post.jitter_S), float(post.jitter_B)))
        self._check_loglik(history[-1], "the initial hyper-parameters")
        n_iter, converged = 0, False
        if optimize:
            if int(self.n_init) > 1:
                theta0, theta, post, history = self._best_of_starts(
                    theta0, theta, post, history, e_step, iterate)
            while n_iter < int(self.max_iter):
                new0, new, new_post = iterate(theta0, theta, post)
                ll = float(new_post.loglik)
                n_iter += 1
                if not np.isfinite(ll):
                    warnings.warn(f"EM iteration {n_iter}: non-finite log-likelihood; "
                                  "keeping the previous hyper-parameters", RuntimeWarning, stacklevel=2)
                    break
                theta0, theta, post = new0, new, new_post
                jitter.append(max(float(post.jitter_S), float(post.jitter_B)))
                prev = history[-1]
                history.append(ll)
                if abs(ll - prev) / max(abs(prev), 1e-12) < float(self.tol):
                    converged = True
                    break
        report_jitter(np.array(jitter), "Magma E step (hyper-posterior of mu_0)")

        # learnt state
        self.inds_, self.grid_, self.input_columns_ = inds, grid, list(inds.input_columns)
        self._prior = prior
        self._static = (sk0, ski)
        self._padded = pad
        self._arrays = arrays
        self.theta0_, self.theta_, self.posterior_ = theta0, theta, post
        self.ids_ = list(inds.ids)
        self.log_likelihood_ = float(post.loglik)
        self.history_ = np.array(history)
        self.n_iter_, self.converged_ = n_iter, converged
        self.mean_kernel_ = k0.with_params(theta0)
        self._set_individual_attributes(ki)
        self.fit_time_ = time.perf_counter() - t_start
        return self

    def _check_loglik(self, ll, when):
        if not np.isfinite(ll):
            raise FloatingPointError(
                f"Magma: the marginal log-likelihood is not finite at {when}: an individual covariance "
                "is not positive definite (noise variance too small for the kernel?). Try a larger "
                "`noise` or different initial kernel values."
            )

    def _best_of_starts(self, theta0, theta, post, history, e_step, iterate):
        rng = np.random.default_rng(self.random_state)
        candidates = [(theta0, theta)]
        for _ in range(int(self.n_init) - 1):
            jiggle = lambda a: a + 0.5 * rng.standard_normal(np.shape(a))
            candidates.append((jax.tree_util.tree_map(jiggle, theta0), jax.tree_util.tree_map(jiggle, theta)))
        best = None
        for t0, th in candidates:
            p = e_step(t0, th)
            hist = [float(p.loglik)]
            if not np.isfinite(hist[0]):
                continue
            for _ in range(int(self.init_iter)):
                t0, th, p = iterate(t0, th, p)
                if not np.isfinite(float(p.loglik)):
                    break
                hist.append(float(p.loglik))
            if best is None or hist[-1] > best[3][-1]:
                best = (t0, th, p, hist)
        if best is None:
            return theta0, theta, post, history
        # history restarts from the chosen start's own trajectory
        return best

    def _set_individual_attributes(self, ki):
        theta = self.theta_
        rows = []
        if self.common_hp:
            self.task_kernel_ = ki.with_params(theta["kernel"])
            self.noise_ = float(jnp.exp(theta["log_noise"]))
            hp = self.task_kernel_.hyperparameters()
            for i in self.ids_:
                rows.append({"ID": i, **_flat_hp(hp), "noise": self.noise_})
        else:
            median = jax.tree_util.tree_map(lambda a: jnp.median(a, axis=0), theta)
            self.task_kernel_ = ki.with_params(median["kernel"])
            self.noise_ = np.exp(np.asarray(theta["log_noise"]))
            for k, i in enumerate(self.ids_):
                kern = ki.with_params(_tree_index(theta["kernel"], k))
                rows.append({"ID": i, **_flat_hp(kern.hyperparameters()), "noise": float(self.noise_[k])})
        self.hyperparameters_ = pd.DataFrame(rows)

    # -------------------------------------------------------- hyper-posterior
    def _inputs(self, inputs, what):
        return as_inputs(inputs, self.input_columns_, what=what)

    @config.float64
    def hyperposterior(self, inputs=None) -> Prediction:
        """Hyper-posterior of mu_0 (Prop. 4) at ``inputs`` (default: the
        pooled training grid), using all training data: exact, as if computed
        on the union of the training and requested inputs and marginalised."""
        self._require_fit()
        X = self.grid_ if inputs is None else self._inputs(inputs, "hyperposterior inputs")
        mean, cov = core.mean_posterior_at_jit(self._static[0], self.theta0_, self.posterior_,
                                               jnp.asarray(self.grid_), jnp.asarray(X),
                                               jnp.asarray(self._prior(X)))
        return Prediction(X, mean, cov, self.input_columns_, includes_noise=False,
                          what="hyper-posterior of the mean process")

    # ------------------------------------------------------------ predict
    def _default_grid(self, inds_new: Optional[Individuals]):
        if len(self.input_columns_) != 1:
            raise DataError("inputs= is required for multi-dimensional inputs")
        lo, hi = float(self.grid_[:, 0].min()), float(self.grid_[:, 0].max())
        if inds_new is not None:
            lo = min(lo, float(inds_new.inputs[0].min()))
            hi = max(hi, float(inds_new.inputs[0].max()))
        return np.linspace(lo, hi, 500)[:, None]

    @config.float64
    def predict(self, new_data=None, inputs=None, noise: bool = True,
                hyperparameters: Optional[dict] = None) -> Prediction:
        """Predict a new individual (Sec. 4).

        new_data : its observed points (DataFrame with the input columns and
            ``Output``, optionally one ``ID``; or an (X, y) pair). ``None``
            gives the Type II prediction: hyper-posterior of mu_0 plus the
            individual covariance.
        inputs : where to predict (default: 500 points over the range of the
            training and new inputs, 1-D only).
        noise : True (default) predicts the noisy output y_* (Prop. 5, noise
            variance included); False the noise-free latent mu_0 + f_*.
        hyperparameters : optional {"kernel": log params, "log_noise": ...}
            for the new individual. Default: Common HP reuses the trained HPs;
            Different HP learns them as in Sec. 4.3 (see ``new_individual_hp``)
            or, for Type II, uses the population median.

        The returned Prediction carries ``hyperparameters`` (the individual's
        HPs used, positive scale) as an attribute.
        """
        self._require_fit()
        sk0, ski = self._static
        inds_new = None
        if new_data is not None:
            inds_new = to_individuals(new_data, self.input_columns_, what="new individual", single=True)
            if inds_new.input_dim != len(self.input_columns_):
                raise DataError(
                    f"new individual: inputs have dimension {inds_new.input_dim} but the model was "
                    f"trained on {len(self.input_columns_)}-dimensional inputs {self.input_columns_}")
        Xp = self._default_grid(inds_new) if inputs is None else self._inputs(inputs, "prediction inputs")
        grid = jnp.asarray(self.grid_)
        m0_p = jnp.asarray(self._prior(Xp))
        if hyperparameters is not None:
            theta_star = jax.tree_util.tree_map(jnp.asarray, hyperparameters)
        elif self.common_hp:
            theta_star = self.theta_
        elif inds_new is None:
            theta_star = jax.tree_util.tree_map(lambda a: jnp.median(a, axis=0), self.theta_)
        else:
            theta_star = self._learn_new_hp(inds_new)
        if inds_new is None:
            mean, cov = core.predict_prior_jit(sk0, ski, bool(noise), self.theta0_, theta_star,
                                               self.posterior_, grid, jnp.asarray(Xp), m0_p)
        else:
            Xo, yo, m0_o, mask_o = pad_observations(inds_new.inputs[0], inds_new.outputs[0],
                                                     self._prior(inds_new.inputs[0]))
            mean, cov, jit_o = core.predict_jit(sk0, ski, bool(noise), self.theta0_, theta_star,
                                                self.posterior_, grid, jnp.asarray(Xp), m0_p,
                                                jnp.asarray(Xo), jnp.asarray(yo), jnp.asarray(m0_o),
                                                jnp.asarray(mask_o))
            report_jitter(np.asarray(jit_o), "Magma.predict (new individual's covariance)")
        pred = Prediction(Xp, mean, cov, self.input_columns_, includes_noise=bool(noise),
                          what="Magma prediction" + (" (Type II)" if inds_new is None else ""))
        kern = self._static[1].kernel.with_params(theta_star["kernel"])
        pred.hyperparameters = {**_flat_hp(kern.hyperparameters()),
                                "noise": float(jnp.exp(theta_star["log_noise"]))}
        return pred

    def _learn_new_hp(self, inds_new: Individuals):
        """Sec. 4.3 for Different HP, from several starts taken in the trained
        population (median and quantiles), optionally with a population prior."""
        sk0, ski = self._static
        Xo, yo = inds_new.inputs[0], inds_new.outputs[0]
        mu_o, K_o = core.mean_posterior_at_jit(sk0, self.theta0_, self.posterior_, jnp.asarray(self.grid_),
                                               jnp.asarray(Xo), jnp.asarray(self._prior(Xo)))
        flat = jax.vmap(lambda t: ravel_pytree(t)[0])(self.theta_)  # (M, p)
        flat_np = np.asarray(flat)
        qs = np.quantile(flat_np, [0.5, 0.1, 0.25, 0.75, 0.9], axis=0)
        _, unravel = ravel_pytree(_tree_index(self.theta_, 0))
        starts = jax.vmap(unravel)(jnp.asarray(np.vstack([qs, flat_np[:3]])))
        if self.new_individual_hp == "map":
            prior_mean = jnp.asarray(flat_np.mean(axis=0))
            sd = np.maximum(flat_np.std(axis=0), 0.1)
            prior_prec = jnp.asarray(1.0 / sd**2)
        else:
            prior_mean = jnp.zeros(flat_np.shape[1])
            prior_prec = jnp.zeros(flat_np.shape[1])
        theta_star, _ = core.fit_new_individual_jit(ski, int(self.m_step_max_iter) * 2, starts,
                                                    jnp.asarray(Xo), jnp.asarray(yo), mu_o, K_o,
                                                    prior_mean, prior_prec)
        return theta_star

    # ------------------------------------------------------- save / load
    @config.float64
    def save(self, path) -> None:
        """Save the fitted model (kernels, hyper-parameters, training data) to
        an ``.npz`` file; :meth:`load` gives back identical predictions."""
        self._require_fit()
        if self._prior.kind == "callable":
            raise ValueError("a model with a callable prior_mean cannot be saved: give the prior mean as "
                             "a constant or as values on the training inputs")
        k0, ki = self._static[0].kernel, self._static[1].kernel
        meta = {
            "format": "mtgp.Magma/1",
            "params": {k: getattr(self, k) for k in (
                "noise", "common_hp", "max_iter", "tol", "n_init", "init_iter", "mean_update",
                "new_individual_hp", "m_step_max_iter", "random_state", "buckets", "grid_binning")},
            "input_columns": self.input_columns_,
            "mean_kernel": k0.to_dict(),
            "task_kernel": ki.to_dict(),
            "ids": [_jsonable(i) for i in self.ids_],
            "prior_kind": self._prior.kind,
            "history": self.history_.tolist(),
            "n_iter": self.n_iter_,
            "converged": self.converged_,
        }
        frame = self.inds_.to_frame()
        theta0_flat, _ = ravel_pytree(self.theta0_)
        theta_flat, _ = ravel_pytree(self.theta_)
        np.savez(path, meta=np.array(json.dumps(meta)), theta0=np.asarray(theta0_flat),
                 theta=np.asarray(theta_flat), inputs=frame[self.input_columns_].to_numpy(),
                 outputs=frame["Output"].to_numpy(), counts=self.inds_.counts,
                 prior_values=self._prior.values, prior_constant=np.array(
                     float(self._prior.spec) if self._prior.kind == "constant" else np.nan))

    @classmethod
    @config.float64
    def load(cls, path) -> "Magma":
        """Load a model written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            if meta.get("format") != "mtgp.Magma/1":
                raise ValueError(f"{path}: not a saved mtgp.Magma model")
            k0 = kernel_from_dict(meta["mean_kernel"])
            ki = kernel_from_dict(meta["task_kernel"])
            prior = float(f["prior_constant"]) if meta["prior_kind"] == "constant" else f["prior_values"]
            model = cls(mean_kernel=k0, task_kernel=ki, prior_mean=prior,
                        input_columns=meta["input_columns"], **meta["params"])
            counts = f["counts"]
            bounds = np.cumsum(counts)[:-1]
            inputs = np.split(f["inputs"], bounds)
            outputs = np.split(f["outputs"], bounds)
            data = {i: (X, y) for i, X, y in zip(meta["ids"], inputs, outputs)}
            theta0_flat, theta_flat = f["theta0"], f["theta"]
        # rebuild parameter pytrees with the right structure, then run the E step
        model._restore(data, meta, theta0_flat, theta_flat)
        return model

    def _restore(self, data, meta, theta0_flat, theta_flat):
        k0, ki = self._kernels()
        M = len(meta["ids"])
        _, un0 = ravel_pytree(k0.init_params())
        proto = {"kernel": ki.init_params(), "log_noise": jnp.zeros(())}
        if not self.common_hp:
            proto = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (M,) + jnp.shape(a)), proto)
        _, un = ravel_pytree(proto)
        theta0 = un0(jnp.asarray(theta0_flat))
        theta = un(jnp.asarray(theta_flat))
        self.mean_kernel = k0.with_params(theta0)
        if self.common_hp:
            self.task_kernel = ki.with_params(theta["kernel"])
            self.noise = float(jnp.exp(theta["log_noise"]))
        self.fit(data, optimize=False)
        # E step at the saved log-parameters themselves: the kernels hold
        # exp(log) values, which need not round-trip to the last bit
        self.theta0_, self.theta_ = theta0, theta
        sk0, ski = self._static
        self.posterior_ = core.e_step_jit(sk0, ski, bool(self.common_hp), theta0, theta, *self._arrays)
        self.log_likelihood_ = float(self.posterior_.loglik)
        self.mean_kernel_ = k0.with_params(theta0)
        self._set_individual_attributes(ki)
        self.history_ = np.array(meta["history"])
        self.n_iter_, self.converged_ = meta["n_iter"], meta["converged"]



def _flat_hp(hp: dict) -> dict:
    out = {}
    for name, v in hp.items():
        if np.ndim(v) == 0:
            out[name] = float(v)
        else:
            for j, x in enumerate(np.asarray(v)):
                out[f"{name}_{j + 1}"] = float(x)
    return out


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    return x if isinstance(x, (int, float, str)) or x is None else str(x)
