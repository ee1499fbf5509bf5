"""Single-task GP regression with Magma's data conventions (the baseline of
Leroy et al. 2022, Sec. 6): one individual, type-II maximum likelihood of the
kernel hyper-parameters and noise variance (L-BFGS on the log scale)."""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import jax.numpy as jnp
import numpy as np

from .. import config
from ..data import as_inputs, to_individuals
from ..distributions import Prediction
from ..base import Estimator, check_is_fitted
from ..exceptions import DataError
from ..kernels import SE, Kernel
from ..linalg import report_jitter
from ..means import PriorMean
from . import numerics as core


class GP(Estimator):
    """Gaussian process regression for one individual.

    Parameters
    ----------
    kernel : Kernel (initial hyper-parameters; default ``SE()``).
    noise : initial noise variance.
    mean : fixed prior mean: a constant or a callable of the inputs (n, d).
    max_iter : L-BFGS iterations.
    input_columns : input columns of DataFrame data (default ``Input``...).

    Attributes after fit: ``kernel_``, ``noise_``, ``log_likelihood_``.
    """

    def __init__(self, kernel: Optional[Kernel] = None, noise: float = 1.0,
                 mean: Union[float, Callable] = 0.0, max_iter: int = 200,
                 input_columns: Optional[Sequence[str]] = None):
        self.kernel = kernel
        self.noise = noise
        self.mean = mean
        self.max_iter = max_iter
        self.input_columns = input_columns

    def _mean(self, X):
        return PriorMean(self.mean, name="GP mean")(X)

    @config.float64
    def fit(self, data, optimize: bool = True) -> "GP":
        """``data``: a DataFrame (Input column(s), Output, optional single ID)
        or an (X, y) pair."""
        kernel = self.kernel if self.kernel is not None else SE()
        if not isinstance(kernel, Kernel):
            raise TypeError(f"kernel must be an mtgp.kernels.Kernel, got {type(kernel).__name__}")
        if not (np.isfinite(self.noise) and self.noise > 0):
            raise ValueError(f"noise must be positive, got {self.noise!r}")
        inds = to_individuals(data, self.input_columns, what="GP data", single=True)
        X, y = inds.inputs[0], inds.outputs[0]
        kernel.check_input_dim(X.shape[1], "GP inputs")
        theta = {"kernel": kernel.init_params(), "log_noise": jnp.log(float(self.noise))}
        mean = jnp.asarray(self._mean(X))
        if optimize:
            theta, ll = core.fit_gp_jit(kernel.static(), int(self.max_iter), theta, jnp.asarray(X),
                                        jnp.asarray(y), mean)
        else:
            ll = -core.gp_nll(kernel.static(), theta, jnp.asarray(X), jnp.asarray(y), mean)
        self.X_, self.y_, self.input_columns_ = X, y, list(inds.input_columns)
        self.theta_ = theta
        self._static = kernel.static()
        self.kernel_ = kernel.with_params(theta["kernel"])
        self.noise_ = float(jnp.exp(theta["log_noise"]))
        self.log_likelihood_ = float(ll)
        return self

    @config.float64
    def predict(self, inputs, noise: bool = True) -> Prediction:
        """Posterior at ``inputs``; ``noise=True`` for the noisy outputs."""
        check_is_fitted(self, "theta_")
        Xp = as_inputs(inputs, self.input_columns_, what="prediction inputs")
        mean, cov, jit_o = core.gp_predict_jit(self._static, bool(noise), self.theta_, jnp.asarray(self.X_),
                                               jnp.asarray(self.y_), jnp.asarray(self._mean(self.X_)),
                                               jnp.asarray(Xp), jnp.asarray(self._mean(Xp)))
        report_jitter(np.asarray(jit_o), "GP.predict")
        return Prediction(Xp, mean, cov, self.input_columns_, includes_noise=bool(noise), what="GP prediction")
