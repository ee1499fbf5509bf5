"""MagmaClust (Leroy, Latouche, Guedj & Gey, JMLR 2023): clusters of
individuals, each cluster with its own mean process, trained by variational EM.

Modules: :mod:`~mtgp.magmaclust.numerics` (VE step: the K hyper-posteriors
through Magma's weighted E-step sums, responsibilities; VM step; the ELBO),
:mod:`~mtgp.magmaclust.em` (the VEM loop), :mod:`~mtgp.magmaclust.prediction`
(the mixture prediction), :mod:`~mtgp.magmaclust.estimator` (:class:`MagmaClust`)."""

from .estimator import MagmaClust, select_n_clusters
from .numerics import ClustParams, ClustStatic

__all__ = ["MagmaClust", "select_n_clusters", "ClustParams", "ClustStatic"]
