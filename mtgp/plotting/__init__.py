"""Plots of data, predictions and fitted models (matplotlib only).

Every function returns the matplotlib :class:`~matplotlib.figure.Figure` it
drew (save it with ``fig.savefig(...)``, show it with ``plt.show()``);
functions that draw on one panel also accept ``ax=`` to draw on an existing
one. matplotlib is imported when a function is first called, not by
``import mtgp.plotting``.

==================================  ==========================================
:func:`plot_data`                   the curves of many individuals
:func:`plot_prediction`             a prediction: mean, band, mean process, the individual's points
:func:`plot_mixture_prediction`     MagmaClust's mixture prediction and its cluster probabilities
:func:`plot_clusters`               MagmaClust: curves coloured by cluster, each mean process and band
:func:`prediction_gif`              an animated GIF of a prediction as the individual's points arrive
:func:`plot_hyperparameters`        hyper-parameters across individuals (histograms)
:func:`plot_covariances`            heatmaps of C and Sigma (multi-output models)
:func:`plot_multioutput_prediction` one panel per output of a multi-output prediction
:func:`plot_forecasts`              panels of held-out forecasts (the demo's figure)
==================================  ==========================================
"""

from .longitudinal import (plot_clusters, plot_data, plot_forecasts, plot_hyperparameters,
                           plot_mixture_prediction, plot_prediction, prediction_gif, subplots_grid)
from .multioutput import plot_covariances, plot_multioutput_prediction

__all__ = ["plot_data", "plot_prediction", "plot_mixture_prediction", "plot_clusters", "prediction_gif",
           "plot_hyperparameters", "plot_covariances", "plot_multioutput_prediction", "plot_forecasts",
           "subplots_grid"]
