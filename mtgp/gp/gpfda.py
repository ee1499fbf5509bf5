"""A GPFDA-style baseline (the idea of Shi et al. 2007, "Gaussian process
functional regression modeling for batch data", Biometrics 63(3)).

The mean curve shared by all individuals is a deterministic function,
estimated by least-squares cubic B-spline regression on the pooled training
data; a new individual is then a GP around that mean (its covariance
hyper-parameters and noise learnt from its own observed points by maximum
likelihood), so the prediction carries no uncertainty about the mean curve.

This is OUR implementation of that idea, used as the baseline of Leroy et al.
(2022), Sec. 6: it is not the ``GPFDA`` R package (Shi & Cheng), whose
options (functional regression on covariates, its empirical variance
estimate, its own optimiser) are not reproduced.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..data import to_individuals
from ..distributions import Prediction
from ..base import Estimator, check_is_fitted
from ..exceptions import DataError
from ..kernels import SE, Kernel
from .estimator import GP


class GPFDA(Estimator):
    """Spline mean curve from pooled training data + single-task GP.

    Parameters
    ----------
    n_basis : number of cubic B-spline basis functions of the mean curve
        (interior knots at equally spaced quantiles of the distinct training
        inputs). ``None``: ``min(10, max(4, n_distinct // 3))``.
    kernel : initial kernel of the new individual's GP (default: ``SE`` with
        variance the variance of the training residuals and lengthscale a
        fifth of the input range).
    noise : initial noise variance (default: 5% of the residual variance).
    max_iter : L-BFGS iterations of the GP fit.
    n_init, random_state : several starts of the new individual's GP fit
        (see :class:`~mtgp.GP`).

    Attributes after fit: ``knots_``, ``spline_`` (scipy BSpline),
    ``residual_var_``.
    """

    def __init__(self, n_basis: Optional[int] = None, kernel: Optional[Kernel] = None,
                 noise: Optional[float] = None, max_iter: int = 200,
                 input_columns: Optional[Sequence[str]] = None, n_init: int = 1,
                 random_state: Optional[int] = None):
        self.n_basis = n_basis
        self.kernel = kernel
        self.noise = noise
        self.max_iter = max_iter
        self.input_columns = input_columns
        self.n_init = n_init
        self.random_state = random_state

    def fit(self, data) -> "GPFDA":
        """Estimate the mean curve from the pooled training data (long
        DataFrame ID/Input/Output, dict or list of (X, y)); 1-D inputs only."""
        inds = to_individuals(data, self.input_columns, what="GPFDA training data")
        if inds.input_dim != 1:
            raise DataError("GPFDA supports one-dimensional inputs only")
        x = np.concatenate([X[:, 0] for X in inds.inputs])
        y = np.concatenate(inds.outputs)
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
        distinct = np.unique(x)
        k = 3
        n_basis = self.n_basis if self.n_basis is not None else min(10, max(4, distinct.size // 3))
        n_interior = int(n_basis) - (k + 1)
        if n_interior < 0:
            raise ValueError(f"n_basis must be >= {k + 1} for cubic splines")
        if distinct.size < n_basis:
            raise DataError(f"GPFDA needs at least n_basis={n_basis} distinct training inputs, "
                            f"got {distinct.size}")
        lo, hi = distinct[0], distinct[-1]
        interior = np.quantile(distinct, np.linspace(0, 1, n_interior + 2)[1:-1]) if n_interior else []
        t = np.r_[[lo] * (k + 1), interior, [hi] * (k + 1)]
        from scipy.interpolate import make_lsq_spline  # ~0.5 s at import: loaded when a GPFDA is fitted

        self.spline_ = make_lsq_spline(x, y, t, k=k)
        self.knots_ = t
        self.input_columns_ = list(inds.input_columns)
        self.range_ = (float(lo), float(hi))
        self.residual_var_ = float(np.var(y - self.spline_(x)))
        return self

    def mean(self, X) -> np.ndarray:
        """The estimated mean curve at inputs X ((n,) or (n, 1)); outside the
        training range the spline is extrapolated (cubic polynomial pieces)."""
        check_is_fitted(self, "spline_")
        X = np.asarray(X, dtype=np.float64)
        return np.asarray(self.spline_(X.reshape(-1)), dtype=np.float64)

    def predict(self, new_data, inputs, noise: bool = True) -> Prediction:
        """Fit a GP with the spline as its fixed mean on the new individual's
        observed points (DataFrame or (X, y)) and predict at ``inputs``."""
        check_is_fitted(self, "spline_")
        v = max(self.residual_var_, 1e-6)
        kernel = self.kernel if self.kernel is not None else SE(
            variance=v, lengthscale=max((self.range_[1] - self.range_[0]) / 5.0, 1e-3))
        nz = self.noise if self.noise is not None else 0.05 * v
        gp = GP(kernel=kernel, noise=nz, mean=self.mean, max_iter=self.max_iter,
                input_columns=self.input_columns, n_init=self.n_init, random_state=self.random_state)
        if hasattr(new_data, "columns") and "ID" in new_data.columns:
            new_data = new_data.drop(columns=["ID"])
        gp.fit(new_data)
        self.gp_ = gp
        pred = gp.predict(inputs, noise=noise)
        pred.what = "GPFDA-style prediction"
        return pred
