"""Save and load a fitted :class:`~mtgp.magma.Magma` (format "mtgp.Magma/2",
one ``.npz`` file through :mod:`mtgp.io`).

The file holds the constructor parameters, the kernels' forms, the fitted
log hyper-parameters (flattened, exactly as learnt), the training data (after
any grid binning) and the EM diagnostics. Loading rebuilds the data layout
and runs exactly one E step (Props. 1/4) at the saved log hyper-parameters:
no refit, and predictions equal those of the saved model."""

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
from . import em
from .numerics import MagmaParams

FORMAT = "mtgp.Magma/2"

#: constructor parameters stored in the file (kernels, prior mean, input
#: columns and backend are stored or chosen separately)
_PARAMS = ("noise", "common_hp", "max_iter", "tol", "n_init", "init_iter", "mean_update",
           "new_individual_hp", "m_step_max_iter", "random_state", "buckets", "grid_binning")


def _jsonable(x):
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x if isinstance(x, (int, float, str, bool)) or x is None else str(x)


@config.float64
def save_magma(model, path) -> str:
    """Write ``model`` to ``path`` (``.npz`` added if missing); returns the path."""
    header, arrays = saved_model_parts(model, _PARAMS)
    return write_model(path, FORMAT, header, arrays)


def saved_model_parts(model, param_names, to_json=None):
    """The header and arrays shared by the Magma-family files: constructor
    parameters ``param_names``, kernels' forms, ids, prior mean, fit
    diagnostics (``to_json`` per value), the flat log hyper-parameters and the
    training data after any binning."""
    model._check_is_fitted()
    to_json = to_json or _jsonable
    prior = model._prior
    if prior.kind == "callable":
        raise ValueError("a model with a callable prior_mean cannot be saved: give the prior mean as "
                         "a constant or as values on the training inputs")
    header = {
        "params": {k: _jsonable(getattr(model, k)) for k in param_names},
        "input_columns": model.input_columns_,
        "mean_kernel": model._static.k0.kernel.to_dict(),
        "individual_kernel": model._static.ki.kernel.to_dict(),
        "ids": [_jsonable(i) for i in model.ids_],
        "prior_kind": prior.kind,
        "fit_info": {k: to_json(v) for k, v in model.fit_info_.items()},
    }
    frame = model.inds_.to_frame()
    arrays = {
        "theta0": np.asarray(ravel_pytree(model.theta0_)[0]),
        "theta": np.asarray(ravel_pytree(model.theta_)[0]),
        "inputs": frame[model.input_columns_].to_numpy(),
        "outputs": frame["Output"].to_numpy(),
        "counts": model.inds_.counts,
        "prior_values": prior.values,
        "prior_constant": np.array(float(prior.spec) if prior.kind == "constant" else np.nan),
    }
    return header, arrays


def model_from_file(cls, meta, f, path):
    """(model with the saved constructor parameters, mean kernel, individual
    kernel, the saved individuals) from a Magma-family file's contents."""
    k0 = kernel_from_dict(meta["mean_kernel"])
    ki = kernel_from_dict(meta["individual_kernel"])
    prior = float(f["prior_constant"]) if meta["prior_kind"] == "constant" else f["prior_values"]
    model = cls(mean_kernel=k0, individual_kernel=ki, prior_mean=prior,
                input_columns=meta["input_columns"], **meta["params"])
    bounds = np.cumsum(f["counts"])[:-1]
    data = {i: (X, y) for i, X, y in zip(meta["ids"], np.split(f["inputs"], bounds),
                                           np.split(f["outputs"], bounds))}
    inds = to_individuals(data, meta["input_columns"], what=f"the data saved in {path}")
    return model, k0, ki, inds


def unravel_individual_hp(ki, flat, shared: bool, n_individuals: int):
    """The individual hyper-parameters' pytree from its saved flat vector
    (one set, or one per individual when not shared)."""
    proto = {"kernel": ki.init_params(), "log_noise": jnp.zeros(())}
    if not shared:
        proto = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n_individuals,) + jnp.shape(a)), proto)
    return ravel_pytree(proto)[1](jnp.asarray(flat))


@config.float64
def load_magma(cls, path):
    """Read a file written by :func:`save_magma` (any problem with the file
    raises :class:`~mtgp.exceptions.ModelFileError`)."""
    t_start = time.perf_counter()
    meta, f = read_model(path, FORMAT)
    try:
        model, k0, ki, inds = model_from_file(cls, meta, f, path)
        # prototypes give the saved flat vectors their pytree structure
        _, un0 = ravel_pytree(k0.init_params())
        theta = unravel_individual_hp(ki, f["theta"], model.common_hp, inds.n_individuals)
        params = MagmaParams(un0(jnp.asarray(f["theta0"])), theta)
        info = dict(meta["fit_info"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a consistent saved {FORMAT} ({type(exc).__name__}: {exc})") from None
    # the data are stored after binning: lay them out as they are
    layout = model._layout(inds, k0, ki)
    backend = resolve_backend(model.backend)
    handle = backend.prepare(layout.data)
    post = em.e_step(backend, handle, layout.static, params, layout.data)
    info["history"] = np.asarray(info["history"], dtype=float)
    info["load_time"] = time.perf_counter() - t_start
    model._set_state(layout, backend, handle, params, post, info)
    return model
