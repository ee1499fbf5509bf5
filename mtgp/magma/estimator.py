"""Magma: multi-task GPs with a common mean process (Leroy et al. 2022).

Model (Sec. 2): y_i = mu_0 + f_i + eps_i, with mu_0 ~ GP(m_0, k_theta0) shared
by all individuals, f_i ~ GP(0, c_theta_i), eps_i ~ N(0, sigma_i^2).
Training is EM (Sec. 3, Algorithm 1; :mod:`~mtgp.magma.em`); the
hyper-posterior of mu_0 is available on any grid (Prop. 4); a new, partially
observed individual is predicted through the multi-task prior of Prop. 5
(Sec. 4; :mod:`~mtgp.magma.prediction`). The numerics are pure functions
(:mod:`~mtgp.magma.numerics`), the per-individual work runs in a backend
(:mod:`mtgp.backends`), save/load in :mod:`~mtgp.magma.io`.

Glossary: in Magma a "task" is an individual.
"""

from __future__ import annotations

import time
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .. import config
from .._deprecation import DEPRECATED, renamed_argument, renamed_attribute
from ..backends import resolve_backend
from ..base import Estimator
from ..data import (Individuals, as_inputs, bin_inputs, bucket_individuals, is_dask_frame, pooled_grid,
                    to_individuals)
from ..distributions import Prediction
from ..exceptions import DataError
from ..kernels import SE, Kernel
from ..linalg import report_jitter
from ..means import PriorMean, PriorMeanSpec
from ..optim import check_n_init
from . import em
from . import prediction as pr
from .numerics import MagmaData, MagmaParams, MagmaStatic


def _check_kernel(kernel, name):
    if not isinstance(kernel, Kernel):
        raise TypeError(f"{name} must be an mtgp.kernels.Kernel, got {type(kernel).__name__}")
    return kernel


def _positive_scalar(value, name):
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return v


class _Layout(NamedTuple):
    """Everything a fit (or a load) builds from the training individuals."""

    inds: Individuals
    grid: np.ndarray
    buckets: object  # mtgp.data.Buckets
    prior: PriorMean
    data: MagmaData
    static: MagmaStatic


class Magma(Estimator):
    """Multi-task GP with a common mean process (Magma).

    Parameters
    ----------
    mean_kernel, individual_kernel : Kernel
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
        from ``n_init - 1`` random perturbations of them (log scale, sd 0.5,
        :func:`mtgp.optim.perturbed_starts`), and continues from the best one.
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
    backend : None or an :class:`mtgp.backends.Backend`
        Where the per-individual work runs (None: :class:`~mtgp.backends.Local`,
        this process). Same results on every backend.
    verbose : None, True or False
        Progress of the fit (EM iterations with the log-likelihood, starts):
        None (default) shows a bar when standard error is a terminal, True
        always, False never (:mod:`mtgp._progress`, tqdm when installed).
    task_kernel : deprecated name of ``individual_kernel``.

    Attributes (after fit)
    ----------------------
    mean_kernel_ : the fitted mean kernel.
    individual_kernel_ : fitted individual kernel (Common HP) or the
        per-individual median (Different HP); ``hyperparameters_`` has one
        row per individual. (``task_kernel_``: deprecated alias.)
    noise_ : fitted noise variance (Common HP) or array per individual.
    theta0_, theta_ : fitted log hyper-parameters (mean process; individuals).
    posterior_ : the hyper-posterior of mu_0 on ``grid_`` (factored form).
    log_likelihood_ : exact log p({y_i} | Theta) at the fitted HPs.
    history_ : that log-likelihood after each E step (never decreases).
    n_iter_, converged_, fit_time_ : EM diagnostics.
    fit_info_ : dict with ``n_iter``, ``converged``, ``history``,
        ``fit_time``, ``jitter`` (largest diagonal jitter added in the E
        steps), ``n_init``, ``best_start`` (index of the start EM continued
        from, 0 = the given one) and ``bucket_sizes``.
    ids_ : the individuals' IDs in training order.
    grid_ : the pooled grid of distinct training inputs (N, d).
    """

    def __init__(self, mean_kernel: Optional[Kernel] = None, individual_kernel: Optional[Kernel] = None,
                 noise: float = 1.0, common_hp: bool = True, prior_mean: PriorMeanSpec = 0.0,
                 max_iter: int = 25, tol: float = 1e-3, n_init: int = 1, init_iter: int = 5,
                 mean_update: str = "marginal", new_individual_hp: str = "map",
                 m_step_max_iter: int = 50, random_state: Optional[int] = None,
                 input_columns: Optional[Sequence[str]] = None, buckets: Optional[int] = 4,
                 grid_binning=None, backend=None, verbose: Optional[bool] = None,
                 task_kernel=DEPRECATED):
        self.mean_kernel = mean_kernel
        self.individual_kernel = individual_kernel
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
        self.backend = backend
        self.verbose = verbose
        self.task_kernel = task_kernel

    # ------------------------------------------------------ validation
    def _kernels(self):
        ki = renamed_argument("Magma", "task_kernel", "individual_kernel", self.task_kernel,
                              self.individual_kernel, new_default=None, stacklevel=5)
        k0 = _check_kernel(self.mean_kernel if self.mean_kernel is not None else SE(), "mean_kernel")
        ki = _check_kernel(ki if ki is not None else SE(), "individual_kernel")
        return k0, ki

    def _check_params(self):
        if self.mean_update not in ("marginal", "expected"):
            raise ValueError(f"mean_update must be 'marginal' or 'expected', got {self.mean_update!r}")
        if self.new_individual_hp not in ("map", "ml"):
            raise ValueError(f"new_individual_hp must be 'map' or 'ml', got {self.new_individual_hp!r}")
        if int(self.max_iter) < 1:
            raise ValueError("max_iter must be >= 1")
        check_n_init(self.n_init)
        if not self.tol > 0:
            raise ValueError(f"tol must be positive, got {self.tol}")
        _positive_scalar(self.noise, "noise")

    # ---------------------------------------------------------------- fit
    def _layout(self, inds: Individuals, k0: Kernel, ki: Kernel) -> _Layout:
        """Pooled grid, size buckets, prior mean and the static model."""
        d = inds.input_dim
        k0.check_input_dim(d, "training inputs (mean_kernel)")
        ki.check_input_dim(d, "training inputs (individual_kernel)")
        grid, splits = pooled_grid(inds)
        buckets = bucket_individuals(inds, splits, grid.shape[0], self.buckets)
        prior = PriorMean(self.prior_mean, grid)
        static = MagmaStatic(k0.static(), ki.static(), bool(self.common_hp), str(self.mean_update),
                             int(self.m_step_max_iter))
        return _Layout(inds, grid, buckets, prior, MagmaData.from_buckets(buckets, grid, prior.values), static)

    def _remote_layout(self, backend, ddf, k0: Kernel, ki: Kernel):
        """Fit from a Dask DataFrame on the Dask backend: the workers
        validate and lay out their partitions (:meth:`mtgp.backends.Dask.prepare_frame`);
        here only the IDs, counts, pooled grid and prior mean on it. The
        layout's ``inds`` is a :class:`mtgp.data.RemoteIndividuals` and its
        ``data`` holds no individual (the grid and prior mean only)."""
        static = MagmaStatic(k0.static(), ki.static(), bool(self.common_hp), str(self.mean_update),
                             int(self.m_step_max_iter))
        prior_box = {}

        def prior_values(grid):
            prior_box["prior"] = PriorMean(self.prior_mean, grid)
            return prior_box["prior"].values

        inds, grid, sizes, handle = backend.prepare_frame(ddf, self.input_columns, self.buckets, prior_values,
                                                          grid_binning=self.grid_binning)
        k0.check_input_dim(inds.input_dim, "training inputs (mean_kernel)")
        ki.check_input_dim(inds.input_dim, "training inputs (individual_kernel)")
        prior = prior_box["prior"]
        empty = MagmaData((), (), (), (), (), (), jnp.asarray(grid), jnp.asarray(prior.values))
        buckets = type("RemoteBuckets", (), {"sizes": sizes})()
        return _Layout(inds, grid, buckets, prior, empty, static), handle

    def _initial_params(self, k0: Kernel, ki: Kernel, M: int) -> MagmaParams:
        theta = {"kernel": ki.init_params(),
                 "log_noise": jax.device_put(np.log(np.float64(_positive_scalar(self.noise, "noise"))))}
        if not self.common_hp:
            theta = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (M,) + jnp.shape(a)), theta)
        return MagmaParams(k0.init_params(), theta)

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
        self._unused_warned = set()  # "column not used": once per fit (see predict)
        backend = resolve_backend(self.backend)
        if is_dask_frame(data) and hasattr(backend, "prepare_frame"):
            layout, handle = self._remote_layout(backend, data, k0, ki)
        else:
            if is_dask_frame(data):  # another backend: the table comes here
                data = data.compute()
            inds = to_individuals(data, self.input_columns, what="training data", warned=self._unused_warned)
            if self.grid_binning is not None:
                inds = bin_inputs(inds, self.grid_binning)
            layout = self._layout(inds, k0, ki)
            handle = backend.prepare(layout.data)
        res = em.run_em(backend, handle, layout.static, self._initial_params(k0, ki, layout.inds.n_individuals),
                        layout.data, optimize=optimize, max_iter=int(self.max_iter), tol=float(self.tol),
                        n_init=int(self.n_init), init_iter=int(self.init_iter),
                        random_state=self.random_state, verbose=self.verbose)
        report_jitter(res.jitters, "Magma E step (hyper-posterior of mu_0)")
        info = {"n_iter": res.n_iter, "converged": res.converged, "history": np.array(res.history),
                "fit_time": time.perf_counter() - t_start, "jitter": float(np.max(res.jitters)),
                "n_init": int(self.n_init), "best_start": res.best_start,
                "bucket_sizes": list(layout.buckets.sizes)}
        self._set_state(layout, backend, handle, res.params, res.posterior, info)
        return self

    def _set_state(self, layout: _Layout, backend, handle, params: MagmaParams, post, info: dict):
        """The learnt attributes (``fit_info_`` last: it marks "fitted")."""
        self.inds_, self.grid_ = layout.inds, layout.grid
        self.input_columns_ = list(layout.inds.input_columns)
        self.ids_ = list(layout.inds.ids)
        self._prior, self._static, self._data = layout.prior, layout.static, layout.data
        self.backend_, self._handle = backend, handle
        self.theta0_, self.theta_, self.posterior_ = params.theta0, params.theta, post
        self.log_likelihood_ = float(post.loglik)
        self.history_ = np.asarray(info["history"], dtype=float)
        self.n_iter_, self.converged_ = int(info["n_iter"]), bool(info["converged"])
        self.fit_time_ = float(info["fit_time"])
        self.mean_kernel_ = layout.static.k0.kernel.with_params(params.theta0)
        self._set_individual_attributes(layout.static.ki.kernel)
        self.fit_info_ = info

    def _set_individual_attributes(self, ki):
        theta = self.theta_
        rows = []
        if self.common_hp:
            self.individual_kernel_ = ki.with_params(theta["kernel"])
            self.noise_ = float(np.exp(np.asarray(theta["log_noise"])))
            hp = _flat_hp(self.individual_kernel_.hyperparameters())
            rows = [{"ID": i, **hp, "noise": self.noise_} for i in self.ids_]
        else:
            median = jax.tree_util.tree_map(lambda a: jnp.median(a, axis=0), theta)
            self.individual_kernel_ = ki.with_params(median["kernel"])
            self.noise_ = np.exp(np.asarray(theta["log_noise"]))
            for k, i in enumerate(self.ids_):
                kern = ki.with_params(jax.tree_util.tree_map(lambda a: a[k], theta["kernel"]))
                rows.append({"ID": i, **_flat_hp(kern.hyperparameters()), "noise": float(self.noise_[k])})
        self.hyperparameters_ = pd.DataFrame(rows)

    @property
    def task_kernel_(self):
        """Deprecated: use ``individual_kernel_``."""
        self._check_is_fitted()
        renamed_attribute("Magma", "task_kernel_", "individual_kernel_", stacklevel=3)
        return self.individual_kernel_

    # -------------------------------------------------------- hyper-posterior
    def _inputs(self, inputs, what):
        return as_inputs(inputs, self.input_columns_, what=what)

    @config.float64
    def hyperposterior(self, inputs=None) -> Prediction:
        """Hyper-posterior of mu_0 (Prop. 4) at ``inputs`` (default: the
        pooled training grid), using all training data: exact, as if computed
        on the union of the training and requested inputs and marginalised."""
        self._check_is_fitted()
        X = self.grid_ if inputs is None else self._inputs(inputs, "hyperposterior inputs")
        mean, cov = pr.hyperposterior_at(self._static.k0, self.theta0_, self.posterior_, self.grid_,
                                          self._prior, X)
        return Prediction(X, mean, cov, self.input_columns_, includes_noise=False,
                          what="hyper-posterior of the mean process")

    # ------------------------------------------------------------ predict
    def _default_grid(self, inds_new: Optional[Individuals]):
        return default_prediction_grid(self, inds_new)

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
        self._check_is_fitted()
        inds_new, Xp, Xo, yo = new_individual_inputs(self, new_data, inputs)
        theta_star = new_individual_hp(
            self, hyperparameters, self.common_hp, inds_new,
            lambda: pr.learn_new_individual_hp(self._static, self.theta0_, self.theta_, self.posterior_,
                                               self.grid_, self._prior, Xo, yo, self.new_individual_hp,
                                               int(self.m_step_max_iter) * 2))
        mean, cov = pr.predict_new_individual(self._static, self.theta0_, theta_star, self.posterior_,
                                              self.grid_, self._prior, Xp, Xo, yo, noise=noise)
        out = Prediction(Xp, mean, cov, self.input_columns_, includes_noise=bool(noise),
                         what="Magma prediction" + (" (Type II)" if inds_new is None else ""))
        out.hyperparameters = used_hyperparameters(self._static.ki.kernel, theta_star)
        return out

    @config.float64
    def predict_individuals(self, new_data, inputs=None, noise: bool = True, level: float = 0.95,
                            batch_size: Optional[int] = None) -> pd.DataFrame:
        """Predict many new individuals at once (Sec. 4, batched): the same
        numbers as calling :meth:`predict` on each (to rounding), computed
        as vmapped batches of individuals of similar size, with no Python
        loop over them.

        new_data : the new individuals' observed points: a long DataFrame
            (ID, input column(s), Output), a dict {id: (X, y)} or a list of
            (X, y) pairs; on the :class:`~mtgp.backends.Dask` backend also a
            Dask DataFrame whose partitions hold whole individuals (read on
            the workers, never collected here).
        inputs : where to predict every individual (default: 500 points over
            the range of the training inputs and of all new individuals'
            inputs, 1-D only; :meth:`predict` uses the range of its one
            individual instead).
        noise : as in :meth:`predict`.
        level : probability of the Lower/Upper interval.
        batch_size : individuals per compiled batch (default: chosen from
            the sizes so that a batch's temporaries stay near 256 MB).

        Returns a tidy DataFrame with one row per (individual, input): ``ID``,
        the input column(s), ``Mean``, ``Var``, ``Lower``, ``Upper``
        (:meth:`mtgp.distributions.Prediction.to_frame`'s columns), individuals
        in their order of first appearance. ``attrs["hyperparameters"]`` holds
        one row per individual: its HPs (positive scale), the trained ones
        (Common HP) or learnt as in Sec. 4.3 (Different HP, ``new_individual_hp``),
        all individuals' L-BFGS runs batched in lock-step. Marginal variances
        only: use :meth:`predict` for one individual's full covariance.

        On the :class:`~mtgp.backends.Dask` backend each partition of the new
        individuals is predicted on a worker: only the hyper-posterior on
        the pooled grid, the HPs and the prediction inputs are sent there.
        """
        self._check_is_fitted()
        learn = None if self.common_hp else pr.population_starts(self.theta_, self.new_individual_hp)
        return batched_predictions(self, self.backend_, new_data, inputs, level, lambda Xp: pr.NewIndividuals(
            self._static, self.theta0_, self.theta_ if self.common_hp else None, self.posterior_, self.grid_,
            self._prior, Xp, self.input_columns_, noise=noise, learn=learn,
            max_iter=int(self.m_step_max_iter) * 2, batch_size=batch_size))

    # ------------------------------------------------------- save / load
    def save(self, path) -> str:
        """Save the fitted model (format "mtgp.Magma/2", see
        :mod:`mtgp.magma.io`); returns the file name (``.npz`` added)."""
        from .io import save_magma

        return save_magma(self, path)

    @classmethod
    def load(cls, path) -> "Magma":
        """Load a model written by :meth:`save`: one E step at the saved log
        hyper-parameters, no refit; predictions equal the saved model's."""
        from .io import load_magma

        return load_magma(cls, path)


def batched_predictions(model, backend, new_data, inputs, level, make_predictor) -> pd.DataFrame:
    """``predict_individuals`` of the Magma family: the new individuals
    validated (or a Dask DataFrame left where it is), the prediction inputs
    (``inputs`` or :func:`default_prediction_grid`), then
    ``make_predictor(Xp)``'s ``frame`` run here, or on the workers of a
    ``backend`` that has ``predict_individuals`` (:class:`mtgp.backends.Dask`);
    a Dask DataFrame on another backend is collected here first."""
    remote = is_dask_frame(new_data)
    inds = None
    if not remote:
        inds = to_individuals(new_data, model.input_columns_, what="new individuals",
                              warned=model.__dict__.setdefault("_unused_warned", set()))
        if inds.input_dim != len(model.input_columns_):
            raise DataError(
                f"new individuals: inputs have dimension {inds.input_dim} but the model was "
                f"trained on {len(model.input_columns_)}-dimensional inputs {model.input_columns_}")
    if inputs is not None:
        Xp = model._inputs(inputs, "prediction inputs")
    elif remote:
        col = model.input_columns_[0]
        span = (new_data[col].min(), new_data[col].max()) if len(model.input_columns_) == 1 else None
        import dask

        Xp = default_prediction_grid(model, None, span=None if span is None else dask.compute(*span))
    else:
        Xp = model._default_grid(inds)
    predictor = make_predictor(Xp)
    if hasattr(backend, "predict_individuals"):
        return backend.predict_individuals(predictor, new_data if remote else inds, level=level)
    if remote:
        return batched_predictions(model, None, new_data.compute(), Xp, level, lambda _: predictor)
    return predictor.frame(inds, level)


def default_prediction_grid(model, inds_new, span=None) -> np.ndarray:
    """500 points spanning the training grid, every new individual's inputs
    and ``span`` = (lo, hi) if given (the new inputs' range computed
    elsewhere, e.g. on Dask workers); one-dimensional inputs only, otherwise
    ``inputs=`` is required."""
    if len(model.input_columns_) != 1:
        raise DataError("inputs= is required for multi-dimensional inputs")
    lo, hi = float(model.grid_[:, 0].min()), float(model.grid_[:, 0].max())
    if inds_new is not None:
        span = (min(float(X[:, 0].min()) for X in inds_new.inputs),
                max(float(X[:, 0].max()) for X in inds_new.inputs))
    if span is not None:
        lo, hi = min(lo, float(span[0])), max(hi, float(span[1]))
    return np.linspace(lo, hi, 500)[:, None]


def new_individual_inputs(model, new_data, inputs):
    """(validated new individual or None, prediction inputs, its inputs, its
    outputs) for ``predict`` of the Magma family (Sec. 4; None: Type II)."""
    inds_new = None
    if new_data is not None:
        inds_new = to_individuals(new_data, model.input_columns_, what="new individual", single=True,
                                  warned=model.__dict__.setdefault("_unused_warned", set()))
        if inds_new.input_dim != len(model.input_columns_):
            raise DataError(
                f"new individual: inputs have dimension {inds_new.input_dim} but the model was "
                f"trained on {len(model.input_columns_)}-dimensional inputs {model.input_columns_}")
    Xp = model._default_grid(inds_new) if inputs is None else model._inputs(inputs, "prediction inputs")
    Xo = yo = None
    if inds_new is not None:
        Xo, yo = inds_new.inputs[0], inds_new.outputs[0]
    return inds_new, Xp, Xo, yo


def new_individual_hp(model, hyperparameters, shared: bool, inds_new, learn):
    """The new individual's HPs: the given ones, the shared trained set, the
    population median (Type II, individual HPs not shared) or ``learn()``
    (Sec. 4.3)."""
    if hyperparameters is not None:
        return jax.tree_util.tree_map(jnp.asarray, hyperparameters)
    if shared:
        return model.theta_
    if inds_new is None:
        return jax.tree_util.tree_map(lambda a: jnp.median(a, axis=0), model.theta_)
    return learn()


def used_hyperparameters(kernel, theta) -> dict:
    """The individual HPs a prediction used, on the positive scale."""
    kern = kernel.with_params(theta["kernel"])
    return {**_flat_hp(kern.hyperparameters()), "noise": float(np.exp(np.asarray(theta["log_noise"])))}


def _flat_hp(hp: dict) -> dict:
    out = {}
    for name, v in hp.items():
        if np.ndim(v) == 0:
            out[name] = float(v)
        else:
            for j, x in enumerate(np.asarray(v)):
                out[f"{name}_{j + 1}"] = float(x)
    return out
