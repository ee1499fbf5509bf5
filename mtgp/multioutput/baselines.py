"""Baselines of the Cool-MTGP paper, in the same API and with the same
optimiser, budget (``max_iter`` L-BFGS iterations, ``tol``) and several-start
option (``n_init``, ``random_state``). An output is a column of Y (the
paper's "task").

* :class:`IndependentGPs`: one GP per output, each with its own kernel
  hyper-parameters, b_t and sigma_t^2 (one optimiser run per output, each
  with the full budget; one vmapped predictive).
* :class:`ICM`: Std-MT (Bonilla et al. 2008): C = A A^T with A (T, P) (rank
  P; ``diagonal=True`` adds a free diagonal as GPyTorch's IndexKernel does),
  per-output noise Sigma = diag(sigma_t^2).
* :class:`StructuredNoiseMTGP`: Sigma-MT (Rakitsch et al. 2013): free-form
  C = L_c L_c^T and Sigma = L_s L_s^T (Cholesky factors, log diagonals) or,
  with ``rank=P``, the paper's rank-P forms A A^T + s^2 I for both.

The joint likelihood (eq. 4) of ICM and Sigma-MT is evaluated exactly in
O(N^3 + T^3) by :func:`~mtgp.multioutput.algebra.mtgp_log_likelihood`.
Both take ``min_noise_variance`` (default 1e-4, as :class:`CoolMTGP`; 0
gives the models as published): a floor added to Sigma's diagonal, relative
to each output's variance. When the data let Sigma become singular, eq. (4)
is unbounded or grows towards Sigma's boundary and without a floor the fit
follows it (a ``DegenerateOutputsWarning`` says so): on edm with 10% of the
outputs removed, Std-MT without a floor drives one output's noise to 1e-15
of its variance (exact log-likelihood -109.0 against -170.1 at the floor
1e-4) and predicts the removed entries with RMSE 1.21 against 0.87 at the
floor, which is also GPyTorch's (its noise constraint ``GreaterThan(1e-4)``).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..linalg import cho_solve, cholesky, gaussian_logpdf, mask_padded, report_jitter, safe_cholesky, tri_solve
from ..compile import cached_jit
from .base import (NOISE_FLOOR_BINDING, MultiOutputGP, apply_mask, minimize, minimize_from_starts,
                   output_covariance, output_variances, run_info, store_params)
from .algebra import (complement_cost_ratio, complement_masked_log_likelihood, coregional_cost_ratio,
                      coregional_masked_log_likelihood, masked_log_likelihood, mtgp_log_likelihood, observed_index,
                      observed_values)

__all__ = ["IndependentGPs", "ICM", "StructuredNoiseMTGP"]


class _JointMTGP(MultiOutputGP):
    """Shared fitting of models parameterised by (kernel, C(p), Sigma(p)):
    maximise eq. (4) exactly over all parameters with L-BFGS."""

    _saved_attributes = ("params_", "n_iter_")

    def _structure(self, Y, b0, s20, rng):  # -> (start of the C/Sigma parameters, cov function)
        raise NotImplementedError

    def _key(self):
        raise NotImplementedError

    #: name of the start that ``_structure`` returns (``fit_info_["start"]``)
    _first_start = "default"

    def _extra_starts(self, Y, b0, s20, x0) -> dict:  # -> {name: C/Sigma start parameters} fitted besides x0
        return {}

    def _screen_budget(self, n_starts) -> int:  # iterations each start gets before the best one goes on
        return int(self.max_iter)

    def _factored_masked_likelihood(self, Y):
        """With missing outputs: ``(loglik, cost)``, a function (K, params,
        noise floor, Y0, W) -> exact log-likelihood of the observed entries
        that uses the model's structure and its cost relative to the dense
        form; None where the model has no such structure."""
        return None

    def _floor_bound_outputs(self):
        """Outputs whose noise is held up by the floor: the fitted Sigma is
        S + diag(floor), floor_t = ``min_noise_variance`` x output t's
        variance, and along some standardised direction S is at most
        (:data:`~mtgp.multioutput.base.NOISE_FLOOR_BINDING` - 1) times the
        floor (the floor is at least half the noise there); the outputs that
        make up such a direction (weight at least half the largest). With a
        diagonal Sigma (ICM) these are the outputs whose sigma_t^2 is at most
        twice its floor, as for CoolMTGP's conditional noises. The floor then
        sets the intervals of y* along it; and since Sigma's smallest
        eigenvalue cannot fall below the floor ratio, this is the only
        collapse signal where that ratio is at least
        :data:`~mtgp.multioutput.base.NOISE_COLLAPSE_RATIO` (the default)."""
        ratio = float(getattr(self, "min_noise_variance", 0.0))
        if ratio <= 0.0 or getattr(self, "_Sigma", None) is None:
            return []
        sd = np.sqrt(output_variances(self._Y))  # the scale the floor was set on (internal)
        fitted = (self._Sigma - np.diag(ratio * sd ** 2)) / np.outer(sd, sd)
        w, V = np.linalg.eigh(0.5 * (fitted + fitted.T))
        bound = np.zeros(len(sd), bool)
        for j in np.flatnonzero(w <= (NOISE_FLOOR_BINDING - 1.0) * ratio):
            weight = np.abs(V[:, j])
            bound |= weight >= 0.5 * weight.max()
        return [self.output_names_[t] for t in np.flatnonzero(bound)]

    @staticmethod
    def _masked_costs(Y, factored):
        """Relative cost (dense = 1) of each exact form of the observed
        entries' likelihood that applies; the fit takes the cheapest."""
        N, T = Y.shape
        costs = {"masked dense": 1.0,
                 "masked complement": complement_cost_ratio(N, T, int(np.isnan(Y).sum()))}
        if factored is not None:
            costs["masked coregional"] = factored[1]
        return costs

    def _fit_core(self, X, Y):
        kernel, mask, theta0, b0, s20 = self._start(X, Y)
        rng = np.random.default_rng(self.random_state)
        extra0, covs = self._structure(Y, b0, s20, rng)
        x0 = {"kernel": theta0, **extra0}
        floor_value = float(getattr(self, "min_noise_variance", 0.0))
        if not (np.isfinite(floor_value) and floor_value >= 0.0):
            raise ValueError(f"min_noise_variance must be >= 0, got {floor_value!r}")
        floor = jnp.asarray(floor_value * output_variances(Y))

        variant = "eigen"
        if np.isnan(Y).any():  # missing outputs: the cheapest exact form of eq. (4) on the observed entries
            factored = self._factored_masked_likelihood(Y)
            costs = self._masked_costs(Y, factored)
            variant = min(costs, key=costs.get)
        if variant == "masked coregional":  # the model's latent processes: no |O| x |O| matrix
            loglik = factored[0]

            def obj(p, theta0, X, data, floor):
                Y0, W = data
                theta = apply_mask(mask, p["kernel"], theta0)
                return -loglik(kernel.evaluate(theta, X, X), p, floor, Y0, W) / jnp.sum(W)

            data = (jnp.asarray(np.nan_to_num(Y, nan=0.0)), jnp.asarray(~np.isnan(Y), dtype=float))
        elif variant == "masked complement":  # the complete-data eigen route and the few missing entries
            def obj(p, theta0, X, data, floor):
                Y0, m_i, m_t = data
                theta = apply_mask(mask, p["kernel"], theta0)
                K = kernel.evaluate(theta, X, X)
                C, S = covs(p)
                n_obs = Y0.shape[0] * Y0.shape[1] - m_i.shape[0]
                return -complement_masked_log_likelihood(K, C, S + jnp.diag(floor), Y0, m_i, m_t) / n_obs

            m_i, m_t = np.nonzero(np.isnan(Y))
            data = (jnp.asarray(np.nan_to_num(Y, nan=0.0)), jnp.asarray(m_i.astype(np.int32)),
                    jnp.asarray(m_t.astype(np.int32)))
        elif variant == "masked dense":  # the observed entries' covariance, dense
            def obj(p, theta0, X, data, floor):
                y_o, i_o, t_o = data
                theta = apply_mask(mask, p["kernel"], theta0)
                K = kernel.evaluate(theta, X, X)
                C, S = covs(p)
                return -masked_log_likelihood(K, C, S + jnp.diag(floor), y_o, i_o, t_o) / y_o.shape[0]

            i_o, t_o = observed_index(Y)
            data = (jnp.asarray(observed_values(Y)), jnp.asarray(i_o), jnp.asarray(t_o))
        else:
            def obj(p, theta0, X, Y, floor):
                theta = apply_mask(mask, p["kernel"], theta0)
                K = kernel.evaluate(theta, X, X)
                C, S = covs(p)
                return -mtgp_log_likelihood(K, C, S + jnp.diag(floor), Y) / (Y.shape[0] * Y.shape[1])

            data = jnp.asarray(Y)

        key = (type(self).__name__, self._key(), kernel.structure(), variant)
        args = (theta0, jnp.asarray(X), data, floor)
        starts = {self._first_start: x0}
        starts.update({name: {"kernel": theta0, **start}
                       for name, start in self._extra_starts(Y, b0, s20, extra0).items()})
        screen = self._screen_budget(len(starts))
        # structurally different starts, each with the budget `screen` (the full one unless screening);
        # the lowest objective is kept (the first start on ties)
        kept, objectives = None, {}
        for name, start in starts.items():
            r = minimize_from_starts(key, obj, start, args, screen, self.tol, self.n_init, self.random_state)
            objectives[name] = float(r[0].value)
            if kept is None or (np.isfinite(objectives[name]) and not objectives[name] >= objectives[kept]):
                kept, (res, best, info) = name, r
        if screen < self.max_iter and info["stop_reason"] == "max_iter":  # the screened start goes on
            more = minimize(key, obj, res.params, args, self.max_iter - screen, self.tol)
            res = more._replace(n_iter=np.asarray(int(res.n_iter) + int(more.n_iter)))
            info = dict(info, **run_info(res, self.max_iter), screen_iter=screen)
        if len(starts) > 1:
            info = dict(info, start=kept, start_objectives=objectives)
        info = dict(info, likelihood=variant)
        p = res.params
        self._theta = apply_mask(mask, p["kernel"], theta0)
        def build():  # covs depends only on the model's structure, which the key names
            def fitted_covs(p, floor):
                C, S = covs(p)
                return C, S + jnp.diag(floor)

            return fitted_covs

        C, S = cached_jit((type(self).__name__, self._key(), "fitted-covs"), build)(p, floor)
        self._C, self._Sigma = np.asarray(C), np.asarray(S)
        self.params_ = jax.tree_util.tree_map(np.asarray, p)
        self.n_iter_ = int(res.n_iter)
        return info


def _is_count(value) -> bool:
    """An integer >= 1 (a bool is not one)."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= 1


def _leading_factors(Y, b0, P, rng):
    """Start of a rank-P factor A (T, P) of C = A A^T: the P leading
    eigenvectors of the outputs' empirical covariance S (pairwise over
    observed rows, :func:`~mtgp.multioutput.base.output_covariance`), scaled
    so that A A^T is the signal share b0 / var of S's rank-P part (eigenvalues
    floored at 1% of the largest: no zero column, a saddle of A -> A A^T).
    The outputs' correlations thus start with the signs and sizes the data
    show, instead of a random draw that may set correlated outputs against
    each other (slump: a random A needed 107 L-BFGS iterations to the optimum
    that this start reaches within 50). It is a start, not a guarantee: on
    andro at 30% removed it leads into a worse basin than a random draw
    (docs/results/cool_mulan_missing.md). Columns beyond T, and data with no
    covariance, fall back to a random draw of variance b0 / P."""
    T = Y.shape[1]
    A0 = _random_factors(T, P, b0, rng)
    S = output_covariance(Y)
    lam, V = np.linalg.eigh(S)
    lam, V = lam[::-1][:P], V[:, ::-1][:, :P]
    if not (np.all(np.isfinite(lam)) and lam[0] > 0):
        return A0
    share = float(np.sum(b0) / np.trace(S)) if np.trace(S) > 0 else 1.0
    k = lam.shape[0]
    A0[:, :k] = V * np.sqrt(share * np.maximum(lam, 1e-2 * lam[0]))[None, :]
    return A0


def _random_factors(T, P, b0, rng):
    """A random factor A (T, P) of C = A A^T: N(0, b0_t / P) entries."""
    return rng.normal(size=(T, P)) * np.sqrt(b0 / P)[:, None]


def _chol_from(off, logdiag):
    return jnp.tril(off, -1) + jnp.diag(jnp.exp(logdiag))


class ICM(_JointMTGP):
    """Std-MT (Bonilla, Chai & Williams 2008), the intrinsic coregionalisation
    model: vec Y ~ N(0, C (x) K + diag(sigma^2) (x) I) with C = A A^T, A of
    shape (T, rank) (plus a free diagonal if ``diagonal=True``).

    Parameters: ``kernel`` (default SE(); its overall variance is held fixed,
    C absorbs the scale), ``rank`` P, ``diagonal``, ``normalize_y``,
    ``max_iter``, ``tol``, ``random_state`` (the random start of A, the
    perturbed starts, initial A for columns beyond T), ``min_noise_variance``
    (floor of each sigma_t^2 relative to the output's variance; default
    1e-4, 0: the published model), ``start``, ``n_random_starts``,
    ``screen_iter`` and ``n_init``.

    ``start`` chooses the initial factor A:

    * ``"data"``: the leading eigenvectors of the outputs' empirical
      covariance (:func:`_leading_factors`): the correlations' signs and
      sizes the data show. From a random A the optimiser may first have to
      undo correlated outputs set against each other (slump at 10% removed:
      107 L-BFGS iterations against 50).
    * ``"random"``: A drawn N(0, b0 / P) with ``random_state``.
    * ``"both"`` (default): one fit from each, each with the full budget,
      keeping the higher likelihood (the data start on ties). Either start
      alone can be a trap: on andro at 30% removed the data start's basin
      has objective 0.890 against the random start's 0.705 (removed-entry
      RMSE 0.635 against 0.455), on slump at 10% the reverse (0.785 against
      0.722); ``docs/results/cool_mulan_missing.md``. It costs two fits
      (``1 + n_random_starts`` with ``n_random_starts``, below).
      ``fit_info_["start"]`` says which was kept and
      ``fit_info_["start_objectives"]`` gives every start's final objective.

    ``n_random_starts`` (default 1): how many independent random draws of A
    ``"random"`` and ``"both"`` fit, each with the full budget (the best
    objective is kept; ``fit_info_["start_objectives"]`` lists every one).
    Draw 0 is seeded by ``random_state``, draw j >= 1 by
    ``(random_state, j)``: the fit from draw j alone is
    ``ICM(start="random", random_state=[random_state, j])``. Independent
    draws find basins that perturbations of one start do not: on andro at
    30% removed (``docs/results/cool_mulan_missing_splits200.md``, split 1)
    every start and perturbation ends at log-likelihood -93.4 while some
    independent draws reach -79.8, GPyTorch's optimum from its own random
    start. Each draw costs one fit.

    ``screen_iter`` (default None: every start gets the full budget): with
    several starts, each runs ``screen_iter`` L-BFGS iterations (exactly
    its single-start fit with ``max_iter=screen_iter``), and only the
    lowest objective goes on for the other ``max_iter - screen_iter``
    (``fit_info_["start_objectives"]`` are the screened objectives,
    ``fit_info_["n_iter"]`` counts both parts). ``n_random_starts=4,
    screen_iter=40`` costs about the default's two full fits at
    ``max_iter=200`` and keeps most of the draws' gain: on three splits of
    the nine Mulan sets (``docs/results/cool_mulan_missing_splits200.md``)
    removed-entry RMSE at most GPyTorch's on 7 of 9 sets and 23 of 27 cells
    (default 6 / 21, full-budget draws 8 / 24 at 2.5x the time). A start
    whose basin shows late can be screened out: shorter screens (10, 20
    iterations) lost andro's gains.

    ``n_init`` adds perturbations of the log-scale parameters to each of
    these starts (the best objective is kept).
    """

    def __init__(self, kernel=None, rank: int = 1, diagonal: bool = False, normalize_y: bool = False,
                 max_iter: int = 200, tol: float = 1e-6, random_state: Optional[int] = 0,
                 min_noise_variance: float = 1e-4, n_init: int = 1, start: str = "both",
                 n_random_starts: int = 1, screen_iter: Optional[int] = None):
        store_params(self, locals())

    def _resolve_params(self):
        if self.start not in ("data", "random", "both"):
            raise ValueError(f"start must be 'data', 'random' or 'both', got {self.start!r}")
        n = self.n_random_starts
        if not _is_count(n):
            raise ValueError(f"n_random_starts must be an integer >= 1, got {n!r}")
        if not (self.screen_iter is None or _is_count(self.screen_iter)):
            raise ValueError(f"screen_iter must be None or an integer >= 1, got {self.screen_iter!r}")
        if self.start == "data" and n != 1:
            raise ValueError(f"n_random_starts={n} draws random starts of A, which start='data' does not "
                             "use: pass start='both' (the data start and the draws) or start='random'")

    def _key(self):
        return (int(self.rank), bool(self.diagonal))

    @property
    def _first_start(self):
        return "random" if self.start == "random" else "data"

    def _random_start(self, T, b0, draw=0):
        """Random draw ``draw`` of A: seeded by ``random_state`` alone for draw 0
        (the same draw whatever else used the rng), by ``(random_state, draw)``
        after it."""
        seed = self.random_state
        if draw and seed is not None:
            seed = [*np.atleast_1d(seed).tolist(), int(draw)]
        return _random_factors(T, int(self.rank), b0, np.random.default_rng(seed))

    def _extra_starts(self, Y, b0, s20, x0):
        # "both": every draw beside the data start; "random": draw 0 is x0 itself;
        # "data": none (_resolve_params keeps n_random_starts at 1)
        extra = {}
        for draw in range(0 if self.start == "both" else 1, int(self.n_random_starts)):
            A = self._random_start(Y.shape[1], b0, draw)
            if not np.array_equal(A, np.asarray(x0["A"])):  # the data start may have fallen back to this draw
                extra["random" if draw == 0 else f"random {draw}"] = dict(x0, A=jnp.asarray(A))
        return extra

    def _screen_budget(self, n_starts):
        if self.screen_iter is None or n_starts == 1:
            return int(self.max_iter)
        return min(int(self.screen_iter), int(self.max_iter))

    def _factored_masked_likelihood(self, Y):
        """:func:`~mtgp.multioutput.algebra.coregional_masked_log_likelihood`
        (O(T N^3 + (P N)^3), the latent-process form of C = A A^T + diag) and
        its cost relative to the dense O(|O|^3) form: low for many outputs at
        a low rank (T = 16 at N = 100, 10% missing: 60x faster per gradient),
        above 1 for two outputs at N = 614."""
        N, T = Y.shape

        def loglik(K, p, floor, Y0, W):
            kappa = jnp.exp(p["log_kappa"]) if "log_kappa" in p else jnp.zeros(Y0.shape[1], K.dtype)
            return coregional_masked_log_likelihood(K, p["A"], kappa, jnp.exp(p["log_s2"]) + floor, Y0, W)

        return loglik, coregional_cost_ratio(N, T, int(self.rank), int((~np.isnan(Y)).sum()))

    def _structure(self, Y, b0, s20, rng):
        T, P = Y.shape[1], int(self.rank)
        if P < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")
        A0 = self._random_start(T, b0) if self.start == "random" else _leading_factors(Y, b0, P, rng)
        x0 = {"A": jnp.asarray(A0), "log_s2": jnp.log(jnp.asarray(s20))}
        if self.diagonal:
            x0["log_kappa"] = jnp.log(jnp.asarray(0.1 * b0))

        def covs(p):
            C = p["A"] @ p["A"].T
            if "log_kappa" in p:
                C = C + jnp.diag(jnp.exp(p["log_kappa"]))
            return C, jnp.diag(jnp.exp(p["log_s2"]))

        return x0, covs


class StructuredNoiseMTGP(_JointMTGP):
    """Sigma-MT (Rakitsch, Lippert, Borgwardt & Stegle 2013): vec Y ~
    N(0, C (x) K + Sigma (x) I) with both C and Sigma learnt.

    ``rank=None`` (default): free-form C = L_c L_c^T and Sigma = L_s L_s^T
    (lower-triangular factors with log-parameterised diagonals; T(T+1)
    parameters). ``rank=P``: the paper's low-rank forms C = A_c A_c^T + c^2 I,
    Sigma = A_s A_s^T + s^2 I (2TP + 2 parameters). ``min_noise_variance``
    adds a floor to Sigma's diagonal, relative to each output's variance
    (default 1e-4; 0: the published model). ``n_init`` and ``random_state``: as
    for :class:`ICM`.
    """

    def __init__(self, kernel=None, rank: Optional[int] = None, normalize_y: bool = False,
                 max_iter: int = 200, tol: float = 1e-6, random_state: Optional[int] = 0,
                 min_noise_variance: float = 1e-4, n_init: int = 1):
        store_params(self, locals())

    def _key(self):
        return None if self.rank is None else int(self.rank)

    def _structure(self, Y, b0, s20, rng):
        T = Y.shape[1]
        if self.rank is None:
            x0 = {
                "Lc_off": jnp.zeros((T, T)), "Lc_logdiag": 0.5 * jnp.log(jnp.asarray(b0)),
                "Ls_off": jnp.zeros((T, T)), "Ls_logdiag": 0.5 * jnp.log(jnp.asarray(s20)),
            }

            def covs(p):
                Lc = _chol_from(p["Lc_off"], p["Lc_logdiag"])
                Ls = _chol_from(p["Ls_off"], p["Ls_logdiag"])
                return Lc @ Lc.T, Ls @ Ls.T

            return x0, covs
        P = int(self.rank)
        if P < 1:
            raise ValueError(f"rank must be >= 1 or None, got {self.rank}")
        x0 = {
            "Ac": jnp.asarray(rng.normal(size=(T, P)) * np.sqrt(b0 / P)[:, None]),
            "As": jnp.asarray(rng.normal(size=(T, P)) * np.sqrt(0.5 * s20 / P)[:, None]),
            "log_c2": jnp.log(jnp.asarray(0.1 * np.mean(b0))),
            "log_s2": jnp.log(jnp.asarray(0.5 * np.mean(s20))),
        }

        def covs(p):
            T_ = p["Ac"].shape[0]
            eye = jnp.eye(T_)
            return (p["Ac"] @ p["Ac"].T + jnp.exp(p["log_c2"]) * eye,
                    p["As"] @ p["As"].T + jnp.exp(p["log_s2"]) * eye)

        return x0, covs


class IndependentGPs(MultiOutputGP):
    """T independent single-output GPs, y_t ~ N(0, b_t K_t + sigma_t^2 I),
    each with its own kernel hyper-parameters (same kernel structure). Each
    output is fitted by its own run of the shared optimiser with the full
    budget ``max_iter`` (what T separate single-output GPs would get), from
    ``n_init`` starts (perturbations seeded by ``(random_state, t)``);
    predictions for all outputs come from one vmapped program.

    ``kernel_`` is the list of the T fitted kernels; ``output_covariance_`` is
    diag(b_t) (each with its own kernel) and ``noise_covariance_`` diag(sigma_t^2);
    predictions are independent across outputs (diagonal ``cov``).
    ``fit_info_`` sums ``n_iter`` over the outputs, averages ``objective``
    (the total per-observation negative log-likelihood), is ``converged``
    when every output's run is, and lists ``best_start`` per output.
    """

    _saved_attributes = ("n_iter_",)

    def __init__(self, kernel=None, normalize_y: bool = False, max_iter: int = 200,
                 tol: float = 1e-6, n_init: int = 1, random_state: Optional[int] = 0):
        store_params(self, locals())

    def _fit_core(self, X, Y):
        kernel, mask, theta0, b0, s20 = self._start(X, Y)

        def obj(p, theta0, X, y, m):  # m: observed rows of this output (missing rows masked out exactly)
            theta = apply_mask(mask, p["kernel"], theta0)
            K = jnp.exp(p["log_b"]) * kernel.evaluate(theta, X, X)
            L = cholesky(mask_padded(K + jnp.exp(p["log_s2"]) * jnp.eye(X.shape[0]), m))
            n_obs = jnp.sum(m)
            return -gaussian_logpdf(y, L, n_obs) / n_obs

        key = ("IndependentGPs", kernel.structure(), "masked")
        Xj = jnp.asarray(X)
        obs = ~np.isnan(Y)
        Y0 = np.where(obs, Y, 0.0)
        self._thetas, bs, s2s, its, infos = [], [], [], [], []
        for t in range(Y.shape[1]):  # same budget per output as one joint fit
            x0 = {"kernel": theta0, "log_b": np.log(b0[t]), "log_s2": np.log(s20[t])}
            seed = None if self.random_state is None else [int(self.random_state), t]
            res, _, info = minimize_from_starts(key, obj, x0, (theta0, Xj, jnp.asarray(Y0[:, t]),
                                                              jnp.asarray(obs[:, t], dtype=Xj.dtype)), self.max_iter,
                                                self.tol, self.n_init, seed)
            infos.append(info)
            p = res.params
            self._thetas.append(apply_mask(mask, p["kernel"], theta0))
            bs.append(float(np.exp(p["log_b"])))
            s2s.append(float(np.exp(p["log_s2"])))
            its.append(res.n_iter)
        self._theta = self._thetas[0]
        self._b = np.asarray(bs)
        self._s2 = np.asarray(s2s)
        self._C = np.diag(self._b)
        self._Sigma = np.diag(self._s2)
        self.n_iter_ = np.asarray(its)
        converged = all(i["converged"] for i in infos)
        return dict(n_iter=int(sum(i["n_iter"] for i in infos)),
                    objective=float(np.mean([i["objective"] for i in infos])),
                    converged=converged, stop_reason="tolerance" if converged else "max_iter",
                    best_start=[i["best_start"] for i in infos])

    def _theta_flat(self):
        return np.stack([np.asarray(ravel_pytree(th)[0]) for th in self._thetas])

    def _set_theta_flat(self, flat):
        _, unravel = ravel_pytree(self._kernel_struct.init_params())
        self._thetas = [unravel(jnp.asarray(row)) for row in flat]
        self._theta = self._thetas[0]
        self._b, self._s2 = np.diag(self._C), np.diag(self._Sigma)

    def _build_predictor(self):
        """Each output's GP factorised on its observed rows (missing rows
        masked out exactly): one compiled program vmapped over the outputs;
        the jitter loop of ``safe_cholesky`` only for outputs whose plain
        Cholesky fails."""
        k = self._kernel_struct
        X = jax.device_put(np.asarray(self._X, dtype=float))
        obs = ~np.isnan(self._Y)
        Y0 = np.where(obs, self._Y, 0.0)
        thetas = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *self._thetas)
        b, s2 = (jax.device_put(np.asarray(v, dtype=float)) for v in (self._b, self._s2))
        mask, Yt = jax.device_put(obs.T.astype(float)), jax.device_put(Y0.T)

        def output_cov(theta, b, s2, m, X):  # output t's covariance on its observed rows
            return mask_padded(b * k.evaluate(theta, X, X) + s2 * jnp.eye(X.shape[0]), m)

        def build():
            def one(theta, b, s2, m, y, X):
                L = cholesky(output_cov(theta, b, s2, m, X))
                return L, cho_solve(L, y), gaussian_logpdf(y, L, jnp.sum(m))

            return jax.vmap(one, in_axes=(0, 0, 0, 0, 0, None))

        L, alpha, lls = cached_jit(("IndependentGPs-factor", k.structure()), build)(thetas, b, s2, mask, Yt, X)
        failed = ~np.all(np.isfinite(np.asarray(L)), axis=(1, 2))
        if failed.any():  # rare: factorise those outputs with a jitter, and say so
            L, alpha, lls = list(L), list(alpha), np.asarray(lls).copy()
            for t in np.flatnonzero(failed):
                L[t], added = safe_cholesky(output_cov(self._thetas[t], b[t], s2[t], mask[t], X))
                report_jitter(added, "IndependentGPs")
                alpha[t] = cho_solve(L[t], Yt[t])
                lls[t] = float(gaussian_logpdf(Yt[t], L[t], int(obs[:, t].sum())))
            L, alpha = jnp.stack(L), jnp.stack(alpha)
        self._ll_internal = float(np.sum(np.asarray(lls)))
        # stacked once for the vmapped predictive
        self._stacked = (thetas, b, s2, L, alpha, mask)
        self.kernels_ = [k.with_params(jax.tree_util.tree_map(np.asarray, th)) for th in self._thetas]

    def _fitted_kernel(self):
        return self.kernels_

    def _predict_internal(self, Xs, full_cov, include_noise):
        k = self._kernel_struct
        n, T = Xs.shape[0], len(self._thetas)

        def build():
            def one(theta, b, s2, L, alpha, m, X, Xs):  # one output's GP predictive
                Ks = b * k.evaluate(theta, Xs, X) * m[None, :]  # missing rows carry nothing
                V = tri_solve(L, Ks.T)
                var = b * k.evaluate_diag(theta, Xs) - jnp.sum(V**2, axis=0) + include_noise * s2
                J = None
                if full_cov:
                    J = b * k.evaluate(theta, Xs, Xs) - V.T @ V + include_noise * s2 * jnp.eye(Xs.shape[0])
                return Ks @ alpha, var, J

            return jax.vmap(one, in_axes=(0, 0, 0, 0, 0, 0, None, None))

        fn = cached_jit(("IndependentGPs-predict", k.structure(), bool(full_cov), bool(include_noise), "masked"),
                        build)
        mean, var, J = fn(*self._stacked, jnp.asarray(self._X), jnp.asarray(Xs))
        mean, var = np.asarray(mean).T, np.asarray(var).T
        cov = np.zeros((n, T, T))
        cov[:, np.arange(T), np.arange(T)] = var
        joint = None
        if full_cov:  # output-major: block t is output t's n x n covariance
            joint = np.zeros((T * n, T * n))
            for t in range(T):
                joint[t * n:(t + 1) * n, t * n:(t + 1) * n] = np.asarray(J[t])
        return mean, cov, joint
