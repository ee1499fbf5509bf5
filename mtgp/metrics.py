"""Prediction metrics of Leroy et al. (2022), Sec. 6.2."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np


def _arrays(y_true, mean):
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    if y_true.shape != mean.shape:
        raise ValueError(f"y_true has {y_true.size} values but the prediction has {mean.size}")
    return y_true, mean


def mse(y_true, mean) -> float:
    """Mean squared error."""
    y_true, mean = _arrays(y_true, mean)
    return float(np.mean((y_true - mean) ** 2))


def cic(y_true, mean, var, level: float = 0.95) -> float:
    """Credible-interval coverage in percent (CIC95 for level 0.95): share
    of true values inside the central ``level`` interval N(mean, var)."""
    y_true, mean = _arrays(y_true, mean)
    sd = np.sqrt(np.clip(np.asarray(var, dtype=np.float64).reshape(-1), 0.0, None))
    z = NormalDist().inv_cdf(0.5 + level / 2.0)  # stdlib: scipy.stats costs ~0.5 s at import
    return float(100.0 * np.mean(np.abs(y_true - mean) <= z * sd))


def cic95(y_true, mean, var) -> float:
    """CIC95: :func:`cic` at level 0.95, in percent (Magma paper, Sec. 6)."""
    return cic(y_true, mean, var, 0.95)


def nlpd(y_true, mean, var) -> float:
    """Mean negative log predictive density of independent Gaussians."""
    y_true, mean = _arrays(y_true, mean)
    var = np.asarray(var, dtype=np.float64).reshape(-1)
    if np.any(var <= 0):
        raise ValueError("nlpd needs strictly positive predictive variances")
    return float(np.mean(0.5 * np.log(2 * np.pi * var) + 0.5 * (y_true - mean) ** 2 / var))


def evaluate(y_true, prediction) -> dict:
    """MSE, CIC95 and NLPD of a :class:`~mtgp.Prediction` against y_true."""
    return {"MSE": mse(y_true, prediction.mean), "CIC95": cic95(y_true, prediction.mean, prediction.var),
            "NLPD": nlpd(y_true, prediction.mean, np.maximum(prediction.var, 1e-300))}
