"""The simulation scheme of Leroy et al. (2022), Sec. 6."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np

if TYPE_CHECKING:  # pandas is imported where a table is built (import time)
    import pandas as pd


@dataclass
class SimulatedData:
    """``data``: long DataFrame (ID, Input, Output); ``grid``: the working
    grid t (N,); ``mean_process``: the true mu_0(t); ``prior_mean``: m_0(t);
    ``hyperparameters``: the true HPs per individual (DataFrame) and
    ``mean_hyperparameters`` (v_0, l_0)."""

    data: pd.DataFrame
    grid: np.ndarray
    mean_process: np.ndarray
    prior_mean: np.ndarray
    hyperparameters: pd.DataFrame
    mean_hyperparameters: dict

    def mean_at(self, inputs) -> np.ndarray:
        """True mu_0 at inputs that lie on the working grid."""
        pos = {float(t): k for k, t in enumerate(self.grid)}
        try:
            return self.mean_process[[pos[float(t)] for t in np.asarray(inputs).reshape(-1)]]
        except KeyError as e:
            raise ValueError(f"input {e.args[0]} is not on the simulation grid") from None


def _se(t1, t2, v, l):
    return v * np.exp(-0.5 * (t1[:, None] - t2[None, :]) ** 2 / l**2)


def simulate(n_individuals: int = 20, n_points: int = 30, n_grid: int = 200,
             common_hp: bool = True, common_grid: bool = True,
             seed: Optional[int] = None) -> SimulatedData:
    """Draw a data set by the scheme of Sec. 6 (steps 1-6):

    1. a random working grid t of ``n_grid`` inputs in [0, 10];
    2. m_0(t) = a t + b with a ~ U[-2, 2], b ~ U[0, 10];
    3. v_0 ~ U[1, e^5], l_0 ~ U[1, e^2];
    4. mu_0(t) ~ N(m_0(t), K_theta0) (SE kernel, eq. 1 with v = variance);
    5. v_i ~ U[1, e^5], l_i ~ U[1, e^2], sigma_i^2 ~ U[0, 1] per individual
       (drawn once and shared when ``common_hp``);
    6. t_i: ``n_points`` inputs of t (the same for all with ``common_grid``),
       y_i ~ N(mu_0(t_i), Psi_i).
    Individuals' IDs are "ID1", "ID2", ...; inputs are sorted.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    if n_points > n_grid:
        raise ValueError("n_points cannot exceed n_grid")
    t = np.sort(rng.uniform(0.0, 10.0, n_grid))
    a, b = rng.uniform(-2, 2), rng.uniform(0, 10)
    m0 = a * t + b
    v0, l0 = rng.uniform(1, np.exp(5)), rng.uniform(1, np.exp(2))
    K0 = _se(t, t, v0, l0)
    w, U = np.linalg.eigh(K0)
    mu0 = m0 + U @ (np.sqrt(np.clip(w, 0, None)) * rng.standard_normal(n_grid))

    def draw_hp():
        return rng.uniform(1, np.exp(5)), rng.uniform(1, np.exp(2)), rng.uniform(0, 1)

    shared = draw_hp()
    common_idx = np.sort(rng.choice(n_grid, n_points, replace=False))
    rows, hps = [], []
    for i in range(n_individuals):
        v, l, s2 = shared if common_hp else draw_hp()
        idx = common_idx if common_grid else np.sort(rng.choice(n_grid, n_points, replace=False))
        ti = t[idx]
        C = _se(ti, ti, v, l) + s2 * np.eye(n_points)
        wi, Ui = np.linalg.eigh(C)
        yi = mu0[idx] + Ui @ (np.sqrt(np.clip(wi, 0, None)) * rng.standard_normal(n_points))
        name = f"ID{i + 1}"
        rows.append(pd.DataFrame({"ID": name, "Input": ti, "Output": yi}))
        hps.append({"ID": name, "variance": v, "lengthscale": l, "noise": s2})
    return SimulatedData(pd.concat(rows, ignore_index=True), t, mu0, m0, pd.DataFrame(hps),
                         {"variance": v0, "lengthscale": l0})
