"""Gaussian predictions returned by every single-output model of mtgp."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats


class Prediction:
    """A Gaussian over the outputs at ``inputs``: ``mean`` (n,), ``cov`` (n, n).

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
        # the diagonal can dip below 0 by round-off where the posterior is tight
        return np.clip(np.diagonal(self.cov), 0.0, None)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var)

    def interval(self, level: float = 0.95):
        """Pointwise central credible interval ``(lower, upper)``."""
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level}")
        z = stats.norm.ppf(0.5 + level / 2.0)
        return self.mean - z * self.std, self.mean + z * self.std

    def sample(self, n_samples: int = 1, seed: Optional[int] = None) -> np.ndarray:
        rng = np.random.default_rng(seed)
        w, V = np.linalg.eigh(self.cov)
        root = V * np.sqrt(np.clip(w, 0.0, None))
        return self.mean + rng.standard_normal((n_samples, len(self.mean))) @ root.T

    def to_frame(self, level: float = 0.95) -> pd.DataFrame:
        """Tidy table: input column(s), Mean, Var, Lower, Upper."""
        lo, hi = self.interval(level)
        df = pd.DataFrame(self.inputs, columns=self.input_columns)
        df["Mean"] = self.mean
        df["Var"] = self.var
        df["Lower"] = lo
        df["Upper"] = hi
        return df

    def __len__(self):
        return len(self.mean)

    def __repr__(self):
        kind = "noisy outputs" if self.includes_noise else "latent process"
        return f"Prediction({self.what}, {len(self.mean)} points, {kind})"
