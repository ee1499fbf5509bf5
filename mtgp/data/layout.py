"""Padded, batched layouts of ragged groups (individuals today): the pooled
grid of distinct inputs, padding with masks, size buckets and the one size
ladder every padded shape comes from, and (approximate, opt-in) binning of
inputs to a lattice.

Padding is always exact: padded points carry a mask of 0 and contribute
nothing; the ladder only limits how many distinct shapes (hence compiled
programs) occur."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from .individuals import Individuals

# --------------------------------------------------------------------------
# Padded layout


@dataclass
class Padded:
    """Individuals padded to a common size for vmapped computation.

    X (M, n, d), y (M, n), mask (M, n) in {0., 1.}, idx (M, n) index of each
    point in the pooled grid (padding points index N, one past the end)."""

    X: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    idx: np.ndarray
    counts: np.ndarray


def pooled_grid(inds: Individuals):
    """Sorted distinct inputs of all individuals (the pooled grid t of
    Prop. 4) and, per individual, the index of each of its points in it."""
    allX = np.concatenate(inds.inputs, axis=0)
    grid, inverse = np.unique(allX, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    splits = np.split(inverse, np.cumsum(inds.counts)[:-1])
    return grid, splits


def pad_individuals(inds: Individuals, index_lists, n_grid: int, size: Optional[int] = None) -> Padded:
    counts = inds.counts
    n = int(counts.max()) if size is None else int(size)
    M, d = inds.n_individuals, inds.input_dim
    X = np.zeros((M, n, d))
    y = np.zeros((M, n))
    mask = np.zeros((M, n))
    idx = np.full((M, n), n_grid, dtype=np.int64)
    # vectorised scatter of all points (no Python loop over individuals)
    row = np.repeat(np.arange(M), counts)
    pos = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    X[:] = np.stack([Xi[0] for Xi in inds.inputs])[:, None, :]  # padding copies a real input
    X[row, pos] = np.concatenate(inds.inputs, axis=0)
    y[row, pos] = np.concatenate(inds.outputs)
    mask[row, pos] = 1.0
    idx[row, pos] = np.concatenate(index_lists)
    return Padded(X, y, mask, idx, counts)


# --------------------------------------------------------------------------
# Input patterns: individuals observed at the same inputs

#: grouping the individuals of a bucket by input pattern pays (one Cholesky
#: per pattern instead of one per individual, plus a scatter of the
#: residuals) when there are at most this fraction as many patterns as
#: individuals; above it the per-individual formulas are used.
PATTERN_FRACTION = 0.5


def input_patterns(X: np.ndarray, mask: np.ndarray):
    """The rows of one padded block (X (M, n, d), mask (M, n)) with identical
    inputs and mask, hence the same Psi_i under shared individual HPs:
    ``(rep, inverse, counts)``, numpy arrays with ``X[rep][inverse] == X``
    (``rep`` (G,) one row of each pattern, ``inverse`` (M,) the pattern of
    each row, ``counts`` (G,) float64 the number of rows of each pattern).
    Padding copies a real input and is masked, so equal data give equal
    padded rows."""
    X, mask = np.asarray(X), np.asarray(mask)
    M = X.shape[0]
    if M == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    key = np.concatenate([X.reshape(M, -1), mask.reshape(M, -1)], axis=1)
    _, rep, inv, cnt = np.unique(key, axis=0, return_index=True, return_inverse=True, return_counts=True)
    return rep.astype(np.int64), np.asarray(inv).reshape(-1).astype(np.int64), cnt.astype(np.float64)


def grouping_pays(n_patterns: int, n_rows: int) -> bool:
    """Whether a block of ``n_rows`` individuals in ``n_patterns`` input
    patterns is computed per pattern (:data:`PATTERN_FRACTION`)."""
    return int(n_rows) > 0 and int(n_patterns) <= PATTERN_FRACTION * int(n_rows)


# --------------------------------------------------------------------------
# Buckets by size (exact) and optional binning of inputs (approximate)

#: Padded sizes used by bucketing: 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, ...
#: (powers of two and 1.5 times them), so padding wastes at most a third of
#: a bucket and the same few shapes (hence compiled programs) recur.
def _size_ladder(n_max: int) -> np.ndarray:
    ladder = {1}
    p = 1
    while p < 2 * n_max:
        ladder.update({p, (3 * p) // 2 if p >= 2 else p})
        p *= 2
    return np.array(sorted(ladder), dtype=np.int64)


def padded_size(n: int, minimum: int = 8) -> int:
    """The ladder size (:func:`_size_ladder`) at or above ``max(n, minimum)``:
    the padded length of one group's points (a new individual's
    observations, prediction inputs), so that groups of different sizes
    share a few compiled programs."""
    n = max(int(n), int(minimum))
    ladder = _size_ladder(n)
    return int(ladder[np.searchsorted(ladder, n)])


def pad_observations(X: np.ndarray, y: np.ndarray, m0: np.ndarray, minimum: int = 8):
    """Pad one group's points (X (n, d), y (n,), prior mean m0 (n,)) to
    :func:`padded_size`; padding copies a real input and is masked out.
    Returns (X, y, m0, mask)."""
    n = len(y)
    k = padded_size(n, minimum) - n
    mask = np.concatenate([np.ones(n), np.zeros(k)])
    return (np.vstack([X, np.repeat(X[:1], k, axis=0)]), np.concatenate([y, np.zeros(k)]),
            np.concatenate([m0, np.zeros(k)]), mask)


@dataclass
class Buckets:
    """Individuals split into buckets of similar size, each padded to its own
    size. ``blocks[b]`` is a :class:`Padded` holding the individuals
    ``rows[b]`` (indices in training order); every individual is in exactly
    one bucket. Padding is exact (padding points contribute nothing)."""

    blocks: List[Padded]
    rows: List[np.ndarray]
    counts: np.ndarray

    @property
    def sizes(self) -> List[int]:
        return [int(b.X.shape[1]) for b in self.blocks]


def bucket_sizes(counts: np.ndarray, max_buckets: Optional[int] = 4) -> np.ndarray:
    """Padded size of each individual: its count rounded up the size ladder,
    then adjacent buckets merged greedily (the merge that adds the least
    padded work sum(count * size^3)) until at most ``max_buckets`` remain.
    ``max_buckets=1`` (or None) pads everyone to the largest count."""
    counts = np.asarray(counts, dtype=np.int64)
    n_max = int(counts.max())
    if max_buckets is None or int(max_buckets) <= 1:
        return np.full(len(counts), n_max, dtype=np.int64)
    ladder = _size_ladder(n_max)
    size = ladder[np.searchsorted(ladder, counts)]
    size = np.minimum(size, n_max)  # the top bucket is the exact maximum
    uniq, members = np.unique(size, return_counts=True)
    sizes, nums = list(uniq), list(members)
    while len(sizes) > int(max_buckets):
        # merging bucket j into j+1 pads its members to sizes[j+1]
        extra = [nums[j] * (sizes[j + 1] ** 3 - sizes[j] ** 3) for j in range(len(sizes) - 1)]
        j = int(np.argmin(extra))
        nums[j + 1] += nums[j]
        del sizes[j], nums[j]
    sizes = np.array(sizes, dtype=np.int64)
    return sizes[np.searchsorted(sizes, counts)]


def bucket_individuals(inds: Individuals, index_lists, n_grid: int,
                       max_buckets: Optional[int] = 4) -> Buckets:
    """Split individuals into at most ``max_buckets`` buckets by size (see
    :func:`bucket_sizes`) and pad each bucket to its own size."""
    counts = inds.counts
    size = bucket_sizes(counts, max_buckets)
    blocks, rows = [], []
    for s in np.unique(size):
        r = np.flatnonzero(size == s)
        sub = Individuals([inds.ids[k] for k in r], [inds.inputs[k] for k in r],
                          [inds.outputs[k] for k in r], inds.input_columns)
        blocks.append(pad_individuals(sub, [index_lists[k] for k in r], n_grid, size=int(s)))
        rows.append(r)
    return Buckets(blocks, rows, counts)


def bin_inputs(inds: Individuals, width) -> Individuals:
    """APPROXIMATE: move every input to the nearest point of a regular
    lattice of spacing ``width`` (a float, or one per input dimension):
    x -> width * round(x / width). The pooled grid then has at most
    range / width points per dimension, which bounds the (N x N) work of the
    E step and of the theta_0 update whatever the number of individuals.
    Several points of one individual may fall on the same lattice point; they
    are kept (nothing is dropped or averaged). Inputs move by at most
    width / 2: choose ``width`` small against the kernels' lengthscales."""
    w = np.broadcast_to(np.asarray(width, dtype=np.float64), (inds.input_dim,))
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(f"grid_binning must be a positive width, got {width!r}")
    inputs = [np.round(X / w) * w for X in inds.inputs]
    return Individuals(list(inds.ids), inputs, [y.copy() for y in inds.outputs], list(inds.input_columns))
