"""Common machinery of the multi-output estimators (shared inputs, T outputs).

All four estimators (:class:`~mtgp.multioutput.CoolMTGP`,
:class:`~mtgp.multioutput.IndependentGPs`, :class:`~mtgp.multioutput.ICM`,
:class:`~mtgp.multioutput.StructuredNoiseMTGP`) are scikit-learn estimators:
constructor arguments are stored as given, everything learnt ends in ``_``.
They share one optimiser (:func:`minimize`, L-BFGS, budget ``max_iter``
iterations, gradient tolerance ``tol`` on the per-observation negative
log-likelihood) and one exact predictive (:class:`EigenPredictor`, eq. 5).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from .. import config
from .. import kernels as _k
from ..distributions import MultiOutputPrediction
from ..base import Estimator, check_is_fitted
from ..exceptions import DegenerateOutputsWarning
from ..optim import minimize_host
from .algebra import EigenPredictor
from .validation import check_fit_data, check_outputs, check_predict_inputs


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


class MultiOutputGP(Estimator):
    """Base class: validation, optional output standardisation, exact
    predictive, scikit-learn conventions. Subclasses implement ``_fit_core``
    (on the internal, possibly standardised, scale) and set ``_theta`` (kernel
    log hyper-parameters), ``_C`` and ``_Sigma``.

    Fitted attributes (on the scale of the data as given):
    ``kernel_`` (fitted kernel, callable), ``task_covariance_`` C (T, T),
    ``noise_covariance_`` Sigma (T, T), ``log_marginal_likelihood_`` (eq. 4 at
    the fitted C, Sigma, kernel), ``n_tasks_``, ``n_features_in_``,
    ``task_names_``, ``fit_time_`` (seconds).
    """

    # ---- hooks --------------------------------------------------------
    def _default_kernel(self):
        return _k.SE()

    def _get_kernel(self):
        k = getattr(self, "kernel", None)
        return self._default_kernel() if k is None else k

    def _fit_core(self, X, Y):  # pragma: no cover - abstract
        raise NotImplementedError

    # ---- fit ----------------------------------------------------------
    @config.float64
    def fit(self, X, Y):
        """Fit to inputs ``X`` (N, D) and outputs ``Y`` (N, T) (arrays or DataFrames)."""
        t0 = time.perf_counter()
        Xa, Ya, names = check_fit_data(X, Y)
        kernel = self._get_kernel()
        if not isinstance(kernel, _k.Kernel):
            raise TypeError(f"kernel must be an mtgp.kernels.Kernel, got {type(kernel).__name__}")
        kernel.check_input_dim(Xa.shape[1], "training inputs")
        if getattr(self, "max_iter", 1) < 1:
            raise ValueError("max_iter must be >= 1")
        if self.normalize_y:
            self._y_mean = Ya.mean(axis=0)
            self._y_std = Ya.std(axis=0)
        else:
            self._y_mean = np.zeros(Ya.shape[1])
            self._y_std = np.ones(Ya.shape[1])
        Ys = (Ya - self._y_mean) / self._y_std
        self._kernel_struct = kernel
        self.n_features_in_ = Xa.shape[1]
        self.n_tasks_ = Ya.shape[1]
        self.task_names_ = names
        self._X = Xa
        self._Y = Ys
        self._fit_core(Xa, Ys)
        self.kernel_ = kernel.with_params(jax.tree_util.tree_map(np.asarray, self._theta))
        self._build_predictor()
        s = self._y_std
        self.task_covariance_ = np.asarray(self._C) * np.outer(s, s)
        self.noise_covariance_ = np.asarray(self._Sigma) * np.outer(s, s)
        self._warn_if_singular_noise()
        # eq. (4) on the data scale (Jacobian of the standardisation)
        self.log_marginal_likelihood_ = float(self._ll_internal - Xa.shape[0] * np.sum(np.log(s)))
        self.fit_time_ = time.perf_counter() - t0
        return self

    def _warn_if_singular_noise(self, ratio_tol: float = 1e-10):
        """The likelihood of eq. (4) is unbounded above when the data allow a
        singular Sigma (outputs, or their residuals off the kernel's range,
        confined to a subspace of task space, e.g. a linear kernel with D < N
        and low-rank noise); a model free to follow it ends with a singular
        Sigma and arbitrarily large C and Sigma. Say so rather than return it
        silently."""
        ev = np.linalg.eigvalsh(self.noise_covariance_)
        ratio = ev[0] / ev[-1] if ev[-1] > 0 else -np.inf
        if ratio < ratio_tol:
            import warnings

            warnings.warn(
                f"{type(self).__name__}: the fitted noise covariance is numerically singular "
                f"(smallest / largest eigenvalue {ratio:.1e}): the likelihood grows without bound "
                "along that direction of task space, so C and Sigma are not identifiable there "
                "(their fitted values can be arbitrarily large). This happens when the outputs, or "
                "their residuals off the kernel's range (a linear kernel with fewer features than "
                "samples), span fewer than T dimensions. Use a lower rank, a noise floor "
                "(min_noise_variance), or remove redundant outputs.",
                DegenerateOutputsWarning, stacklevel=3,
            )

    def _build_predictor(self):
        K = self._kernel_struct.evaluate(self._theta, jnp.asarray(self._X), jnp.asarray(self._X))
        self._predictor = EigenPredictor(K, self._C, self._Sigma, self._Y, where=type(self).__name__)
        self._ll_internal = self._predictor.log_likelihood

    def _check_fitted(self):
        check_is_fitted(self, "kernel_")

    # ---- predict ------------------------------------------------------
    @config.float64
    def predict(self, X, full_cov: bool = False, include_noise: bool = False) -> MultiOutputPrediction:
        """Predictive distribution at ``X`` (n, D), eq. (5).

        Returns a :class:`MultiOutputPrediction`: ``.mean`` (n, T), ``.cov``
        (n, T, T) joint across tasks at each point, ``.var`` (n, T) and, with
        ``full_cov=True``, ``.joint_cov`` (n*T, n*T) joint over points and
        tasks in **task-major** order (entry ``t * n + j``: task t, point j).
        ``include_noise=True`` adds the noise covariance Sigma (predicting new
        observations y* rather than the latent f*). Values are on the scale of
        the data as given (standardisation, if any, is undone).
        """
        self._check_fitted()
        Xs = check_predict_inputs(X, self.n_features_in_)
        mean, cov, joint = self._predict_internal(Xs, full_cov, include_noise)
        s, mu = self._y_std, self._y_mean
        mean = mean * s + mu
        cov = cov * np.outer(s, s)[None]
        if joint is not None:
            n = Xs.shape[0]
            sv = np.repeat(s, n)  # task-major
            joint = joint * np.outer(sv, sv)
        return MultiOutputPrediction(mean, cov, joint, include_noise, list(self.task_names_))

    def _predict_internal(self, Xs, full_cov, include_noise):
        X = jnp.asarray(self._X)
        Xs = jnp.asarray(Xs)
        k = self._kernel_struct
        Ks = k.evaluate(self._theta, Xs, X)
        mean = self._predictor.mean(Ks)
        cov = self._predictor.point_cov(Ks, k.evaluate_diag(self._theta, Xs), include_noise)
        joint = None
        if full_cov:
            joint = self._predictor.joint_cov(Ks, k.evaluate(self._theta, Xs, Xs), include_noise)
        return mean, cov, joint

    # ---- scoring --------------------------------------------------------
    @config.float64
    def score(self, X, Y):
        """Coefficient of determination R^2 of the predictive mean, averaged
        over tasks (scikit-learn's ``uniform_average``)."""
        from sklearn.metrics import r2_score

        pred = self.predict(X)
        Ya, _ = check_outputs(Y)
        return float(r2_score(Ya, pred.mean))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "regressor"
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
        return tags

    _estimator_type = "regressor"

    # ---- helpers for subclasses ------------------------------------------
    @staticmethod
    def _init_scales(kernel, X, Y):
        """Heuristic starting values: half of each output's variance to
        signal (scaled by the kernel's mean prior variance), half to noise."""
        var = np.var(Y, axis=0)
        kd = float(np.mean(np.asarray(kernel.evaluate_diag(kernel.init_params(), jnp.asarray(X)))))
        kd = kd if np.isfinite(kd) and kd > 0 else 1.0
        return 0.5 * var / kd, 0.5 * var
