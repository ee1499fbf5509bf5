"""Check the intervals of a table's missing entries on entries held out on
purpose: the held-out check ``docs/multioutput.md`` asks for before trusting
``predict_missing``'s intervals (leave-one-out at the fitted parameters does
not reveal an overconfident fitted noise covariance:
``docs/results/cool_missing_loo.md``).
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from .validation import check_fit_data

__all__ = ["held_out_entry_coverage"]


def _held_out_mask(observed: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A random ``fraction`` of the observed entries, each output keeping at
    least two observed values (what ``fit`` needs)."""
    rows, cols = np.nonzero(observed)
    wanted = rng.permutation(rows.size)[: int(round(fraction * rows.size))]
    wanted_cols = cols[wanted]
    # rank of each wanted entry among those of its output, in draw order
    by_output = np.argsort(wanted_cols, kind="stable")
    sorted_cols = wanted_cols[by_output]
    rank = np.empty(wanted.size, dtype=int)
    rank[by_output] = np.arange(wanted.size) - np.searchsorted(sorted_cols, sorted_cols, side="left")
    wanted = wanted[rank < observed.sum(axis=0)[wanted_cols] - 2]
    mask = np.zeros_like(observed)
    mask[rows[wanted], cols[wanted]] = True
    return mask


def held_out_entry_coverage(estimator, X, Y, fraction: float = 0.1, level: float = 0.95,
                            n_repeats: int = 3, random_state=0) -> dict:
    """Hold out a random ``fraction`` of the observed entries of ``Y``, refit
    a clone of ``estimator`` without them, and score its
    :meth:`~mtgp.multioutput.MultiOutputGP.predict_missing` at them:
    ``n_repeats`` times, each with its own entries.

    This is the check to run before trusting the intervals of a table's
    missing entries: exact for the fitted model, they are only as good as
    the fitted noise covariance, and a full Sigma fitted on few rows can be
    too confident (on the Mulan sets with T = 16 outputs and 100 rows, 67-89%
    coverage of 95% intervals: ``docs/results/cool_mulan_missing.md``),
    which in-sample checks do not show. Measured on the 81 cells of
    ``docs/results/cool_missing_loo.md``: see that page. The entries are
    drawn uniformly among the observed ones, so the check answers for gaps
    at random; where the real gaps follow a pattern (an output missing over
    a range of inputs), hold out such a pattern by hand. Each output keeps
    at least two observed values; ``estimator`` itself is not changed.

    Returns a dict:

    * ``"table"``: one row per output and a last row ``"all"`` (``"all
      outputs"`` when an output is named ``"all"``):
      ``held_out`` (entries scored), ``coverage`` (% inside the central
      ``level`` intervals), ``min_honest`` (the least coverage honest
      intervals reach with that many entries, 95% binomial: 100 (level -
      1.96 sqrt(level (1 - level) / held_out)); entries scored after one
      refit share its errors, so below it is a sign, not a proof),
      ``rmse``, ``mean_sd`` (mean predictive sd) and ``z_rms`` (root mean
      square of (y - mean) / sd: 1 where the intervals are honest, above 1
      where they are too narrow);
    * ``"entries"``: one row per scored entry: ``repeat``, ``row`` (position
      in ``Y``), ``label`` (``Y``'s index label when ``Y`` is a DataFrame),
      ``output``, ``value``, ``mean``, ``sd``, ``covered``;
    * ``"level"``.
    """
    import pandas as pd
    from sklearn.base import clone

    if not callable(getattr(estimator, "predict_missing", None)):
        raise TypeError(f"held_out_entry_coverage needs a multi-output model (CoolMTGP, ICM, "
                        f"StructuredNoiseMTGP, IndependentGPs), got {type(estimator).__name__}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if int(n_repeats) != n_repeats or n_repeats < 1:
        raise ValueError(f"n_repeats must be a positive integer, got {n_repeats}")
    _, Ya, names = check_fit_data(X, Y)
    observed = ~np.isnan(Ya)
    labels = Y.index if isinstance(Y, (pd.DataFrame, pd.Series)) else pd.RangeIndex(len(Ya))
    z_level = NormalDist().inv_cdf(0.5 + level / 2.0)
    rng = np.random.default_rng(random_state)
    parts = []
    for repeat in range(int(n_repeats)):
        mask = _held_out_mask(observed, fraction, rng)
        if not mask.any():
            raise ValueError(f"fraction={fraction} holds out no entry of {int(observed.sum())} observed ones "
                             "(each output keeps at least two): raise fraction")
        Y_fit = Ya.copy()
        Y_fit[mask] = np.nan
        if isinstance(Y, pd.DataFrame):
            Y_fit = pd.DataFrame(Y_fit, index=Y.index, columns=Y.columns)
        filled = clone(estimator).fit(X, Y_fit).predict_missing()
        rows, cols = np.nonzero(mask)
        mean, sd = filled.mean[rows, cols], np.sqrt(filled.var[rows, cols])
        parts.append(pd.DataFrame({
            "repeat": repeat, "row": rows, "label": np.asarray(labels)[rows],
            "output": np.asarray(names, dtype=object)[cols], "value": Ya[rows, cols],
            "mean": mean, "sd": sd, "covered": np.abs(Ya[rows, cols] - mean) <= z_level * sd}))
    entries = pd.concat(parts, ignore_index=True)

    def summary(group):
        err = group["value"] - group["mean"]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(group["sd"] > 0, err / group["sd"], np.where(err == 0, 0.0, np.inf))
        n = len(group)
        return pd.Series({"held_out": n, "coverage": 100.0 * group["covered"].mean(),
                          "min_honest": 100.0 * (level - 1.96 * np.sqrt(level * (1.0 - level) / n)),
                          "rmse": float(np.sqrt(np.mean(err ** 2))), "mean_sd": float(group["sd"].mean()),
                          "z_rms": float(np.sqrt(np.mean(z ** 2)))})

    rows = {name: summary(group) for name, group in entries.groupby("output", sort=False)}
    rows = {name: rows[name] for name in names if name in rows}  # Y's column order
    rows["all" if "all" not in rows else "all outputs"] = summary(entries)
    table = pd.DataFrame(rows).T
    table.index.name = "output"
    table["held_out"] = table["held_out"].astype(int)
    return {"table": table, "entries": entries, "level": level}
