"""The several-start option shared by every estimator that learns
hyper-parameters (``n_init`` starts, ``random_state``): the given start and
``n_init - 1`` random perturbations of it on the log scale; the estimator
keeps the run with the best objective."""

from __future__ import annotations

from typing import List, Optional

import jax
import numpy as np

__all__ = ["perturbed_starts", "check_n_init"]

#: standard deviation of the perturbations, on the log scale of the
#: hyper-parameters (a factor of about e^0.5 = 1.65 either way)
START_SCALE = 0.5


def check_n_init(n_init) -> int:
    """``n_init`` as a positive int, or a ValueError naming it."""
    try:
        n = int(n_init)
    except (TypeError, ValueError):
        raise ValueError(f"n_init must be a positive integer, got {n_init!r}") from None
    if n < 1 or n != n_init:
        raise ValueError(f"n_init must be a positive integer, got {n_init!r}")
    return n


def perturbed_starts(start, n_init: int, random_state: Optional[int] = None,
                     scale: float = START_SCALE) -> List:
    """``[start]`` followed by ``n_init - 1`` copies of the pytree ``start``
    with every leaf moved by ``scale`` times a standard normal draw (one
    generator seeded with ``random_state``, leaves in pytree order)."""
    n = check_n_init(n_init)
    rng = np.random.default_rng(random_state)
    starts = [start]
    for _ in range(n - 1):
        starts.append(jax.tree_util.tree_map(lambda a: a + scale * rng.standard_normal(np.shape(a)), start))
    return starts
