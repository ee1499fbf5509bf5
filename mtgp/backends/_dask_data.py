"""The Dask backend's part for data that start on the workers and for new
individuals predicted there (issue 15): :class:`DataOnWorkers`, a mixin of
:class:`mtgp.backends.Dask` (kept apart from its EM contract in
:mod:`mtgp.backends.dask`)."""

from __future__ import annotations

import pickle

import numpy as np

from . import _partition as pt

def _validate_part(frame, input_columns, index, grid_binning, what):
    from ..data.partitioned import validate_partition

    return validate_partition(frame, input_columns, index, grid_binning, what)


def _summary_part(inds):
    from ..data.partitioned import summary

    return summary(inds)


def _layout_part(inds, index, grid, m0, sizes, global_rows):
    """A :class:`~mtgp.backends._partition.Partition` built on the worker
    from its validated individuals: each bucket (individuals of one padded
    size, ``sizes`` from :func:`mtgp.data.bucket_sizes` over all training
    individuals) padded as :func:`mtgp.data.bucket_individuals` pads it."""
    from ..data import Individuals, pad_individuals
    from ..data.partitioned import grid_index

    counts = inds.counts
    index_lists = np.split(grid_index(grid, np.concatenate(inds.inputs, axis=0)), np.cumsum(counts)[:-1])
    X, y, mask, idx, w = [], [], [], [], []
    for s in np.unique(sizes):
        r = np.flatnonzero(sizes == s)
        sub = Individuals([inds.ids[k] for k in r], [inds.inputs[k] for k in r],
                          [inds.outputs[k] for k in r], inds.input_columns)
        pad = pad_individuals(sub, [index_lists[k] for k in r], len(grid), size=int(s))
        X.append(pad.X)
        y.append(pad.y)
        mask.append(pad.mask)
        idx.append(pad.idx)
        w.append(np.ones(len(r)))
    return pt.Partition(index, tuple(X), tuple(y), tuple(mask), tuple(idx), tuple(w), grid, m0, global_rows)


def _gather_individuals(pieces):
    """One :class:`~mtgp.data.Individuals` from ``pieces`` = [(validated
    individuals of a frame partition, positions of those wanted)], in that
    order (whole individuals: the regrouping of ``Dask(n_partitions=...)``)."""
    from ..data import Individuals

    pieces = [(inds, np.asarray(k, dtype=np.int64)) for inds, k in pieces if len(k)]
    first = pieces[0][0]
    take = lambda attr: [getattr(inds, attr)[j] for inds, k in pieces for j in k]
    return Individuals(take("ids"), take("inputs"), take("outputs"), first.input_columns)


def regroup(sizes, n_parts: int):
    """Which individuals each of ``n_parts`` partitions gathers: every size
    bucket (``sizes``, one per individual in frame order) cut into
    ``n_parts`` contiguous chunks, partition p taking chunk p of each (as
    :func:`mtgp.backends._partition.split` cuts in-memory data). Returns,
    per non-empty partition, the individuals' frame-order positions
    (ascending)."""
    chunks = [np.array_split(np.flatnonzero(sizes == b), n_parts) for b in np.unique(sizes)]
    out = [np.sort(np.concatenate([ch[p] for ch in chunks])) for p in range(n_parts)]
    return [g for g in out if g.size]


def _predict_part(box, inds, level):
    return box.value.frame(inds, level)


def _predict_frame_part(box, frame, index, level):
    from ..data.partitioned import validate_partition

    inds = validate_partition(frame, box.value.input_columns, index, what="new individuals")
    return None if inds is None else box.value.frame(inds, level)


class _Rows:
    """A partition's training-order rows (what :class:`_Handle` reads)."""

    def __init__(self, global_rows):
        self.global_rows = global_rows


class DataOnWorkers:
    """Methods of :class:`mtgp.backends.Dask` for a Dask DataFrame fitted
    where its partitions are (:meth:`prepare_frame`) and for batched
    predictions of new individuals on the workers
    (:meth:`predict_individuals`)."""

    def prepare_frame(self, ddf, input_columns, max_buckets, prior_values, grid_binning=None):
        """Lay out a Dask DataFrame's training individuals on the workers: each
        partition (whole individuals) is validated there
        (:func:`mtgp.data.partitioned.validate_partition`), only its
        :func:`~mtgp.data.partitioned.summary` comes here; the pooled grid, the
        prior mean on it (``prior_values(grid)``) and each individual's bucket
        size are computed here and sent back, and each partition is padded
        where it is. Returns (RemoteIndividuals, grid, bucket sizes, handle).
        The handle holds no copy of the data here (``keep_copy`` does not
        apply): a partition lost with its worker during the fit is recomputed
        by the scheduler from the frame's graph and the step retried
        (:meth:`Dask._repair`); one it cannot recompute is a clear error."""
        from ..data import bucket_sizes
        from ..data.partitioned import merge_summaries
        from .dask import _Handle  # (dask.py imports this module)

        c = self.client
        frames = c.compute(ddf.to_delayed())
        inds_f = [c.submit(_validate_part, f, input_columns, k, grid_binning, "training data", pure=False)
                  for k, f in enumerate(frames)]
        summaries = c.gather([c.submit(_summary_part, f, pure=False) for f in inds_f])
        self.bytes_moved += len(pickle.dumps(summaries, protocol=5))
        inds, grid = merge_summaries(summaries)
        m0 = np.asarray(prior_values(grid), dtype=np.float64)
        sizes = bucket_sizes(inds.counts, max_buckets)
        kept = [(f, len(s["ids"])) for f, s in zip(inds_f, summaries) if s is not None]
        starts = np.cumsum([0] + [n for _, n in kept])
        if self.n_partitions is None or int(self.n_partitions) == len(kept):
            groups = [np.arange(starts[j], starts[j + 1]) for j in range(len(kept))]  # as they are
        else:
            if int(self.n_partitions) < 1:
                raise ValueError(f"n_partitions must be >= 1, got {self.n_partitions}")
            groups = regroup(sizes, int(self.n_partitions))
        part_of = np.repeat(np.arange(len(kept)), [n for _, n in kept])
        futures, rows = [], []
        for g in groups:
            sz = sizes[g]
            r = np.concatenate([g[sz == b] for b in np.unique(sz)])
            js = np.unique(part_of[g])
            if len(js) == 1 and len(g) == kept[js[0]][1]:  # one whole frame partition
                src = kept[js[0]][0]
            else:  # whole individuals gathered from several frame partitions (moved between workers)
                pieces = [(kept[j][0], g[part_of[g] == j] - starts[j]) for j in js]
                src = c.submit(_gather_individuals, pieces, pure=False)
            self._send((grid, m0, sz, r))
            futures.append(c.submit(_layout_part, src, len(futures), grid, m0, sz, r, pure=False))
            rows.append(_Rows(r))
        from distributed import wait

        wait(futures)  # laid out: who_has knows where each partition is
        who = c.who_has(futures)
        workers = [next(iter(who.get(f.key, ())), None) for f in futures]
        handle = _Handle(futures, rows, workers, inds.n_individuals, None, source="a Dask DataFrame")
        return inds, grid, [int(b) for b in np.unique(sizes)], handle

    def predict_individuals(self, predictor, data, level: float = 0.95):
        """Batched Sec. 4 predictions on the workers
        (:meth:`mtgp.Magma.predict_individuals`): ``predictor`` (a
        :class:`mtgp.magma.prediction.NewIndividuals`: hyper-posterior on the
        pooled grid, HPs, prediction inputs) is broadcast once; ``data`` is an
        :class:`mtgp.data.Individuals` (cut into one contiguous chunk per
        worker and sent) or a Dask DataFrame (each partition, holding whole
        individuals, validated and predicted where it is); MagmaClust's
        predictor (:class:`mtgp.magmaclust.prediction.NewIndividuals`) alike.
        The tables come back and are concatenated in the individuals' order."""
        import cloudpickle
        import pandas as pd

        from ..data import Individuals
        from ..data.partitioned import check_whole_individuals
        from .dask import _Box  # (dask.py imports this module)

        c = self.client
        # one scatter to every worker (counted with cloudpickle: a callable
        # prior mean may be a lambda)
        self.bytes_moved += len(cloudpickle.dumps(predictor)) * len(self._workers())
        box = c.scatter([_Box(predictor)], broadcast=True, hash=False)[0]
        if isinstance(data, Individuals):
            chunks = [r for r in np.array_split(np.arange(data.n_individuals), len(self._workers())) if r.size]
            futs = []
            for r in chunks:
                sub = Individuals([data.ids[k] for k in r], [data.inputs[k] for k in r],
                                  [data.outputs[k] for k in r], data.input_columns)
                self._send(sub)
                futs.append(c.submit(_predict_part, box, sub, level, pure=False))
        else:
            frames = c.compute(data.to_delayed())
            futs = [c.submit(_predict_frame_part, box, f, k, level, pure=False) for k, f in enumerate(frames)]
        out = [o for o in c.gather(futs) if o is not None]
        self.bytes_moved += len(pickle.dumps(out, protocol=5))
        check_whole_individuals([o.attrs["hyperparameters"]["ID"].tolist() for o in out], "new individuals")
        # the per-individual tables of attrs (HPs; MagmaClust's cluster
        # probabilities) concatenated like the rows
        attrs = {key: pd.concat([o.attrs[key] for o in out], ignore_index=True) for key in out[0].attrs}
        for o in out:
            o.attrs = {}
        table = pd.concat(out, ignore_index=True)
        table.attrs.update(attrs)
        return table
