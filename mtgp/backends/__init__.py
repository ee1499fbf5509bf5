"""Where Magma's per-individual work runs, behind one small seam.

The estimators never loop over individuals themselves: they lay the data out
(:class:`mtgp.magma.numerics.MagmaData`), hand it to a backend once, and then
ask the backend for the two things that touch individuals. Everything else
(the hyper-posterior of the mean process, the theta0 update, the EM loop,
prediction of one new individual) runs in the calling process on O(N^2)
pooled-grid arrays.

Contract (:class:`Backend`)
---------------------------
``prepare(data) -> handle``
    Called once per fit (or load). Puts the individuals' arrays where they
    will be used: :class:`Local` keeps them as device arrays in this
    process; a distributed backend would scatter partitions of individuals
    to its workers and return references to them. ``data.grid`` and
    ``data.m0`` stay available in the caller.
``e_step_sums(handle, static, theta, m0=None, weights=None) -> (S, c, ll)``
    The weighted sums of the E step (Props. 1/4, see
    :func:`mtgp.magma.numerics.e_step_sums`) at the individual log HPs
    ``theta``: S (N, N), c (N,), ll scalar. A distributed backend computes
    them per partition and adds the partial sums: only ``theta`` goes out and
    O(N^2) numbers come back, whatever the number of individuals. ``m0`` and
    ``weights`` optionally replace the prior mean on the grid and the
    per-individual weights held by the handle (MagmaClust: one call per
    cluster k with m_k and tau_ik).
``individual_m_step(handle, static, theta, post, weights=None) -> theta``
    The individual part of the M step (Props. 2/3) given the hyper-posterior
    ``post`` (a :class:`~mtgp.magma.numerics.MeanPosterior`, O(N^2), sent to
    where the data are). Different HP: M independent problems, solved where
    each individual's data are; only the new rows of ``theta`` come back.
    Common HP: one joint problem whose objective is a sum over individuals
    (a distributed backend sums per-partition values and gradients at each
    L-BFGS iteration). MagmaClust passes ``weights`` = tau (M, K) and a
    ``post`` whose leaves carry a leading cluster axis K: each individual's
    objective is then sum_k tau_ik L^{t_i}_k, i.e. Props. 2/3 with
    m_hat(t_i) = y_i and K_hat_i = R_i, the expected scatter
    sum_k tau_ik [(y_i - m_hat_k(t_i))(y_i - m_hat_k(t_i))' + C_hat_k(t_i)]
    (:func:`mtgp.magmaclust.numerics.mixture_moments`, computed where the
    individual's data are: tau's rows and the K posteriors go out).
``responsibility_terms(handle, static, theta, post) -> E``
    MagmaClust only (a backend that serves only Magma may leave it out):
    E (M, K), E_ik = log N(y_i; m_hat_k(t_i), Psi_i) - tr(Psi_i^-1 C_hat_k(t_i)) / 2
    (:func:`mtgp.magmaclust.numerics.expected_terms`, rows in training
    order), from which the caller forms the responsibilities. ``post`` has
    the leading cluster axis; O(M K) numbers come back.

MagmaClust calls ``e_step_sums`` once per cluster (weights tau[:, k], m0 the
prior mean), ``individual_m_step`` with ``weights`` and
``responsibility_terms``; ``static`` is then the Magma static of the model
(:attr:`mtgp.magmaclust.numerics.ClustStatic.magma`).

Backends: :class:`Local` (default), :class:`Dask` (partitions of
individuals on the workers of a ``dask.distributed`` cluster; needs the
``dask`` extra), :class:`Sharded` (the individuals' arrays split over this
process' JAX devices); all three serve Magma and MagmaClust.

The numbers must not depend on the backend beyond floating-point summation
order. ``static`` is a hashable :class:`~mtgp.magma.numerics.MagmaStatic`,
so it can be shipped to workers and used as a compile key there.
"""

from .dask import Dask
from .local import Backend, Local, resolve_backend
from .sharded import Sharded

__all__ = ["Backend", "Local", "Dask", "Sharded", "resolve_backend"]
