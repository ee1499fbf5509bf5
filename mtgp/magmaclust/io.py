"""Save and load a fitted :class:`~mtgp.magmaclust.MagmaClust` (format
"mtgp.MagmaClust/1", one ``.npz`` file through :mod:`mtgp.io`).

The file holds the constructor parameters, the kernels' forms, the fitted log
hyper-parameters (flattened, as learnt), the responsibilities, the mixture
weights, the training data and the EM diagnostics. Loading rebuilds the data
layout and runs one VE step (q(mu_k) at the saved tau and HPs): no refit;
the ELBO, hyper-posteriors and predictions equal the saved model's."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .. import config
from ..backends import resolve_backend
from ..data import to_individuals
from ..exceptions import ModelFileError
from ..io import read_model, write_model
from ..kernels import kernel_from_dict
from ..magma.io import _jsonable
from . import em
from .numerics import ClustParams

FORMAT = "mtgp.MagmaClust/1"

_PARAMS = ("n_clusters", "shared_mean_hp", "shared_individual_hp", "noise", "max_iter", "tol", "n_init",
           "random_state", "freeze_first", "m_step_max_iter", "buckets")


def _json(x):
    if isinstance(x, (list, tuple)):
        return [_json(v) for v in x]
    return _jsonable(x)


@config.float64
def save_magmaclust(model, path) -> str:
    """Write ``model`` to ``path`` (``.npz`` added if missing)."""
    model._check_is_fitted()
    prior = model._prior
    if prior.kind == "callable":
        raise ValueError("a model with a callable prior_mean cannot be saved: give the prior mean as "
                         "a constant or as values on the training inputs")
    header = {
        "params": {k: _jsonable(getattr(model, k)) for k in _PARAMS},
        "input_columns": model.input_columns_,
        "mean_kernel": model._static.k0.kernel.to_dict(),
        "individual_kernel": model._static.ki.kernel.to_dict(),
        "ids": [_jsonable(i) for i in model.ids_],
        "prior_kind": prior.kind,
        "fit_info": {k: _json(v) for k, v in model.fit_info_.items()},
    }
    frame = model.inds_.to_frame()
    return write_model(path, FORMAT, header, {
        "theta0": np.asarray(ravel_pytree(model.theta0_)[0]),
        "theta": np.asarray(ravel_pytree(model.theta_)[0]),
        "tau": model.responsibilities_.to_numpy(),
        "pi": np.asarray(model.mixture_weights_),
        "inputs": frame[model.input_columns_].to_numpy(),
        "outputs": frame["Output"].to_numpy(),
        "counts": model.inds_.counts,
        "prior_values": prior.values,
        "prior_constant": np.array(float(prior.spec) if prior.kind == "constant" else np.nan),
    })


@config.float64
def load_magmaclust(cls, path):
    """Read a file written by :func:`save_magmaclust` (problems raise
    :class:`~mtgp.exceptions.ModelFileError`)."""
    t_start = time.perf_counter()
    meta, f = read_model(path, FORMAT)
    try:
        k0 = kernel_from_dict(meta["mean_kernel"])
        ki = kernel_from_dict(meta["individual_kernel"])
        prior = float(f["prior_constant"]) if meta["prior_kind"] == "constant" else f["prior_values"]
        model = cls(mean_kernel=k0, individual_kernel=ki, prior_mean=prior,
                    input_columns=meta["input_columns"], **meta["params"])
        bounds = np.cumsum(f["counts"])[:-1]
        data = {i: (X, y) for i, X, y in zip(meta["ids"], np.split(f["inputs"], bounds),
                                               np.split(f["outputs"], bounds))}
        inds = to_individuals(data, meta["input_columns"], what=f"the data saved in {path}")
        M, K = inds.n_individuals, int(model.n_clusters)
        proto0 = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (K,) + jnp.shape(a)), k0.init_params())
        _, un0 = ravel_pytree(proto0)
        proto = {"kernel": ki.init_params(), "log_noise": jnp.zeros(())}
        if not model.shared_individual_hp:
            proto = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (M,) + jnp.shape(a)), proto)
        _, un = ravel_pytree(proto)
        tau = jnp.asarray(f["tau"])
        params = ClustParams(un0(jnp.asarray(f["theta0"])), un(jnp.asarray(f["theta"])), jnp.asarray(f["pi"]))
        if tau.shape != (M, K):
            raise ValueError(f"responsibilities of shape {tau.shape}, expected {(M, K)}")
        info = dict(meta["fit_info"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a consistent saved {FORMAT} ({type(exc).__name__}: {exc})") from None
    grid, _, prior_, data_, static = model._layout(inds, k0, ki)
    backend = resolve_backend(model.backend, clusters=True)
    post, value = em.e_step(backend, backend.prepare(data_), static, params, data_, tau)
    info["history"] = np.asarray(info["history"], dtype=float)
    info["load_time"] = time.perf_counter() - t_start
    info["elbo_at_load"] = value
    res = em.ClustEMResult(params, tau, post, list(info["history"]), int(info["n_iter"]),
                           bool(info["converged"]))
    model._set_state(inds, grid, prior_, data_, static, res, info)
    return model
