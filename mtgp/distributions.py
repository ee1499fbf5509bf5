"""Gaussian predictive distributions returned by every model of mtgp.

One type, :class:`Gaussian` (a mean, a covariance, central intervals,
samples), seen two ways:

* :class:`Prediction`: one output at n inputs (GP, Magma, the hyper-posterior
  of Magma's mean process): ``mean`` (n,), ``cov`` (n, n);
* :class:`MultiOutputPrediction`: T outputs at n inputs (the multi-output
  models): ``mean`` (n, T), ``cov`` (n, T, T) across outputs at each point,
  and optionally the joint ``joint_cov`` (nT, nT).

Variances are the covariance's diagonal clipped at 0 (round-off can push it
slightly below where the posterior is tight) in both views. A mixture of
Gaussians (MagmaClust's predictive) is meant to be a sibling of
:class:`Gaussian` with the same ``mean`` / ``var`` / ``interval`` / ``sample``
interface.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["Gaussian", "Prediction", "MultiOutputPrediction", "MixtureOfGaussians"]


def _normal_quantile(level: float) -> float:
    """z such that a central interval mean +- z sd has probability ``level``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    from scipy import stats

    return float(stats.norm.ppf(0.5 + level / 2.0))


def _tidy_frame(pred, level: float):
    """One row per input: the input column(s), Mean, Var and the central
    ``level`` interval (Lower, Upper) of a one-output prediction."""
    import pandas as pd

    lo, hi = pred.interval(level)
    df = pd.DataFrame(pred.inputs, columns=pred.input_columns)
    df["Mean"] = pred.mean
    df["Var"] = pred.var
    df["Lower"] = lo
    df["Upper"] = hi
    return df


class Gaussian:
    """Base of the predictive distributions: subclasses store ``mean`` and
    ``cov`` and define :attr:`var` as the variances of the entries of
    ``mean`` (same shape)."""

    mean: np.ndarray

    @property
    def var(self) -> np.ndarray:  # pragma: no cover - abstract
        """Marginal variances, shaped like ``mean`` (clipped at 0)."""
        raise NotImplementedError

    @property
    def std(self) -> np.ndarray:
        """Marginal standard deviations, shaped like ``mean``."""
        return np.sqrt(self.var)

    def interval(self, level: float = 0.95) -> Tuple[np.ndarray, np.ndarray]:
        """Pointwise central interval of probability ``level``: (lower, upper),
        each shaped like ``mean``."""
        z = _normal_quantile(level)
        sd = self.std
        return self.mean - z * sd, self.mean + z * sd

    @property
    def shape(self):
        """Shape of ``mean``."""
        return self.mean.shape

    def __len__(self):
        return self.mean.shape[0]


class Prediction(Gaussian):
    """A Gaussian over one output at ``inputs``: ``mean`` (n,), ``cov`` (n, n).

    ``includes_noise`` says whether the covariance is that of the noisy
    outputs y (Magma Prop. 5, the default) or of the noise-free latent process.
    """

    def __init__(self, inputs: np.ndarray, mean, cov, input_columns: Sequence[str] = ("Input",),
                 includes_noise: bool = True, what: str = "prediction"):
        self.inputs = np.asarray(inputs, dtype=np.float64)
        self.mean = np.asarray(mean, dtype=np.float64)
        cov = np.asarray(cov, dtype=np.float64)
        self.cov = 0.5 * (cov + cov.T)
        self.input_columns = list(input_columns)
        self.includes_noise = bool(includes_noise)
        self.what = what

    @property
    def var(self) -> np.ndarray:
        """Marginal variances (n,), the diagonal of ``cov`` clipped at 0."""
        return np.clip(np.diagonal(self.cov), 0.0, None)

    def sample(self, n_samples: int = 1, seed: Optional[int] = None) -> np.ndarray:
        """Joint draws from the Gaussian, shape (n_samples, n) (through an
        eigendecomposition, so a singular covariance is fine)."""
        rng = np.random.default_rng(seed)
        w, V = np.linalg.eigh(self.cov)
        root = V * np.sqrt(np.clip(w, 0.0, None))
        return self.mean + rng.standard_normal((n_samples, len(self.mean))) @ root.T

    def to_frame(self, level: float = 0.95):
        """Tidy table: input column(s), Mean, Var, Lower, Upper."""
        return _tidy_frame(self, level)

    def __repr__(self):
        kind = "noisy outputs" if self.includes_noise else "latent process"
        return f"Prediction({self.what}, {len(self.mean)} points, {kind})"


class MultiOutputPrediction(Gaussian):
    """Predictive distribution of T outputs at n inputs.

    ``mean`` (n, T); ``cov`` (n, T, T): joint across outputs at each point;
    ``var`` (n, T) its diagonal (clipped at 0); ``joint_cov`` (n*T, n*T)
    only with ``full_cov=True``, **output-major**: entry ``t * n + j`` is
    output t at input j (the ordering of ``C (x) K**``; see
    :meth:`joint_cov_point_major`). ``include_noise`` tells whether the
    noise covariance Sigma was added (prediction of new observations y*) or
    not (latent f*, Cool-MTGP eq. 5).

    The object behaves as the array ``mean`` for numpy and scikit-learn
    metrics (``np.asarray(pred)``).

    ``index``: the row labels of the inputs (a pandas Index, or None for
    0..n-1): ``predict`` keeps a DataFrame's index, ``predict_missing`` the
    training table's; :meth:`to_frame` labels its rows with it.
    """

    def __init__(self, mean, cov, joint_cov=None, include_noise: bool = False,
                 output_names: Optional[List[str]] = None, index=None):
        self.mean = np.asarray(mean)
        self.cov = np.asarray(cov)
        self.joint_cov = None if joint_cov is None else np.asarray(joint_cov)
        self.include_noise = bool(include_noise)
        self.output_names = None if output_names is None else list(output_names)
        if index is not None and len(index) != self.mean.shape[0]:
            raise ValueError(f"index has {len(index)} labels for {self.mean.shape[0]} rows")
        self.index = index

    @property
    def task_names(self):
        """Deprecated alias of :attr:`output_names`."""
        from ._deprecation import renamed_attribute

        renamed_attribute("MultiOutputPrediction", "task_names", "output_names")
        return self.output_names

    @property
    def var(self) -> np.ndarray:
        """Marginal variances (n, T), the diagonals of ``cov`` clipped at 0."""
        return np.clip(np.diagonal(self.cov, axis1=1, axis2=2), 0.0, None)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.mean, dtype=dtype)

    def joint_cov_point_major(self) -> np.ndarray:
        """``joint_cov`` reordered point-major: entry ``j * T + t``."""
        if self.joint_cov is None:
            raise ValueError("predict with full_cov=True to get the joint covariance")
        n, T = self.mean.shape
        return self.joint_cov.reshape(T, n, T, n).transpose(1, 0, 3, 2).reshape(n * T, n * T)

    def to_frame(self, include_std: bool = True):
        """Mean and standard deviation as a pandas DataFrame: columns
        ``<output>`` and, with ``include_std``, ``<output>_std``; rows
        labelled with :attr:`index` (the DataFrame given to ``predict``, the
        training table for ``predict_missing``). ``include_std=False`` gives
        the table of means alone, e.g. the training table filled in."""
        import pandas as pd

        names = self.output_names or [f"output {t}" for t in range(self.mean.shape[1])]
        df = pd.DataFrame(self.mean, columns=names, index=self.index)
        if include_std:
            std = self.std
            for t, name in enumerate(names):
                df[f"{name}_std"] = std[:, t]
        return df

    def __repr__(self):
        n, T = self.mean.shape
        kind = "noisy outputs" if self.include_noise else "latent outputs"
        return f"MultiOutputPrediction({n} points, {T} outputs, {kind})"


def mixture_cdf(means, variances, weights, y) -> np.ndarray:
    """Pointwise CDF (n,) at ``y`` (n,) of mixtures of normals: component
    means and variances (K, n), weights (K, n) (or (K, 1)), summing to one
    over K; a point mass where a variance is 0."""
    from scipy.special import ndtr

    y = np.asarray(y, dtype=np.float64)
    sd = np.sqrt(variances)
    z = np.where(sd > 0, (y[None, :] - means) / np.where(sd > 0, sd, 1.0),
                 np.where(y[None, :] >= means, np.inf, -np.inf))
    return np.sum(weights * ndtr(z), axis=0)


def mixture_quantile(means, variances, weights, q: float, n_iter: int = 200) -> np.ndarray:
    """Pointwise q-quantile (n,) of the mixtures of :func:`mixture_cdf`, by
    bisection (to rounding, at most ``n_iter`` halvings). Many mixtures with
    their own weights (MagmaClust's batched predictions) are one call."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q}")
    sd = np.sqrt(variances)
    lo = np.min(means - 40.0 * sd, axis=0) - 1e-12
    hi = np.max(means + 40.0 * sd, axis=0) + 1e-12
    for _ in range(int(n_iter)):
        mid = 0.5 * (lo + hi)
        below = mixture_cdf(means, variances, weights, mid) < q
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
        if np.all(hi - lo <= 4e-16 * np.maximum(np.abs(lo), np.abs(hi))):
            break
    return 0.5 * (lo + hi)


class MixtureOfGaussians:
    """A mixture of :class:`Prediction` components over one output at the
    same inputs (MagmaClust's predictive, a sibling of :class:`Gaussian`):
    sum_k w_k N(mean_k, cov_k).

    ``components``: the K Predictions; ``weights`` (K,), also exposed as
    ``cluster_probabilities``. ``mean`` (n,) and ``cov`` (n, n) are the
    mixture's moments (sum_k w_k [cov_k + (mean_k - mean)(mean_k - mean)']);
    ``interval`` gives the exact pointwise quantiles of the mixture (bisection
    on its CDF), not a moment-matched Gaussian interval.
    """

    def __init__(self, components: Sequence[Prediction], weights, what: str = "mixture prediction"):
        self.components = list(components)
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if len(w) != len(self.components) or len(w) == 0:
            raise ValueError("one weight per component is needed")
        if np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
            raise ValueError(f"mixture weights must be non-negative and finite, got {w}")
        self.weights = w / w.sum()
        first = self.components[0]
        self.inputs = first.inputs
        self.input_columns = first.input_columns
        self.includes_noise = first.includes_noise
        self.what = what
        self._means = np.stack([c.mean for c in self.components])  # (K, n)
        self._vars = np.stack([c.var for c in self.components])  # (K, n)
        self.mean = self.weights @ self._means

    @property
    def cluster_probabilities(self) -> np.ndarray:
        """The mixture weights (K,) (for a new individual: P(cluster k | y_*))."""
        return self.weights

    @property
    def cov(self) -> np.ndarray:
        """Mixture covariance (n, n)."""
        d = self._means - self.mean[None, :]
        out = sum(w * (c.cov + np.outer(dk, dk)) for w, c, dk in zip(self.weights, self.components, d))
        return 0.5 * (out + out.T)

    @property
    def var(self) -> np.ndarray:
        """Marginal variances (n,): sum_k w_k (var_k + (mean_k - mean)^2)."""
        d = self._means - self.mean[None, :]
        return np.clip(self.weights @ (self._vars + d**2), 0.0, None)

    @property
    def std(self) -> np.ndarray:
        """Marginal standard deviations (n,) of the mixture."""
        return np.sqrt(self.var)

    @property
    def shape(self):
        """Shape of ``mean``: (n,)."""
        return self.mean.shape

    def __len__(self):
        return self.mean.shape[0]

    def cdf(self, y) -> np.ndarray:
        """Pointwise mixture CDF P(Y_j <= y_j), y shaped like ``mean``
        (a point mass where a component's variance is 0)."""
        return mixture_cdf(self._means, self._vars, self.weights[:, None], y)

    def quantile(self, q: float, n_iter: int = 200) -> np.ndarray:
        """Pointwise q-quantile of the mixture by bisection on :meth:`cdf`."""
        return mixture_quantile(self._means, self._vars, self.weights[:, None], q, n_iter)

    def interval(self, level: float = 0.95) -> Tuple[np.ndarray, np.ndarray]:
        """Exact pointwise central interval of the mixture: the
        (1 - level)/2 and (1 + level)/2 quantiles."""
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level}")
        return self.quantile(0.5 - level / 2.0), self.quantile(0.5 + level / 2.0)

    def sample(self, n_samples: int = 1, seed: Optional[int] = None) -> np.ndarray:
        """Ancestral joint draws (n_samples, n): a component k ~ weights, then
        a joint draw of that component."""
        rng = np.random.default_rng(seed)
        ks = rng.choice(len(self.weights), size=int(n_samples), p=self.weights)
        out = np.empty((int(n_samples), len(self.mean)))
        for k in np.unique(ks):
            sel = np.flatnonzero(ks == k)
            out[sel] = self.components[k].sample(len(sel), seed=rng.integers(2**63 - 1))
        return out

    def to_frame(self, level: float = 0.95):
        """Tidy table: input column(s), Mean, Var (mixture moments), Lower,
        Upper (exact mixture quantiles)."""
        return _tidy_frame(self, level)

    def __repr__(self):
        kind = "noisy outputs" if self.includes_noise else "latent process"
        return (f"MixtureOfGaussians({self.what}, {len(self.weights)} components, "
                f"{len(self.mean)} points, {kind})")
