"""Single-task GP regression with Magma's data conventions (the baseline of
Leroy et al. 2022, Sec. 6): one individual, type-II maximum likelihood of the
kernel hyper-parameters and noise variance (Rasmussen & Williams 2006,
eq. 5.8; :func:`mtgp.optim.minimize_host` on the log scale), from one or
several starts."""

from __future__ import annotations

import time
from typing import Callable, Optional, Sequence, Union

import jax.numpy as jnp
import numpy as np

from .. import config
from ..base import Estimator
from ..data import as_inputs, padded_size, to_individuals
from ..distributions import Prediction
from ..kernels import SE, Kernel
from ..linalg import report_jitter
from ..means import PriorMean
from ..optim import check_n_init, minimize_host, perturbed_starts
from . import numerics as core


def _pad_rows(A, n_pad):
    """``A`` ((n, ...) array) with rows appended up to ``n_pad``: copies of
    its first row (finite inputs for the kernel; masked out or sliced off)."""
    A = np.asarray(A, dtype=np.float64)
    return np.concatenate([A, np.repeat(A[:1], n_pad - len(A), axis=0)])


class GP(Estimator):
    """Gaussian process regression for one individual.

    Parameters
    ----------
    kernel : Kernel (initial hyper-parameters; default ``SE()``).
    noise : initial noise variance.
    mean : fixed prior mean: a constant or a callable of the inputs (n, d).
    max_iter : L-BFGS iterations (per start).
    n_init : number of starts: the given hyper-parameters and ``n_init - 1``
        random perturbations of them (:func:`mtgp.optim.perturbed_starts`);
        the start reaching the highest log-likelihood is kept.
    random_state : seed of the perturbations.
    input_columns : input columns of DataFrame data (default ``Input``...).

    Attributes after fit: ``kernel_``, ``noise_``, ``log_likelihood_``,
    ``fit_info_`` (``n_iter`` and ``log_likelihood`` per start,
    ``best_start``, ``fit_time`` in seconds).

    Training points and prediction inputs are padded to
    :func:`mtgp.data.padded_size` and masked exactly, so that a new number
    of points reuses the compiled programs.
    """

    def __init__(self, kernel: Optional[Kernel] = None, noise: float = 1.0,
                 mean: Union[float, Callable] = 0.0, max_iter: int = 200, n_init: int = 1,
                 random_state: Optional[int] = None, input_columns: Optional[Sequence[str]] = None):
        self.kernel = kernel
        self.noise = noise
        self.mean = mean
        self.max_iter = max_iter
        self.n_init = n_init
        self.random_state = random_state
        self.input_columns = input_columns

    def _mean(self, X):
        return np.asarray(PriorMean(self.mean, name="GP mean")(X), dtype=np.float64).reshape(-1)

    @config.float64
    def fit(self, data, optimize: bool = True) -> "GP":
        """``data``: a DataFrame (Input column(s), Output, optional single ID)
        or an (X, y) pair. ``optimize=False`` keeps the given
        hyper-parameters (and computes their log-likelihood)."""
        t0 = time.perf_counter()
        kernel = self.kernel if self.kernel is not None else SE()
        if not isinstance(kernel, Kernel):
            raise TypeError(f"kernel must be an mtgp.kernels.Kernel, got {type(kernel).__name__}")
        if not (np.isfinite(self.noise) and self.noise > 0):
            raise ValueError(f"noise must be positive, got {self.noise!r}")
        n_init = check_n_init(self.n_init)
        inds = to_individuals(data, self.input_columns, what="GP data", single=True)
        X, y = inds.inputs[0], inds.outputs[0]
        kernel.check_input_dim(X.shape[1], "GP inputs")
        n_pad = padded_size(len(y))
        mask = np.arange(n_pad) < len(y)
        args = (jnp.asarray(_pad_rows(X, n_pad)), jnp.asarray(np.where(mask, _pad_rows(y, n_pad), 0.0)),
                jnp.asarray(np.where(mask, _pad_rows(self._mean(X), n_pad), 0.0)),
                jnp.asarray(mask, dtype=jnp.float64))
        theta = {"kernel": kernel.init_params(), "log_noise": jnp.log(jnp.float64(self.noise))}
        ki = kernel.static()
        objective = core.gp_mean_nll(ki)
        key = ("gp-mean-nll", kernel.structure())
        runs = []
        for start in perturbed_starts(theta, n_init if optimize else 1, self.random_state):
            if optimize:
                res = minimize_host(key, objective, start, args, max_iter=int(self.max_iter),
                                   tol=1e-9, ftol=1e-12)
                runs.append((res.params, -float(res.value) * len(y), int(res.n_iter)))
            else:
                runs.append((start, -float(objective(start, *args)) * len(y), 0))
        lls = [ll for _, ll, _ in runs]
        best = int(np.argmax(np.where(np.isfinite(lls), lls, -np.inf)))
        theta, ll = runs[best][0], runs[best][1]
        self.X_, self.y_, self.input_columns_ = X, y, list(inds.input_columns)
        self.theta_ = theta
        self._static = ki
        self.kernel_ = kernel.with_params(theta["kernel"])
        self.noise_ = float(jnp.exp(theta["log_noise"]))
        self.log_likelihood_ = float(ll)
        self._train = args
        self.fit_info_ = {"n_iter": [it for *_, it in runs], "log_likelihood": lls, "best_start": best,
                          "fit_time": time.perf_counter() - t0}
        return self

    @config.float64
    def predict(self, inputs, noise: bool = True) -> Prediction:
        """Posterior at ``inputs``; ``noise=True`` for the noisy outputs."""
        self._check_is_fitted()
        Xp = as_inputs(inputs, self.input_columns_, what="prediction inputs")
        n = len(Xp)
        n_pad = padded_size(n)
        program = core.gp_predict_jit(self._static, bool(noise))
        mean, cov, jit_o = program(self.theta_, *self._train, jnp.asarray(_pad_rows(Xp, n_pad)),
                                   jnp.asarray(_pad_rows(self._mean(Xp), n_pad)))
        report_jitter(np.asarray(jit_o), "GP.predict")
        return Prediction(Xp, np.asarray(mean)[:n], np.asarray(cov)[:n, :n], self.input_columns_,
                          includes_noise=bool(noise), what="GP prediction")
