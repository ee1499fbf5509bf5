"""Optimisers of pytree-parameterised objectives (unconstrained, e.g. log
hyper-parameters), and the several-start option. Which to use:

* a model's training (one problem): :func:`minimize_host` (scipy L-BFGS-B on
  a jitted value-and-gradient, :mod:`mtgp.optim.host`);
* many independent problems of one form, outside a compiled program:
  :func:`batched_minimize_host` (lock-step, vmapped steps);
* small problems inside a compiled program (vmapped over starts or
  problems): :func:`lbfgs_parallel_backtracking` or :func:`lbfgs_backtracking`
  (the iterates of :func:`batched_minimize_host` as one program;
  :mod:`mtgp.optim.inline`);
* several starts for any estimator: :func:`perturbed_starts`
  (:mod:`mtgp.optim.starts`), keep the best objective.

All three never return a point worse than the start, and treat non-finite
objective values as +inf (the line search backs off from them).
"""

from .core import OptimResult
from .host import batched_minimize_host, batched_minimize_inline, minimize_host
from .inline import lbfgs_backtracking, lbfgs_parallel_backtracking
from .starts import check_n_init, perturbed_starts

__all__ = ["OptimResult", "minimize_host", "batched_minimize_host", "batched_minimize_inline",
           "lbfgs_parallel_backtracking",
           "lbfgs_backtracking", "perturbed_starts", "check_n_init"]
