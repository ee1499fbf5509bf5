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
from ..exceptions import ModelFileError
from ..io import read_model, write_model
from ..magma.io import _jsonable, model_from_file, saved_model_parts, unravel_individual_hp
from . import em
from .numerics import ClustParams

FORMAT = "mtgp.MagmaClust/1"

_PARAMS = ("n_clusters", "shared_mean_hp", "shared_individual_hp", "noise", "max_iter", "tol", "init",
           "n_init", "random_state", "freeze_first", "m_step_max_iter", "buckets")


def _json(x):
    if isinstance(x, (list, tuple)):
        return [_json(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _json(v) for k, v in x.items()}
    return _jsonable(x)


@config.float64
def save_magmaclust(model, path) -> str:
    """Write ``model`` to ``path`` (``.npz`` added if missing)."""
    header, arrays = saved_model_parts(model, _PARAMS, to_json=_json)
    arrays["tau"] = model.responsibilities_.to_numpy()
    arrays["pi"] = np.asarray(model.mixture_weights_)
    return write_model(path, FORMAT, header, arrays)


@config.float64
def load_magmaclust(cls, path):
    """Read a file written by :func:`save_magmaclust` (problems raise
    :class:`~mtgp.exceptions.ModelFileError`)."""
    t_start = time.perf_counter()
    meta, f = read_model(path, FORMAT)
    try:
        model, k0, ki, inds = model_from_file(cls, meta, f, path)
        M, K = inds.n_individuals, int(model.n_clusters)
        proto0 = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (K,) + jnp.shape(a)), k0.init_params())
        _, un0 = ravel_pytree(proto0)
        theta = unravel_individual_hp(ki, f["theta"], model.shared_individual_hp, M)
        tau = jnp.asarray(f["tau"])
        params = ClustParams(un0(jnp.asarray(f["theta0"])), theta, jnp.asarray(f["pi"]))
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
