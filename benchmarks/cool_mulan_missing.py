"""Missing outputs on the Mulan sets: 10%, 30% and 50% of the training
output entries removed at random (seeded), every model fitted on what is
left; RMSE on the removed entries and on the held-out rows, and the
coverage of the 95% intervals of y* on both. A removed entry is predicted
by the model's Gaussian conditional given every observed entry
(``predict_missing``: it shares its row's noise with the outputs measured
in that row, which matters where Sigma has off-diagonal terms: HCool, ~Cool,
Sigma-MT; for a diagonal Sigma it is ``predict(X_train, include_noise=True)``).
Pages made before 2026-12-07 used ``predict(X_train, include_noise=True)``
for every model.

Models:

* mtgp's multi-output models (HCool, ~Cool, Std-MT = ``ICM(rank=1,
  diagonal=True)``, Sigma-MT) given ``Y`` with NaN where an entry was removed.
  A model whose ``fit`` rejects NaN (a ``DataError`` about missing outputs)
  is reported as "not supported in this build" and skipped: this script
  measures whatever the installed mtgp supports.
* Independent GPs: scikit-learn's ``GaussianProcessRegressor`` per output on
  that output's observed rows (variance x RBF + white noise; always
  possible, no sharing between outputs; ``mtgp.GP`` refuses the duplicated
  input rows of edm).
* GPyTorch's multitask GP (``MultitaskKernel(RBFKernel, rank=1)`` +
  ``MultitaskGaussianLikelihood(rank=0)``: Std-MT with IndexKernel's
  diagonal, per-output noise) with ``gpytorch.settings.observation_nan_policy("mask")``,
  in its own virtualenv (``--peer-python``, or the venv that
  ``cool_gpytorch_peer.py`` creates; see there), fitted with
  ``torch.optim.LBFGS`` at the same budget.
* The same GPyTorch fit with mtgp's exact predictive at its fitted
  parameters (``MaskedPredictor``): the same means to round-off; the
  variances of the Gaussian conditional given the observed entries.
  GPyTorch's own predictive variance under the NaN mask is that of a model
  that had observed every training entry (checked to 2e-11 on andro at
  50% removed), too small at the removed entries (its coverage there) and
  at test points.

Data: ``cool_mulan.py``'s splits (80/20, at most 800/200 rows, standardised
with training statistics; statistics of the complete training outputs, so
every model sees the same scale), SE kernel (isotropic, initial lengthscale
sqrt(D)), ``max_iter`` L-BFGS iterations for every model. Entries are removed
uniformly at random, keeping at least 2 observed entries per output.

    python3 benchmarks/cool_mulan_missing.py                      # 9 sets, 1 split, 10/30/50%
    python3 benchmarks/cool_mulan_missing.py --quick              # CI: slump, 30%, budget 20, no peer
    python3 benchmarks/cool_mulan_missing.py --datasets slump edm --fractions 0.1 0.5 --splits 2
    python3 benchmarks/cool_mulan_missing.py --peer-python /path/to/venv/bin/python   # with GPyTorch
    python3 benchmarks/cool_mulan_missing.py --datasets oes10 scm20d --max-train 200   # capped training rows
    python3 benchmarks/cool_mulan_missing.py --merge a/cool_mulan_missing_raw.csv b/...   # page from runs made apart
                                                                  # (a later file's rows replace an earlier one's)
    python3 benchmarks/cool_mulan_missing.py --datasets oes10 --models "Std-MT (P=1 + diag)" --warm --time-to-peer
                                 # + mtgp's warm time to GPyTorch's log-likelihood (its L-BFGS may stop early)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

Z95 = 1.959963984540054
FRACTIONS = (0.1, 0.3, 0.5)
MTGP_MODELS = ("HCool", "~Cool", "Std-MT (P=1 + diag)", "Sigma-MT")
INDEP = "Indep. GPs (scikit-learn, per output)"
PEER = "GPyTorch Std-MT (P=1, NaN mask)"
PEER_EXACT = "GPyTorch's fit, mtgp's exact predictive"
NOT_SUPPORTED = "not supported in this build"


def remove_entries(Y, frac, seed):
    """A copy of ``Y`` with ``round(frac * Y.size)`` entries set to NaN,
    uniformly at random (seeded), at least 2 observed entries kept per column."""
    rng = np.random.default_rng(seed)
    N, T = Y.shape
    n_remove = int(round(frac * N * T))
    for _ in range(1000):
        mask = np.zeros(N * T, bool)
        mask[rng.choice(N * T, n_remove, replace=False)] = True
        mask = mask.reshape(N, T)
        if np.all((~mask).sum(axis=0) >= 2):
            break
    Ym = Y.copy()
    Ym[mask] = np.nan
    return Ym, mask


def metrics(mean, var, Y, mask=None):
    """RMSE (averaged over outputs, as cool_mulan.py) and coverage (%) of
    the 95% intervals, on the entries where ``mask`` is true (all if None)."""
    mask = np.ones(Y.shape, bool) if mask is None else mask
    err = np.where(mask, mean - Y, np.nan)
    per_output = np.sqrt(np.nanmean(err ** 2, axis=0))
    inside = np.abs(mean - Y) <= Z95 * np.sqrt(var)
    return float(np.nanmean(per_output)), float(100.0 * inside[mask].mean())


# ================================================================ peer worker
# Runs under the peer's interpreter: numpy, torch and gpytorch only.

def _peer_worker(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--json", required=True)
    p.add_argument("--max-iter", type=int, required=True)
    p.add_argument("files", nargs="+")
    a = p.parse_args(argv)
    import torch
    import gpytorch

    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)

    class MTGP(gpytorch.models.ExactGP):
        def __init__(self, X, Y, lik, T, ls0):
            super().__init__(X, Y, lik)
            self.mean_module = gpytorch.means.MultitaskMean(gpytorch.means.ZeroMean(), num_tasks=T)
            base = gpytorch.kernels.RBFKernel()
            base.lengthscale = ls0
            self.covar_module = gpytorch.kernels.MultitaskKernel(base, num_tasks=T, rank=1)

        def forward(self, x):
            return gpytorch.distributions.MultitaskMultivariateNormal(self.mean_module(x), self.covar_module(x))

    out = []
    for f in a.files:
        d = dict(np.load(f))
        res = {"file": f}
        try:
            with gpytorch.settings.observation_nan_policy("mask"):
                X, Y = torch.as_tensor(d["Xtr"]), torch.as_tensor(d["Ytr"])
                T = Y.shape[1]
                torch.manual_seed(0)  # IndexKernel's random initial factor: the same start whatever ran before
                lik = gpytorch.likelihoods.MultitaskGaussianLikelihood(num_tasks=T, rank=0, has_global_noise=False)
                model = MTGP(X, Y, lik, T, float(d["ls0"]))
                model.train()
                lik.train()
                mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, model)
                opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=a.max_iter, history_size=10,
                                        line_search_fn="strong_wolfe", tolerance_grad=1e-6)

                def closure():
                    opt.zero_grad()
                    loss = -mll(model(X), Y)
                    loss.backward()
                    return loss

                t = time.perf_counter()
                opt.step(closure)
                res["fit_s"] = time.perf_counter() - t
                tc = model.covar_module.task_covar_module
                res["params"] = {"B": tc.covar_factor.detach().numpy().tolist(),
                                 "v": tc.var.detach().numpy().tolist(),
                                 "lengthscale": float(model.covar_module.data_covar_module.lengthscale.item()),
                                 "noises": lik.task_noises.detach().numpy().tolist()}
                model.eval()
                lik.eval()
                with torch.no_grad(), gpytorch.settings.fast_pred_var(False):
                    for key, Xq in (("train", X), ("test", torch.as_tensor(d["Xte"]))):
                        pred = lik(model(Xq))  # y*: with the per-output noise
                        res[f"mean_{key}"] = pred.mean.numpy().tolist()
                        res[f"var_{key}"] = pred.variance.numpy().tolist()
        except Exception as exc:  # report, keep going
            res["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        out.append(res)
        print(f"    gpytorch {Path(f).stem}: " + (f"fit {res['fit_s']:.2f} s" if "fit_s" in res else res["error"]),
              flush=True)
    versions = {"torch": torch.__version__, "gpytorch": gpytorch.__version__}
    Path(a.json).write_text(json.dumps({"runs": out, "versions": versions}))


# ================================================================ mtgp side

def std_n_init_name(n_init):
    return f"Std-MT (P=1 + diag, n_init={n_init})"


def std_random_starts_name(n, screen_iter=None):
    return f"Std-MT (P=1 + diag, n_random_starts={n}" + (f", screen_iter={screen_iter})" if screen_iter else ")")


def std_floor_name(floor):
    return f"Std-MT (P=1 + diag, min_noise_variance={floor:g})"


def std_variants(std_n_init=None, std_random_starts=None, std_screen_iter=None, std_floors=()):
    """The Std-MT variants that ``--std-n-init``, ``--std-random-starts``
    (with ``--std-screen-iter``) and ``--std-floors`` add: {name: ICM keyword
    arguments besides the default Std-MT's}."""
    variants = {}
    if std_n_init:
        variants[std_n_init_name(std_n_init)] = dict(n_init=std_n_init)
    if std_random_starts:
        variants[std_random_starts_name(std_random_starts, std_screen_iter)] = dict(
            n_random_starts=std_random_starts, screen_iter=std_screen_iter)
    for floor in std_floors or ():
        variants[std_floor_name(floor)] = dict(min_noise_variance=float(floor))
    return variants


def mtgp_models(k, max_iter, variants=None):
    """The page's mtgp models, and the Std-MT ``variants``
    (:func:`std_variants`: ``ICM(n_init=...)`` starts around each of its two
    starts, ``ICM(n_random_starts=..., screen_iter=...)`` independent random
    draws of A, screened if given, ``ICM(min_noise_variance=...)`` another
    noise floor)."""
    from mtgp.multioutput import CoolMTGP, ICM, StructuredNoiseMTGP

    models = {"HCool": CoolMTGP(k, max_iter=max_iter),
              "~Cool": CoolMTGP(k, method="approximate", max_iter=max_iter),
              "Std-MT (P=1 + diag)": ICM(k, rank=1, diagonal=True, max_iter=max_iter),
              "Sigma-MT": StructuredNoiseMTGP(k, max_iter=max_iter)}
    for name, kw in (variants or {}).items():
        models[name] = ICM(k, rank=1, diagonal=True, max_iter=max_iter, **kw)
    return models


def selected(name, models, extras):
    """Whether model ``name`` runs: every model without ``--models``; with it
    the models listed, and the added Std-MT variants unless some are listed
    (then only those)."""
    if not models or name in models:
        return True
    return name in extras and not any(m in extras for m in models)


def fit_mtgp(m, Xtr, Ym, Xte, warm=False):
    """(status, mean/var at Xtr, mean/var at Xte, fit seconds, warm fit
    seconds): ``warm`` refits a clone on the same data (compiled programs
    reused: the time without compilation), else the warm time is None."""
    from sklearn.base import clone

    from mtgp.exceptions import DataError

    t = time.perf_counter()
    try:
        m.fit(Xtr, Ym)
    except DataError as exc:
        if "missing" in str(exc) or "NaN" in str(exc):
            return NOT_SUPPORTED, None, None, None, None
        raise
    fit_s = time.perf_counter() - t
    warm_s = None
    if warm:
        t = time.perf_counter()
        clone(m).fit(Xtr, Ym)
        warm_s = time.perf_counter() - t
    ptr, pte = m.predict_missing(), m.predict(Xte, include_noise=True)
    return "ok", (ptr.mean, ptr.var), (pte.mean, pte.var), fit_s, warm_s


def _peer_covariances(params, Xtr, Xte=None):
    """GPyTorch's fitted Std-MT as (K, C, Sigma[, K*]): RBF with unit
    variance, C = B B^T + diag(v), Sigma = diag(task noises)."""
    from mtgp.kernels import SE

    B = np.asarray(params["B"])
    k = SE(variance=1.0, lengthscale=params["lengthscale"])
    out = (np.asarray(k(Xtr)), B @ B.T + np.diag(params["v"]), np.diag(params["noises"]))
    return out if Xte is None else out + (np.asarray(k(Xte, Xtr)),)


def peer_exact_predictive(params, Xtr, Ym, Xte):
    """mtgp's exact predictive of y* (eq. 5 given the observed entries,
    ``MaskedPredictor``) at GPyTorch's fitted parameters: (mean, variance)
    at the training inputs and at the test inputs."""
    import jax.numpy as jnp

    import mtgp
    from mtgp.multioutput.algebra import MaskedPredictor

    with mtgp.config.float64_scope():
        K, C, S, Ks = _peer_covariances(params, Xtr, Xte)
        pred = MaskedPredictor(jnp.asarray(K), C, S, Ym)
        out = []
        for Kq in (K, Ks):
            cov = np.asarray(pred.point_cov(jnp.asarray(Kq), jnp.ones(Kq.shape[0]), include_noise=True))
            out.append((np.asarray(pred.mean(jnp.asarray(Kq))), np.diagonal(cov, axis1=1, axis2=2)))
        return out


def peer_log_likelihood(params, Xtr, Ym):
    """The exact log-likelihood of the observed training entries (mtgp's
    ``masked_log_likelihood``) at GPyTorch's fitted parameters: RBF with
    unit variance, C = B B^T + diag(v), Sigma = diag(task noises). It puts
    both libraries' fits on one scale (what each optimiser reached)."""
    import jax.numpy as jnp

    import mtgp
    from mtgp.multioutput.algebra import masked_log_likelihood, observed_index, observed_values

    with mtgp.config.float64_scope():
        K, C, S = _peer_covariances(params, Xtr)
        i_o, t_o = observed_index(Ym)
        return float(masked_log_likelihood(jnp.asarray(K), jnp.asarray(C), jnp.asarray(S),
                                           jnp.asarray(observed_values(Ym)), jnp.asarray(i_o), jnp.asarray(t_o)))


def fit_independent(k, Xtr, Ym, Xte, max_iter):
    """One scikit-learn GP per output on that output's observed rows
    (variance x isotropic RBF + white noise, the SE kernel's initial
    lengthscale; scikit-learn's GP takes the duplicated input rows that some
    sets have, which mtgp.GP refuses). ``max_iter`` is unused: scikit-learn
    runs L-BFGS-B to its own tolerance."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    T = Ym.shape[1]
    ls0 = float(np.sqrt(Xtr.shape[1]))
    out = [np.zeros((len(Xtr), T)) for _ in range(2)] + [np.zeros((len(Xte), T)) for _ in range(2)]
    t = time.perf_counter()
    for j in range(T):
        obs = ~np.isnan(Ym[:, j])
        kern = ConstantKernel(1.0) * RBF(ls0) + WhiteKernel(0.5)
        gp = GaussianProcessRegressor(kern, normalize_y=True).fit(Xtr[obs], Ym[obs, j])
        for (mu, var), Xq in ((out[:2], Xtr), (out[2:], Xte)):
            m, sd = gp.predict(Xq, return_std=True)  # the white kernel is in sd: y*
            mu[:, j], var[:, j] = m, sd ** 2
    return "ok", tuple(out[:2]), tuple(out[2:]), time.perf_counter() - t


def make_items(names, n_splits, fractions, folder, max_train=None):
    """The (split, fraction) items; ``max_train``: keep only the first
    ``max_train`` training rows of each split (its rows are already in random
    order; standardised with the whole training split's statistics)."""
    from cool_mulan import load_splits

    items = []
    for name in names:
        _, D, splits = load_splits(name, n_splits)
        for s, Xtr, Ytr, Xte, Yte in splits:
            if max_train:
                Xtr, Ytr = Xtr[:max_train], Ytr[:max_train]
            for frac in fractions:
                Ym, mask = remove_entries(Ytr, frac, seed=1000 * s + int(round(100 * frac)))
                f = Path(folder) / f"{name}_{s}_{int(round(100 * frac))}.npz"
                np.savez(f, Xtr=Xtr, Ytr=Ym, Xte=Xte, ls0=np.sqrt(D))
                items.append(dict(dataset=name, split=s, frac=frac, Xtr=Xtr, Ytr=Ytr, Ym=Ym, mask=mask,
                                  Xte=Xte, Yte=Yte, file=str(f)))
    return items


def row(it, model, status, tr=None, te=None, fit_s=None, warm_s=None, loglik=None):
    r = dict(dataset=it["dataset"], split=it["split"], removed=it["frac"], model=model, status=status, fit_s=fit_s,
             fit_s_warm=warm_s, n_train=len(it["Xtr"]), loglik=loglik)
    if tr is not None:
        r["rmse_removed"], r["coverage_removed"] = metrics(*tr, it["Ytr"], it["mask"])
        r["rmse_test"], r["coverage_test"] = metrics(*te, it["Yte"])
    return r


def run(items, max_iter, models, peer_py, warm=False, variants=None):
    from cool_mulan import kernel

    rows, unsupported = [], set()
    extras = list(variants or {})
    t0 = time.perf_counter()
    for it in items:
        k = kernel("se", it["Xtr"].shape[1])
        for name, m in mtgp_models(k, max_iter, variants).items():
            if not selected(name, models, extras):
                continue
            if name in unsupported:
                rows.append(row(it, name, NOT_SUPPORTED))
                continue
            try:
                status, tr, te, fit_s, warm_s = fit_mtgp(m, it["Xtr"], it["Ym"], it["Xte"], warm)
            except Exception as exc:  # report, keep going
                status, tr, te, fit_s, warm_s = f"failed: {type(exc).__name__}: {str(exc)[:120]}", None, None, None, None
            if status == NOT_SUPPORTED:
                unsupported.add(name)
            # exact, observed entries (the data are standardised already)
            rows.append(row(it, name, status, tr, te, fit_s, warm_s, m.log_marginal_likelihood_ if status == "ok" else None))
        if not models or INDEP in models:
            st, tr, te, fit_s = fit_independent(k, it["Xtr"], it["Ym"], it["Xte"], max_iter)
            rows.append(row(it, INDEP, st, tr, te, fit_s, fit_s if warm else None))  # nothing to compile
        print(f"{it['dataset']} split {it['split']} {100 * it['frac']:.0f}% removed: mtgp done "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    versions = {}
    if peer_py:
        with tempfile.TemporaryDirectory() as tmp:
            js = Path(tmp) / "peer.json"
            r = subprocess.run([peer_py, str(Path(__file__).resolve()), "_peer", "--json", str(js),
                                "--max-iter", str(max_iter)] + [it["file"] for it in items], timeout=7200)
            res = json.loads(js.read_text()) if r.returncode == 0 and js.exists() else {"runs": []}
        versions = res.get("versions", {})
        by_file = {x["file"]: x for x in res["runs"]}
        for it in items:
            x = by_file.get(it["file"], {"error": "peer did not run"})
            if "error" in x:
                rows.append(row(it, PEER, "failed: " + x["error"]))
            else:
                tr = (np.asarray(x["mean_train"]), np.asarray(x["var_train"]))
                te = (np.asarray(x["mean_test"]), np.asarray(x["var_test"]))
                ll = peer_log_likelihood(x["params"], it["Xtr"], it["Ym"]) if "params" in x else None
                rows.append(row(it, PEER, "ok", tr, te, x["fit_s"], x["fit_s"], ll))  # L-BFGS step only, no compilation
                if "params" in x:
                    tr, te = peer_exact_predictive(x["params"], it["Xtr"], it["Ym"], it["Xte"])
                    rows.append(row(it, PEER_EXACT, "ok", tr, te, loglik=ll))
    return rows, versions


#: the L-BFGS budgets tried by :func:`time_to_peer`, smallest first
BUDGET_LADDER = (1, 2, 3, 5, 8, 13, 20, 30, 50, 80, 120, 200)


def time_to_peer(items, rows, max_iter, std=MTGP_MODELS[2], ladder=BUDGET_LADDER):
    """mtgp's time to a fit as good as GPyTorch's, cell by cell.

    GPyTorch's L-BFGS can stop after a few iterations far below an optimum
    (its time then measures less work), so its warm time alone does not say
    which library fits faster. Here the default Std-MT estimator is refitted
    with the budgets of ``ladder`` (up to ``max_iter``), smallest first,
    until its exact log-likelihood of the observed entries is at least
    GPyTorch's (mtgp's formula at GPyTorch's parameters, the page's
    log-likelihood; relative tolerance 1e-9); the warm time of that fit (a
    second fit of the same data) is mtgp's time to GPyTorch's fit, an upper
    bound (the budget that first passes, not the iteration). L-BFGS from the
    same starts is deterministic, so a smaller budget's path is a prefix of
    a larger one's. One dict per cell where both fits ran: ``reached``
    False when even ``max_iter`` stays below (GPyTorch fitted better)."""
    from sklearn.base import clone

    from cool_mulan import kernel

    by_key = {(r["dataset"], r["split"], r["removed"], r["model"]): r for r in rows}
    out = []
    for it in items:
        key = (it["dataset"], it["split"], it["frac"])
        peer, ours = by_key.get(key + (PEER,)), by_key.get(key + (std,))
        if not (peer and ours and peer["status"] == ours["status"] == "ok") or peer.get("loglik") is None:
            continue
        target = float(peer["loglik"])
        rec = dict(dataset=key[0], split=key[1], removed=key[2], peer_fit_s=peer["fit_s_warm"], peer_loglik=target,
                   full_fit_s_warm=ours["fit_s_warm"], full_loglik=ours["loglik"], reached=False, budget=None,
                   n_iter=None, fit_s_warm=None, loglik=None)
        k = kernel("se", it["Xtr"].shape[1])
        for budget in [b for b in ladder if b <= max_iter]:
            m = mtgp_models(k, budget)[std].fit(it["Xtr"], it["Ym"])  # the page's model at that budget
            if m.log_marginal_likelihood_ >= target - 1e-9 * abs(target):
                t = time.perf_counter()
                warm = clone(m).fit(it["Xtr"], it["Ym"])
                rec.update(reached=True, budget=budget, n_iter=int(warm.fit_info_["n_iter"]),
                           fit_s_warm=time.perf_counter() - t, loglik=float(warm.log_marginal_likelihood_))
                break
        out.append(rec)
        print(f"{key[0]} split {key[1]} {100 * key[2]:.0f}%: GPyTorch {target:.2f} in {rec['peer_fit_s']:.2f} s; "
              f"mtgp " + (f"{rec['loglik']:.2f} at budget {rec['budget']} in {rec['fit_s_warm']:.2f} s"
                          if rec["reached"] else f"below it at max_iter {max_iter}"), flush=True)
    return out


def time_to_peer_lines(tab):
    """The page's section for :func:`time_to_peer`'s rows (a DataFrame)."""
    from _common import md_table

    if not len(tab):
        return []
    shown = tab.copy()
    shown["removed"] = (100 * shown["removed"]).round().astype(int).astype(str) + "%"
    for col in ("budget", "n_iter"):
        shown[col] = shown[col].astype("Int64")
    hit = tab[tab.reached.astype(bool)]
    faster = int((hit.fit_s_warm < hit.peer_fit_s).sum())
    lines = ["## Time to GPyTorch's fit\n",
             "GPyTorch's L-BFGS may stop early, below an optimum; so its warm time is set beside mtgp's time to "
             "reach the same exact log-likelihood of the observed entries: the default Std-MT refitted with L-BFGS "
             f"budgets {', '.join(map(str, BUDGET_LADDER))} (up to max_iter), smallest first, until its "
             "log-likelihood is at least GPyTorch's; the warm time of that fit (an upper bound: the budget that "
             "first passes). 'reached' False: not within max_iter (GPyTorch's fit is the better one there).\n",
             f"- Reached on {len(hit)} of {len(tab)} cells; there faster than GPyTorch's warm fit on {faster} of "
             f"{len(hit)} (median ratio of times mtgp / GPyTorch "
             f"{float(np.median(hit.fit_s_warm / hit.peer_fit_s)) if len(hit) else float('nan'):.2f}).\n",
             md_table(shown[["dataset", "split", "removed", "peer_fit_s", "peer_loglik", "budget", "n_iter",
                             "fit_s_warm", "loglik", "full_fit_s_warm", "full_loglik", "reached"]], ".2f"), ""]
    return lines


def merge_runs(frames):
    """The rows of several runs: a (dataset, split, removed, model) row of a
    later run replaces an earlier one (a model refitted after a change);
    rows without a warm time (runs made before ``--warm``) get their fit
    time as warm time for the models with nothing to compile (scikit-learn,
    GPyTorch), as ``run`` records it."""
    import pandas as pd

    df = pd.concat(frames, ignore_index=True)
    df = df.drop_duplicates(subset=["dataset", "split", "removed", "model"], keep="last").reset_index(drop=True)
    if "fit_s_warm" not in df:
        df["fit_s_warm"] = np.nan
    nothing_to_compile = df.model.isin([INDEP, PEER]) & df.fit_s_warm.isna()
    df.loc[nothing_to_compile, "fit_s_warm"] = df.loc[nothing_to_compile, "fit_s"]
    return df


def same_model_summary(ok, tol=0.002):
    """Lines comparing mtgp's Std-MT (each variant on the page) with
    GPyTorch's equal model, cell by cell (data set, fraction): removed-entry
    RMSE (within ``tol``), exact log-likelihood reached, warm fit time."""
    stds = [m for m in dict.fromkeys(ok.model) if m.startswith("Std-MT")]
    lines = []
    for std in stds:
        lines += _same_model_lines(ok, std, tol, title=len(stds) > 1)
    if lines and "coverage_removed" in ok:
        lines += [_coverage_line(ok, [m for m in stds + [PEER, PEER_EXACT] if m in set(ok.model)])]
    return ["## Std-MT against GPyTorch's Std-MT, cell by cell\n"] + lines if lines else []


def _coverage_line(ok, models):
    """The range over cells of each model's coverage of the removed entries."""
    cov = ok[ok.model.isin(models)].groupby("model")["coverage_removed"]
    parts = [f"{m} {cov.min()[m]:.1f}-{cov.max()[m]:.1f}% (median {cov.median()[m]:.1f}%)" for m in models]
    return "- Coverage of the removed entries by the 95% intervals of y*, over the cells: " + "; ".join(parts) + ".\n"


def _same_model_lines(ok, std, tol, title):
    cells = ok[ok.model.isin([std, PEER])].pivot_table(index=["dataset", "removed"], columns="model",
                                                        values=["rmse_removed", "loglik", "fit_s_warm"])
    checks = (("rmse_removed", f"RMSE on the removed entries at most GPyTorch's (+{tol})", "not on", "{:.3f}",
               lambda a, b: a > b + tol),
              ("loglik", "Exact log-likelihood at least GPyTorch's", "lower on", "{:.2f}",
               lambda a, b: a < b - 1e-6 * b.abs()),
              ("fit_s_warm", "Warm fit faster than GPyTorch's", "slower on", "{:.2f} s", lambda a, b: a > b))
    lines = []
    for metric, claim, failed, fmt, fails in checks:
        if (metric, std) not in cells or (metric, PEER) not in cells:
            continue
        both = cells[[(metric, std), (metric, PEER)]].dropna()
        a, b = both[(metric, std)], both[(metric, PEER)]
        bad = fails(a, b)
        where = [f"{d} {100 * f:.0f}% ({fmt.format(x)} against {fmt.format(y)})"
                 for (d, f), x, y, w in zip(both.index, a, b, bad) if w]
        lines.append(f"- {claim}: {int((~bad).sum())} of {len(both)} cells"
                     + (f"; {failed} " + ", ".join(where) if where else "") + ".")
    per_set = ok[ok.model.isin([std, PEER])].pivot_table(index="dataset", columns="model", values="rmse_removed")
    if std in per_set and PEER in per_set:
        both = per_set[[std, PEER]].dropna()  # sets where this variant did not run are not counted
        a, b = both[std], both[PEER]
        bad = a > b + tol
        lines.append(f"- Per data set (mean over its fractions and splits), RMSE on the removed entries at most "
                     f"GPyTorch's (+{tol}): {int((~bad).sum())} of {len(a)} sets"
                     + ("; not on " + ", ".join(f"{d} ({x:.3f} against {y:.3f})" for d, x, y, w
                                                 in zip(a.index, a, b, bad) if w) if bad.any() else "") + ".")
    if "split" in ok:
        lines += _paired_difference_lines(ok, std)
    if lines and title:
        lines = [f"{std}:\n"] + lines
    return lines + [""] if lines else []


def _paired_difference_lines(ok, std):
    """Per data set, the removed-entry RMSE difference (this model minus
    GPyTorch's) paired over the cells both fitted (split x fraction): mean,
    its standard error (sample standard deviation / sqrt(cells)) and the
    cells ahead / behind by more than 0.001, so that a gap can be told
    apart from split-to-split noise. Of the cells behind, those where this
    model's exact log-likelihood is at least GPyTorch's (as
    ``_same_model_lines`` compares them) are counted: there the model's
    better fit predicts the removed entries worse, which no optimiser
    setting changes."""
    pair = ok[ok.model.isin([std, PEER])].pivot_table(index=["dataset", "split", "removed"], columns="model",
                                                       values=["rmse_removed", "loglik"])
    if ("rmse_removed", std) not in pair or ("rmse_removed", PEER) not in pair:
        return []
    diff = (pair["rmse_removed"][std] - pair["rmse_removed"][PEER]).dropna()
    if diff.empty:
        return []
    has_loglik = ("loglik", std) in pair and ("loglik", PEER) in pair
    parts = []
    for dataset, d in diff.groupby(level="dataset", sort=False):
        se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.nan
        behind = d[d > 0.001]
        text = (f"{dataset} {d.mean():+.3f} \u00b1 {se:.3f} ({len(d)} cells; ahead {int((d < -0.001).sum())}, "
                f"behind {len(behind)}")
        if has_loglik and len(behind):
            a = pair["loglik"][std].reindex(behind.index)
            b = pair["loglik"][PEER].reindex(behind.index)
            known = a.notna() & b.notna()
            fitted_higher = int((a[known] >= b[known] - 1e-6 * b[known].abs()).sum())
            text += f", {fitted_higher} of them with a log-likelihood at least GPyTorch's"
            if known.sum() < len(behind):
                text += f" ({int(len(behind) - known.sum())} without one)"
        parts.append(text + ")")
    return ["- Removed-entry RMSE minus GPyTorch's, paired by cell, mean \u00b1 standard error per data set: "
            + "; ".join(parts) + "."]


def report(df, out, elapsed, args, peer_note, sources=None, to_peer=None):
    import pandas as pd

    from _common import md_table, page_header

    known = [m for m in MTGP_MODELS + (INDEP, PEER, PEER_EXACT) if m in set(df.model)]
    extra = [m for m in dict.fromkeys(df.model) if m not in known]  # Std-MT with --std-n-init: beside Std-MT
    at = known.index(MTGP_MODELS[2]) + 1 if MTGP_MODELS[2] in known else len(known)
    order = known[:at] + extra + known[at:]
    ok = df[df.status == "ok"]
    md = [page_header("Multi-output models with missing outputs (Mulan sets)", quick=args.quick, elapsed=elapsed)]
    if sources:
        md.append("Merged from the raw rows of: " + ", ".join(f"`{s}`" for s in sources) + ".\n")
    if args.note:
        md.append(args.note + "\n")
    md += [f"Data sets: {', '.join(dict.fromkeys(df.dataset))}; {df.split.nunique()} split(s) as `cool_mulan.py`; "
           f"removed: {', '.join(f'{100 * f:.0f}%' for f in sorted(set(df.removed)))} of the training output "
           f"entries; SE kernel; L-BFGS budget max_iter = {args.max_iter}. GPyTorch: {peer_note}.\n",
           "RMSE on standardised outputs (averaged over outputs); coverage of 95% intervals of y* (%). "
           "'removed': the removed training entries, predicted at their inputs from everything observed; "
           "'test': the held-out rows. Fit time includes compilation on the first fit of each shape; warm fit time "
           "(--warm): mtgp's second fit of the same data (compiled programs reused), GPyTorch's L-BFGS step "
           "and scikit-learn's fit (nothing to compile) as measured once.\n"]
    if "n_train" in df:
        rows_per_set = df.dropna(subset=["n_train"]).groupby("dataset")["n_train"].max().astype(int)
        md.append("Training rows per split: " + ", ".join(f"{d} {n}" for d, n in rows_per_set.items())
                  + " (cool_mulan.py's 80%, at most 800, unless capped with --max-train).\n")
    status = (df.groupby("model")["status"].agg(lambda s: ", ".join(sorted(set(s)))).reindex(order).reset_index())
    md += ["## Which models ran\n", md_table(status), ""]
    if len(ok):
        for metric, label in (("rmse_removed", "RMSE on the removed entries"), ("rmse_test", "RMSE on held-out rows"),
                              ("coverage_removed", "Coverage (%) on the removed entries"),
                              ("coverage_test", "Coverage (%) on held-out rows"), ("fit_s", "Fit time (s, median)"),
                              ("fit_s_warm", "Warm fit time (s, median)"),
                              ("loglik", "Exact log-likelihood of the observed training entries at each fit "
                                         "(GPyTorch: mtgp's exact formula at its fitted parameters)")):
            if metric not in ok or ok[metric].isna().all():
                continue
            agg = "median" if metric.startswith("fit_s") else "mean"
            tab = (ok.groupby(["dataset", "removed", "model"])[metric].agg(agg).unstack("model")
                   .reindex(columns=[m for m in order if m in set(ok.model)]).reset_index())
            tab["removed"] = (100 * tab["removed"]).round().astype(int).astype(str) + "%"
            md += [f"## {label}\n", md_table(tab, ".3f" if "rmse" in metric else ".1f" if "cov" in metric else ".2f"), ""]
    md += same_model_summary(ok)
    if to_peer is not None:
        md += time_to_peer_lines(to_peer)
    text = "\n".join(md)
    stem = args.name
    (out / f"{stem}.md").write_text(text + "\n")
    df.to_csv(out / f"{stem}_raw.csv", index=False)
    if to_peer is not None:
        to_peer.to_csv(out / f"{stem}_time_to_peer.csv", index=False)
    print(text)


def main(argv=None):
    if argv is None and sys.argv[1:2] == ["_peer"]:
        return _peer_worker(sys.argv[2:])
    import warnings

    import pandas as pd

    from _common import out_dir

    import mtgp

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--datasets", nargs="*", default=None)
    ap.add_argument("--splits", type=int, default=None)
    ap.add_argument("--fractions", nargs="*", type=float, default=None)
    ap.add_argument("--max-iter", type=int, default=None)
    ap.add_argument("--models", nargs="*", default=None,
                    help=f"models to fit (default all): any of {', '.join(MTGP_MODELS + (INDEP,))}, or the names "
                    "of the variants that the --std-* options add (then only those of them)")
    ap.add_argument("--peer-python", default=None, help="interpreter with torch + gpytorch (default: "
                    "cool_gpytorch_peer.py's venv, created if missing; --quick: no peer unless given)")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--warm", action="store_true", help="refit each mtgp model once more and report that time too")
    ap.add_argument("--max-train", type=int, default=None,
                    help="cap on the training rows per split (large sets on a slow machine; stated on the page)")
    ap.add_argument("--std-n-init", type=int, default=None,
                    help="also fit Std-MT with this n_init (starts around each of its two)")
    ap.add_argument("--std-random-starts", type=int, default=None,
                    help="also fit Std-MT with this many independent random draws of A besides its data start")
    ap.add_argument("--std-screen-iter", type=int, default=None,
                    help="with --std-random-starts: each start gets this many iterations, the best one the rest "
                    "of the budget (ICM(screen_iter=...))")
    ap.add_argument("--std-floors", nargs="*", type=float, default=(),
                    help="also fit Std-MT with each of these noise floors (ICM(min_noise_variance=...); "
                    "the default is 1e-4)")
    ap.add_argument("--time-to-peer", action="store_true",
                    help="with --warm and the peer: also time the default Std-MT to GPyTorch's log-likelihood "
                    "(refits with smaller L-BFGS budgets; a section of the page and a _time_to_peer.csv)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--merge", nargs="*", default=None, metavar="CSV")
    ap.add_argument("--note", default=None)
    ap.add_argument("--name", default="cool_mulan_missing", help="file name of the page (and of its _raw.csv)")
    args = ap.parse_args(argv)
    out = out_dir(args.out)
    args.max_iter = args.max_iter or (20 if args.quick else 200)
    if args.time_to_peer and (not args.warm or args.no_peer or args.merge):
        ap.error("--time-to-peer compares warm fits with the peer's: give --warm, run the peer, no --merge")
    if args.std_screen_iter and not args.std_random_starts:
        ap.error("--std-screen-iter screens the starts of --std-random-starts: give both")
    variants = std_variants(args.std_n_init, args.std_random_starts, args.std_screen_iter, args.std_floors)
    known = MTGP_MODELS + (INDEP,) + tuple(variants)
    unknown = [m for m in args.models or () if m not in known]
    if unknown:
        ap.error(f"--models: unknown model(s) {unknown}; choose from {list(known)}")
    t0 = time.perf_counter()
    if args.merge:
        df = merge_runs([pd.read_csv(f) for f in args.merge])
        return report(df, out, time.perf_counter() - t0, args, "as in the merged runs (see above)",
                      sources=list(args.merge))
    from mtgp.datasets import MTR_DATASETS

    names = args.datasets or (["slump"] if args.quick else list(MTR_DATASETS))
    fractions = args.fractions or ((0.3,) if args.quick else FRACTIONS)
    peer_py, peer_note = None, "not run (--no-peer)"
    if not args.no_peer and (args.peer_python or not args.quick):
        from cool_gpytorch_peer import peer_python

        peer_py, peer_note, _ = peer_python(args.peer_python)
        if peer_py is None and not args.quick:
            raise SystemExit(f"GPyTorch peer unavailable: {peer_note} (use --no-peer to run without it)")
    elif args.quick:
        peer_note = "not run (--quick without --peer-python)"
    warnings.simplefilter("ignore", mtgp.DegenerateOutputsWarning)  # coverage is what the page reports
    with tempfile.TemporaryDirectory() as tmp:
        items = make_items(names, args.splits or 1, fractions, tmp, args.max_train)
        rows, versions = run(items, args.max_iter, args.models, peer_py, args.warm, variants)
        to_peer = pd.DataFrame(time_to_peer(items, rows, args.max_iter)) if args.time_to_peer else None
    if versions:
        peer_note += " (" + ", ".join(f"{k} {v}" for k, v in versions.items()) + ")"
    report(pd.DataFrame(rows), out, time.perf_counter() - t0, args, peer_note, to_peer=to_peer)


if __name__ == "__main__":
    main()
