"""L-BFGS minimisation of pytree-parameterised objectives (see
:mod:`mtgp.optim.lbfgs`) and the several-start helper shared by every
estimator (:mod:`mtgp.optim.starts`)."""

from .lbfgs import (OptimResult, batched_lbfgs_minimize, batched_minimize_host, lbfgs_minimize,
                    lbfgs_parallel_backtracking, minimize_host)
from .starts import check_n_init, perturbed_starts

__all__ = ["OptimResult", "minimize_host", "batched_minimize_host", "lbfgs_parallel_backtracking",
           "lbfgs_minimize", "batched_lbfgs_minimize", "perturbed_starts", "check_n_init"]
