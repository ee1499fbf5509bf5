"""Common machinery of the multi-output estimators (shared inputs, T outputs).

Glossary: a column of Y is an *output* (the Cool-MTGP paper calls it a
"task"); C is the output covariance and Sigma the noise covariance of the
joint model ``vec(Y) ~ N(0, C (x) K + Sigma (x) I)`` (eq. 4).

All four estimators (:class:`~mtgp.multioutput.CoolMTGP`,
:class:`~mtgp.multioutput.IndependentGPs`, :class:`~mtgp.multioutput.ICM`,
:class:`~mtgp.multioutput.StructuredNoiseMTGP`) are scikit-learn estimators:
constructor arguments are stored as given, everything learnt ends in ``_``,
``fit_info_`` (set last by ``fit``) is what "fitted" means. They share one
optimiser (:func:`minimize`, L-BFGS, budget ``max_iter`` iterations,
gradient tolerance ``tol`` on the per-observation negative log-likelihood),
one several-start rule (:func:`best_of_starts`: ``n_init`` starts from
:func:`mtgp.optim.perturbed_starts`, the best objective kept), one exact
predictive (:class:`EigenPredictor`, eq. 5) and one file format
(``save`` / ``load`` through :mod:`mtgp.io`).
"""

from __future__ import annotations

import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .. import config
from .. import kernels as _k
from .._deprecation import renamed_attribute
from ..base import Estimator
from ..compile import cached_jit
from ..data import padded_size
from ..distributions import MultiOutputPrediction
from ..exceptions import DegenerateOutputsWarning, MtgpDeprecationWarning
from ..io import pack_row_index, unpack_row_index
from ..optim import minimize_host, perturbed_starts
from .algebra import condition_on_own_row_noise, condition_on_row_outputs, make_predictor
from .validation import (_warn_if_indexes_differ, check_fit_data, check_observed_outputs, check_outputs,
                         check_predict_inputs, feature_names)


#: the fitted noise covariance counts as collapsing when its smallest
#: eigenvalue, in units of the training outputs' variances (Sigma_ij /
#: sqrt(var_i var_j)), is below this: along some combination of the
#: standardised outputs the noise sd is under 1% of the data's, and the
#: intervals of y* along it rest on that (see docs/multioutput.md,
#: "Noise floor and honest intervals")
NOISE_COLLAPSE_RATIO = 1e-4

#: a noise variance counts as held by the floor ``min_noise_variance`` when it
#: is at most this multiple of the floor: the floor is at least half of it.
#: L-BFGS on log-parameters slows as a variance runs to 0, so a fit often
#: stops with the free part at 10-20% of the floor, not at 0 (andro,
#: docs/multioutput.md)
NOISE_FLOOR_BINDING = 2.0

#: the joint predictive (``full_cov=True``) is computed at padded inputs only
#: while its padded size T * n_pad stays at or below this (a 128 MB matrix):
#: above, compilation is cheap next to the O(n^2 T^2) work, and padding
#: could more than double the memory
MAX_PADDED_JOINT = 4096


def pad_inputs(Xs, full_cov: bool, n_outputs: int) -> np.ndarray:
    """Prediction inputs ``Xs`` (n, D) padded to :func:`mtgp.data.padded_size`
    with copies of the first row, so that a new number of inputs of similar
    size reuses the compiled programs (the results are sliced back: exact).
    The joint predictive pads only up to :data:`MAX_PADDED_JOINT`."""
    n = Xs.shape[0]
    n_pad = padded_size(n)
    if full_cov and n_outputs * n_pad > MAX_PADDED_JOINT:
        n_pad = n
    return np.concatenate([Xs, np.repeat(Xs[:1], n_pad - n, axis=0)])


def unpad_joint(joint, n: int, n_outputs: int) -> np.ndarray:
    """The output-major joint covariance (T n_pad, T n_pad) of padded inputs
    restricted to the first ``n`` inputs: (T n, T n), still output-major."""
    T = n_outputs
    n_pad = joint.shape[0] // T
    J = np.asarray(joint).reshape(T, n_pad, T, n_pad)[:, :n, :, :n]
    return J.reshape(T * n, T * n)


def output_variances(Y) -> np.ndarray:
    """Variance of each output over its observed values (NaN = missing)."""
    Y = np.asarray(Y)
    return np.nanvar(Y, axis=0) if np.isnan(Y).any() else np.var(Y, axis=0)


def output_covariance(Y) -> np.ndarray:
    """Empirical (T, T) covariance of the outputs, pairwise over the rows
    where both outputs are observed (NaN = missing; 0 where two outputs share
    fewer than two rows). Used for starting values only."""
    Y = np.asarray(Y, dtype=float)
    obs = np.isfinite(Y)
    Z = np.where(obs, Y - np.nanmean(Y, axis=0), 0.0)
    n = obs.T.astype(float) @ obs.astype(float)
    return np.where(n >= 2, (Z.T @ Z) / np.maximum(n, 1.0), 0.0)


def apply_mask(mask, free, fixed):
    return jax.tree_util.tree_map(lambda m, a, b: b if m else a, mask, free, fixed)


def minimize(key, objective, x0, args, max_iter, tol):
    """The shared optimiser of the multi-output models:
    :func:`mtgp.optim.minimize_host` (scipy's L-BFGS-B, memory 10, driven
    from Python on a jitted value-and-gradient, one compiled program per
    ``key``): at most ``max_iter`` iterations, stops when the largest
    gradient component is below ``tol`` (or the relative decrease below
    1e-12); the result is never worse than x0. Returns ``.params``,
    ``.value``, ``.n_iter``."""
    return minimize_host(key, objective, x0, args, max_iter=max_iter, tol=tol, ftol=1e-12,
                         max_linesearch=20)


def run_info(res, max_iter) -> dict:
    """``fit_info_`` entries of one :func:`minimize` run: iterations, final
    objective, and whether it stopped on a tolerance before the budget."""
    n_iter = int(res.n_iter)
    converged = n_iter < int(max_iter)
    return dict(n_iter=n_iter, objective=float(res.value), converged=converged,
                stop_reason="tolerance" if converged else "max_iter")


def best_of_starts(run, x0, n_init, random_state):
    """The several-start rule of every multi-output estimator: ``run(start)``
    -> ``(loss, payload)`` from each of :func:`mtgp.optim.perturbed_starts`
    (``x0`` itself first, then ``n_init - 1`` perturbations of the
    log-scale parameter pytree); returns ``(payload, index)`` of the lowest
    finite loss (the first start on ties, so ``n_init=1`` is one plain run)."""
    outs = [run(s) for s in perturbed_starts(x0, n_init, random_state)]
    losses = [float(l) if np.isfinite(l) else np.inf for l, _ in outs]
    best = int(np.argmin(losses))
    return outs[best][1], best


def minimize_from_starts(key, objective, x0, args, max_iter, tol, n_init, random_state):
    """:func:`minimize` from each of :func:`best_of_starts`'s starts; returns
    ``(result kept, its start index, its fit_info_ entries)``."""
    def run(start):
        res = minimize(key, objective, start, args, int(max_iter), float(tol))
        return float(res.value), res

    res, best = best_of_starts(run, x0, n_init, random_state)
    return res, best, dict(run_info(res, max_iter), best_start=best)


def _row_index(first, second=None):
    """The pandas row index of ``first``, else of ``second`` (None when
    neither is a DataFrame or Series): the labels predictions keep."""
    import pandas as pd

    for data in (first, second):
        if isinstance(data, (pd.DataFrame, pd.Series)):
            return data.index
    return None


def store_params(est, params: dict) -> None:
    """Store constructor arguments as given (``__init__(**locals())``)."""
    for name, value in params.items():
        if name not in ("self", "__class__"):
            setattr(est, name, value)


def _deprecated_alias(old, new):
    """A read-only property ``old`` returning ``new`` with a
    :class:`~mtgp.exceptions.MtgpDeprecationWarning`."""
    def get(self):
        renamed_attribute(type(self).__name__, old, new, stacklevel=3)
        return getattr(self, new)

    return property(get, doc=f"Deprecated name of ``{new}``.")


def deprecated_function(func, old):
    """``func`` under its old name ``old``, warning when called."""
    def alias(*args, **kwargs):
        warnings.warn(f"{old} is renamed {func.__name__}; the old name will be removed in the next release",
                      MtgpDeprecationWarning, stacklevel=2)
        return func(*args, **kwargs)

    alias.__name__ = old
    alias.__doc__ = f"Deprecated name of :func:`{func.__name__}`."
    return alias


def _to_json(value):
    if isinstance(value, _k.Kernel):
        return {"__kernel__": value.to_dict()}
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    return value


def _from_json(value):
    if isinstance(value, dict) and set(value) == {"__kernel__"}:
        return _k.kernel_from_dict(value["__kernel__"])
    return value


def _pack(prefix, value, arrays):
    """JSON description of a fitted attribute; its arrays go to ``arrays``."""
    if isinstance(value, (np.ndarray, jax.Array)):
        arrays[prefix] = np.asarray(value)
        return {"__array__": prefix}
    if isinstance(value, dict):
        return {"__dict__": {k: _pack(f"{prefix}/{k}", v, arrays) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"__list__": [_pack(f"{prefix}/{i}", v, arrays) for i, v in enumerate(value)]}
    return _to_json(value)


def _unpack(desc, arrays):
    if isinstance(desc, dict) and "__array__" in desc:
        return arrays[desc["__array__"]]
    if isinstance(desc, dict) and "__dict__" in desc:
        return {k: _unpack(v, arrays) for k, v in desc["__dict__"].items()}
    if isinstance(desc, dict) and "__list__" in desc:
        return [_unpack(v, arrays) for v in desc["__list__"]]
    return desc


class MultiOutputGP(Estimator):
    """Base class: validation, optional output standardisation, exact
    predictive, scikit-learn conventions, save / load. Subclasses implement
    ``_fit_core`` (on the internal, possibly standardised, scale) which sets
    ``_theta`` (kernel log hyper-parameters), ``_C`` and ``_Sigma`` and
    returns the ``fit_info_`` entries of the run kept.

    Fitted attributes (on the scale of the data as given):
    ``kernel_`` (fitted kernel, callable), ``output_covariance_`` C (T, T),
    ``noise_covariance_`` Sigma (T, T), ``log_marginal_likelihood_`` (eq. 4 at
    the fitted C, Sigma, kernel), ``n_outputs_``, ``n_features_in_``,
    ``feature_names_in_`` (only when X was a DataFrame with string column
    names: ``predict`` then takes a DataFrame's columns by name, any order,
    and raises :class:`~mtgp.exceptions.DataError` naming missing or extra
    ones), ``output_names_``, ``fit_time_`` (seconds) and ``fit_info_``: a dict with
    ``n_iter`` (L-BFGS iterations of the run kept), ``objective`` (its final
    minimised value: negative log-likelihood per observation, internal
    scale), ``converged`` and ``stop_reason``, ``n_init`` and ``best_start``
    (index of the start kept, 0 = the default start), ``fit_time``,
    ``noise_min_eigenvalue`` and ``noise_floor_outputs`` (the fitted noise
    covariance's smallest eigenvalue in units of the outputs' variances, and
    the outputs whose noise the floor ``min_noise_variance`` holds up; fit
    warns with a :class:`~mtgp.exceptions.DegenerateOutputsWarning` when
    either shows a collapsing noise: :meth:`_noise_diagnostics`).
    """

    #: fitted attributes beyond the base class's that save / load keep
    _saved_attributes: tuple = ()

    # deprecated names (the paper's "task" is an output here)
    n_tasks_ = _deprecated_alias("n_tasks_", "n_outputs_")
    task_names_ = _deprecated_alias("task_names_", "output_names_")
    task_covariance_ = _deprecated_alias("task_covariance_", "output_covariance_")

    # ---- hooks --------------------------------------------------------
    def _default_kernel(self):
        return _k.SE()

    def _get_kernel(self):
        k = getattr(self, "kernel", None)
        return self._default_kernel() if k is None else k

    def _fit_core(self, X, Y):  # pragma: no cover - abstract
        raise NotImplementedError

    def _resolve_params(self):
        """Hook: check / resolve (deprecated) constructor arguments at fit."""

    # ---- fit ----------------------------------------------------------
    @config.float64
    def fit(self, X, Y):
        """Fit to inputs ``X`` (N, D) and outputs ``Y`` (N, T) (arrays or DataFrames)."""
        t0 = time.perf_counter()
        self._resolve_params()
        Xa, Ya, names = check_fit_data(X, Y)
        kernel = self._get_kernel()
        if not isinstance(kernel, _k.Kernel):
            raise TypeError(f"kernel must be an mtgp.kernels.Kernel, got {type(kernel).__name__}")
        kernel.check_input_dim(Xa.shape[1], "training inputs")
        if getattr(self, "max_iter", 1) < 1:
            raise ValueError("max_iter must be >= 1")
        self._set_data(kernel, Xa, Ya, names, bool(self.normalize_y))
        self._set_feature_names(feature_names(X))
        self._row_index = _row_index(Y, X)
        info = self._fit_core(Xa, self._Y)
        self._finish(warn=True)
        noise = self._noise_diagnostics(warn=True)
        self.fit_time_ = time.perf_counter() - t0
        self.fit_info_ = dict(info, **noise, n_init=int(getattr(self, "n_init", 1)), fit_time=self.fit_time_)
        return self

    def _set_data(self, kernel, Xa, Ya, names, normalize):
        self._missing = bool(np.isnan(Ya).any())
        if normalize and self._missing:  # moments of the observed values of each output
            self._y_mean = np.nanmean(Ya, axis=0)
            self._y_std = np.nanstd(Ya, axis=0)
        elif normalize:
            self._y_mean = Ya.mean(axis=0)
            self._y_std = Ya.std(axis=0)
        else:
            self._y_mean = np.zeros(Ya.shape[1])
            self._y_std = np.ones(Ya.shape[1])
        self._kernel_struct = kernel
        self.n_features_in_ = Xa.shape[1]
        self.n_outputs_ = Ya.shape[1]
        self.output_names_ = list(names)
        self._X = Xa
        self._Y_data = Ya
        self._Y = (Ya - self._y_mean) / self._y_std

    def _set_feature_names(self, names):
        """``feature_names_in_`` (scikit-learn's convention): the training
        DataFrame's column names (all strings), absent otherwise."""
        if names is None:
            self.__dict__.pop("feature_names_in_", None)
        else:
            self.feature_names_in_ = np.asarray(list(names), dtype=object)

    def _finish(self, warn):
        """Everything that follows from _theta, _C, _Sigma and the data."""
        self._build_predictor()
        self.kernel_ = self._fitted_kernel()
        s = self._y_std
        self.output_covariance_ = np.asarray(self._C) * np.outer(s, s)
        self.noise_covariance_ = np.asarray(self._Sigma) * np.outer(s, s)
        if warn:
            self._warn_if_singular_noise()
        # eq. (4) on the data scale (Jacobian of the standardisation, over the observed entries)
        self.log_marginal_likelihood_ = float(self._ll_internal - self._log_jacobian())

    def _log_jacobian(self):
        """log-Jacobian of the standardisation: sum over observed entries of log sd_t."""
        s = self._y_std
        if not self._missing:
            return self._X.shape[0] * np.sum(np.log(s))
        return float(np.sum((~np.isnan(self._Y)).sum(axis=0) * np.log(s)))

    def _fitted_kernel(self):
        return self._kernel_struct.with_params(jax.tree_util.tree_map(np.asarray, self._theta))

    def _warn_if_singular_noise(self, ratio_tol: float = 1e-10):
        """The likelihood of eq. (4) is unbounded above when the data allow a
        singular Sigma (outputs, or their residuals off the kernel's range,
        confined to a subspace of output space, e.g. a linear kernel with
        D < N and low-rank noise); a model free to follow it ends with a
        singular Sigma and arbitrarily large C and Sigma. Warn (a
        :class:`~mtgp.exceptions.DegenerateOutputsWarning`) when the fitted
        Sigma's smallest / largest eigenvalue ratio is below ``ratio_tol``."""
        ev = np.linalg.eigvalsh(self.noise_covariance_)
        ratio = ev[0] / ev[-1] if ev[-1] > 0 else -np.inf
        if ratio < ratio_tol:
            warnings.warn(
                f"{type(self).__name__}: the fitted noise covariance is numerically singular "
                f"(smallest / largest eigenvalue {ratio:.1e}): the likelihood grows without bound "
                "along that direction of output space, so C and Sigma are not identifiable there "
                "(their fitted values can be arbitrarily large). This happens when the outputs, or "
                "their residuals off the kernel's range (a linear kernel with fewer features than "
                "samples), span fewer than T dimensions. Use a lower rank, a noise floor "
                "(min_noise_variance), or remove redundant outputs.",
                DegenerateOutputsWarning, stacklevel=5,  # user -> float64 wrapper -> fit -> _finish -> here
            )

    def _floor_bound_outputs(self) -> list:
        """Hook: names of the outputs whose noise sits at the floor
        ``min_noise_variance`` (the constraint binds: the unconstrained
        optimum would have less noise there)."""
        return []

    def _noise_diagnostics(self, warn: bool) -> dict:
        """``fit_info_`` entries on the fitted noise covariance:
        ``noise_min_eigenvalue`` (smallest eigenvalue of Sigma in units of the
        training outputs' variances, Sigma_ij / sqrt(var_i var_j): 1 is as
        much noise as data variance) and ``noise_floor_outputs`` (outputs
        whose noise is held up by ``min_noise_variance``). Warns (a
        :class:`~mtgp.exceptions.DegenerateOutputsWarning`) when the noise
        collapses: the smallest eigenvalue below :data:`NOISE_COLLAPSE_RATIO`
        or the floor binding. Intervals of new observations y* and of the
        training table's missing entries (:meth:`predict_missing`, which
        conditions on the row's measured outputs through Sigma) are then as
        narrow as that noise allows, and are not to be trusted without a
        check on held-out data (their coverage; for the missing entries
        :func:`~mtgp.multioutput.held_out_entry_coverage`)."""
        sd = np.sqrt(np.nanvar(self._Y_data, axis=0))  # observed entries (NaN: missing)
        R = self.noise_covariance_ / np.outer(sd, sd)
        w, V = np.linalg.eigh(0.5 * (R + R.T))
        floor = list(self._floor_bound_outputs())
        out = dict(noise_min_eigenvalue=float(w[0]), noise_floor_outputs=floor)
        if warn and (w[0] < NOISE_COLLAPSE_RATIO or floor) and w[0] / max(w[-1], 1e-300) >= 1e-10:
            name = type(self).__name__
            check = ("check their coverage on held-out data (for the missing entries: "
                     "mtgp.multioutput.held_out_entry_coverage), or raise min_noise_variance.")
            if floor:  # Sigma's eigenvalues cannot fall below the floor: the floor is the signal
                which = "that output" if len(floor) == 1 else "those outputs"
                msg = (f"{name}: the fitted noise is collapsing: the noise of {floor} is held at the floor "
                       f"min_noise_variance={getattr(self, 'min_noise_variance', 0.0):g} (relative to each "
                       "output's variance; the fit would put less there, so its objective is not the "
                       f"unconstrained likelihood). The model explains {which} almost exactly on the training "
                       "data; intervals of new observations (include_noise=True) and of the missing entries "
                       "of its rows (predict_missing) there rest on the floor and may be overconfident: "
                       + check)
            else:
                big = [j for j in np.argsort(-np.abs(V[:, 0]))[: min(3, len(sd))]  # named where they weigh
                       if abs(V[j, 0]) >= 0.05 * np.abs(V[:, 0]).max()]
                combo = " + ".join(f"{V[j, 0]:.2g}*{self.output_names_[j]!r}" for j in big)
                msg = (f"{name}: the fitted noise covariance is collapsing: its smallest eigenvalue is "
                       f"{w[0]:.2g} of the outputs' variance, along {combo}. The model explains that combination "
                       "of outputs almost exactly on the training data; intervals of new observations "
                       "(include_noise=True) and of missing entries (predict_missing) along it are "
                       "correspondingly narrow and may be overconfident: " + check)
            warnings.warn(msg, DegenerateOutputsWarning, stacklevel=4)
        return out

    def _build_predictor(self):
        k = self._kernel_struct
        X = jax.device_put(np.asarray(self._X, dtype=float))
        K = cached_jit(("kernel-gram", k.structure()), lambda: lambda th, x: k.evaluate(th, x, x))(self._theta, X)
        # eigen route (eq. 5) when every output is observed, else the exact
        # conditional on the observed entries (dense in them, algebra.py)
        self._predictor = make_predictor(K, self._C, self._Sigma, self._Y, where=type(self).__name__)
        self._ll_internal = self._predictor.log_likelihood

    # ---- predict ------------------------------------------------------
    @config.float64
    def predict(self, X, full_cov: bool = False, include_noise: bool = False,
                Y_observed=None) -> MultiOutputPrediction:
        """Predictive distribution at ``X`` (n, D), eq. (5).

        Returns a :class:`MultiOutputPrediction`: ``.mean`` (n, T), ``.cov``
        (n, T, T) joint across outputs at each point, ``.var`` (n, T) and, with
        ``full_cov=True``, ``.joint_cov`` (n*T, n*T) joint over points and
        outputs in **output-major** order (entry ``t * n + j``: output t,
        point j). ``include_noise=True`` adds the noise covariance Sigma
        (predicting new observations y* rather than the latent f*). Values
        are on the scale of the data as given (standardisation, if any, is
        undone).

        ``Y_observed`` (n, T), NaN where not measured: conditional prediction
        of partly measured samples. Row j is predicted given the training
        data **and the outputs observed in row j** (each row its own
        conditioning set, so results do not depend on which other rows are
        in the batch): the Gaussian conditional of eq. (5)'s predictive at
        x_j plus noise Sigma (correlated noise informs too). ``.mean``,
        ``.cov`` (n, T, T) and intervals are those of f* (or, with
        ``include_noise``, of y*: an observed entry is then returned as
        measured, with variance 0). ``full_cov=True`` is refused there (there
        is no joint conditioning set across rows).

        ``.index`` is the row index of ``X`` when it is a DataFrame (else of
        ``Y_observed``, else None), so :meth:`~mtgp.distributions.MultiOutputPrediction.to_frame`
        labels rows as the caller did.
        """
        self._check_is_fitted()
        Xs = check_predict_inputs(X, self.n_features_in_, getattr(self, "feature_names_in_", None))
        if Y_observed is not None:
            _warn_if_indexes_differ(X, Y_observed, "Y_observed", stacklevel=4)
            pred = self._predict_given_outputs(Xs, Y_observed, full_cov, include_noise)
        else:
            pred = self._predict_checked(Xs, full_cov, include_noise)
        pred.index = _row_index(X, Y_observed)
        return pred

    @config.float64
    def predict_missing(self, full_cov: bool = False) -> MultiOutputPrediction:
        """The training outputs that were not measured (NaN in the ``Y`` of
        ``fit``), predicted from every observed entry: the Gaussian
        conditional of y given y_O under the fitted joint model
        ``vec(Y) ~ N(0, C (x) K + Sigma (x) I)`` (eqs. 4-5 restricted to the
        observed entries).

        Returns a :class:`MultiOutputPrediction` at the N training inputs,
        of the noisy outputs y (``include_noise`` is True): ``.mean`` (N, T)
        is ``Y`` with each missing entry replaced by E[y_m | y_O]; ``.cov``
        (N, T, T) is each row's conditional covariance (zero in the rows and
        columns of the entries that were measured); ``.interval(0.95)`` the
        intervals of the missing entries; ``.index`` the row labels of the
        training table when it was a DataFrame, so ``.to_frame(False)`` is
        that table filled in. ``full_cov=True`` adds
        ``.joint_cov`` (N T, N T, output-major), the joint conditional over
        all training entries.

        This is not ``predict(X_train, include_noise=True)`` when Sigma has
        off-diagonal terms (CoolMTGP, StructuredNoiseMTGP): a missing entry
        shares its row's noise with the outputs measured in that row, while
        ``predict`` draws a new observation with new noise. For a diagonal
        Sigma (ICM, IndependentGPs) the two agree at the missing entries.
        Nor is it ``predict(X_train, Y_observed=Y)``, which would count
        row i's measurements twice (once in the training data, once as new
        observations). Algebra: :func:`~mtgp.multioutput.algebra.condition_on_own_row_noise`.
        """
        self._check_is_fitted()
        latent = self._predict_checked(np.asarray(self._X), full_cov, False)
        mean, cov, joint = condition_on_own_row_noise(latent.mean, latent.cov, self.noise_covariance_,
                                                      self._Y_data, latent.joint_cov)
        return MultiOutputPrediction(mean, cov, joint, True, list(self.output_names_),
                                     index=getattr(self, "_row_index", None))

    def _predict_checked(self, Xs, full_cov, include_noise):
        n, T = Xs.shape[0], self.n_outputs_
        # padded to the size ladder: a new n of similar size compiles nothing new
        mean, cov, joint = self._predict_internal(pad_inputs(Xs, full_cov, T), full_cov, include_noise)
        mean, cov = np.asarray(mean)[:n], np.asarray(cov)[:n]
        if joint is not None:
            joint = unpad_joint(joint, n, T)
        s, mu = self._y_std, self._y_mean
        mean = mean * s + mu
        cov = cov * np.outer(s, s)[None]
        if joint is not None:
            sv = np.repeat(s, n)  # output-major
            joint = joint * np.outer(sv, sv)
        return MultiOutputPrediction(mean, cov, joint, include_noise, list(self.output_names_))

    def _predict_given_outputs(self, Xs, Y_observed, full_cov, include_noise):
        if full_cov:
            raise ValueError(
                "predict(Y_observed=...) conditions each row on its own observed outputs, so there is "
                "no joint covariance across rows: use full_cov=False (.cov is each row's (T, T) "
                "covariance), or add the rows to the training data for a joint conditional")
        Yo = check_observed_outputs(Y_observed, Xs.shape[0], list(self.output_names_))
        latent = self._predict_checked(Xs, False, False)
        mean, cov = condition_on_row_outputs(latent.mean, latent.cov, self.noise_covariance_, Yo, include_noise)
        return MultiOutputPrediction(mean, cov, None, include_noise, list(self.output_names_))

    def _predict_internal(self, Xs, full_cov, include_noise):
        X = jnp.asarray(self._X)
        Xs = jnp.asarray(Xs)
        k = self._kernel_struct
        # one compiled program per kernel structure, not one per operation
        cross = cached_jit(("kernel-cross", k.structure()),
                           lambda: lambda th, xs, x: (k.evaluate(th, xs, x), k.evaluate_diag(th, xs)))
        Ks, kss_diag = cross(self._theta, Xs, X)
        mean = self._predictor.mean(Ks)
        cov = self._predictor.point_cov(Ks, kss_diag, include_noise)
        joint = None
        if full_cov:
            gram = cached_jit(("kernel-gram", k.structure()), lambda: lambda th, x: k.evaluate(th, x, x))
            joint = self._predictor.joint_cov(Ks, gram(self._theta, Xs), include_noise)
        return mean, cov, joint

    # ---- scoring --------------------------------------------------------
    @config.float64
    def score(self, X, Y):
        """Coefficient of determination R^2 of the predictive mean, averaged
        over outputs (scikit-learn's ``uniform_average``)."""
        from sklearn.metrics import r2_score

        pred = self.predict(X)
        Ya, _ = check_outputs(Y, allow_missing=True)
        if not np.isnan(Ya).any():
            return float(r2_score(Ya, pred.mean))
        obs = ~np.isnan(Ya)  # missing outputs: each output's R^2 on its observed rows
        return float(np.mean([r2_score(Ya[obs[:, t], t], pred.mean[obs[:, t], t]) for t in range(Ya.shape[1])]))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "regressor"
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
        return tags

    _estimator_type = "regressor"

    # ---- save / load ------------------------------------------------------
    @classmethod
    def _format(cls) -> str:
        return f"mtgp.{cls.__name__}/1"

    def _theta_flat(self):
        return np.asarray(ravel_pytree(self._theta)[0])

    def _set_theta_flat(self, flat):
        _, unravel = ravel_pytree(self._kernel_struct.init_params())
        self._theta = unravel(jnp.asarray(flat))

    @config.float64
    def save(self, path) -> str:
        """Save the fitted model to ``path`` (``.npz`` added when missing; the
        same rule as :meth:`load`): constructor parameters and kernel as
        JSON, the fitted arrays and the training X, Y. Returns the path."""
        from ..io import write_model

        self._check_is_fitted()
        arrays = {"X": self._X, "Y": self._Y_data, "y_mean": self._y_mean, "y_std": self._y_std,
                  "theta": self._theta_flat(), "C": np.asarray(self._C), "Sigma": np.asarray(self._Sigma)}
        attrs = {name: _pack(f"attr:{name}", getattr(self, name), arrays) for name in self._saved_attributes}
        row_index, index_arrays, problem = pack_row_index(getattr(self, "_row_index", None), "row_index")
        if problem is not None:
            warnings.warn(f"the training table's row index is not saved ({problem}; saved are numbers, "
                          "booleans, datetimes and strings): after load, predict_missing() labels its rows "
                          "0..N-1", UserWarning, stacklevel=3)
        arrays.update(index_arrays)
        header = {"class": type(self).__name__,
                  "params": _to_json(self.get_params(deep=False)),
                  "kernel": self._kernel_struct.to_dict(),
                  "output_names": list(self.output_names_),
                  "feature_names": (None if getattr(self, "feature_names_in_", None) is None
                                    else [str(c) for c in self.feature_names_in_]),
                  "fit_info": _to_json(self.fit_info_),
                  "row_index": row_index,
                  "attributes": attrs}
        return write_model(path, self._format(), header, arrays)

    @classmethod
    @config.float64
    def load(cls, path):
        """Load a model written by :meth:`save` of this class (a
        :class:`~mtgp.exceptions.ModelFileError` for any other file);
        predictions equal those of the saved model."""
        from ..io import read_model

        meta, arrays = read_model(path, cls._format())
        model = cls(**{k: _from_json(v) for k, v in meta["params"].items()})
        kernel = _k.kernel_from_dict(meta["kernel"])
        X, Y = arrays["X"], arrays["Y"]
        model._set_data(kernel, X, Y, meta["output_names"], bool(model.normalize_y))
        model._set_feature_names(meta.get("feature_names"))
        model._row_index = unpack_row_index(meta.get("row_index"), arrays, "row_index")
        model._y_mean, model._y_std = arrays["y_mean"], arrays["y_std"]  # as fitted, to the bit
        model._Y = (Y - model._y_mean) / model._y_std
        model._C, model._Sigma = arrays["C"], arrays["Sigma"]
        model._set_theta_flat(arrays["theta"])
        for name, desc in meta["attributes"].items():
            setattr(model, name, _unpack(desc, arrays))
        model._finish(warn=False)
        model.fit_info_ = meta["fit_info"]
        model.fit_time_ = model.fit_info_["fit_time"]
        return model

    # ---- helpers for subclasses ------------------------------------------
    def _start(self, X, Y):
        """(kernel, its fixed-scale mask, its log parameters, b0, sigma0^2)."""
        kernel = self._kernel_struct
        b0, s20 = self._init_scales(kernel, X, Y)
        return kernel, kernel.scale_mask(), kernel.init_params(), b0, s20

    @staticmethod
    def _init_scales(kernel, X, Y):
        """Heuristic starting values: half of each output's variance to
        signal (scaled by the kernel's mean prior variance), half to noise."""
        var = output_variances(Y)
        diag = cached_jit(("kernel-diag", kernel.structure()), lambda: kernel.evaluate_diag)
        kd = float(np.mean(np.asarray(diag(kernel.init_params(), jax.device_put(np.asarray(X, dtype=float))))))
        kd = kd if np.isfinite(kd) and kd > 0 else 1.0
        return 0.5 * var / kd, 0.5 * var
