"""Multi-output GPs for T outputs observed at the same N inputs (an output is
a column of Y, the Cool-MTGP paper's "task").

* :class:`CoolMTGP` (García-Hinde et al. 2022), hierarchical or approximate;
* baselines :class:`IndependentGPs`, :class:`ICM` (Std-MT) and
  :class:`StructuredNoiseMTGP` (Sigma-MT);
* the exact eigendecomposition predictive / likelihood of
  ``vec(Y) ~ N(0, C (x) K + Sigma (x) I)`` (output-major ``vec``), and the
  exact ones of its observed entries when Y has missing outputs (NaN);
* :func:`held_out_entry_coverage`: the coverage of ``predict_missing``'s
  intervals on entries held out on purpose.
"""

from .baselines import ICM, IndependentGPs, StructuredNoiseMTGP
from .base import MultiOutputGP
from .cool import (
    CoolMTGP,
    approximate_log_likelihood,
    hierarchical_log_likelihood,
    map_previous_weights,
    noise_covariance_recursion,
    recover_noise_covariance,
    output_order_sensitivity,
    recover_output_covariance,
    recover_task_covariance,
    task_order_sensitivity,
)
from .held_out import held_out_entry_coverage
from .algebra import ComplementPredictor, EigenPredictor, MaskedPredictor, masked_log_likelihood, mtgp_log_likelihood

__all__ = [
    "CoolMTGP", "IndependentGPs", "ICM", "StructuredNoiseMTGP", "MultiOutputGP",
    "ComplementPredictor", "EigenPredictor", "MaskedPredictor", "masked_log_likelihood", "mtgp_log_likelihood",
    "approximate_log_likelihood",
    "hierarchical_log_likelihood", "map_previous_weights", "recover_noise_covariance",
    "noise_covariance_recursion", "recover_output_covariance", "output_order_sensitivity",
    "recover_task_covariance", "task_order_sensitivity", "held_out_entry_coverage",
]
