"""Figures only: learning curves, samples, reconstructions, latent space, manifold,
comparisons (:mod:`.plots`).
"""

from pyro_vae.viz.plots import (
    plain,
    plot_latent_space,
    plot_learning_curves,
    plot_manifold,
    plot_reconstructions,
    plot_run,
    plot_samples,
)

__all__ = ["plain", "plot_latent_space", "plot_learning_curves", "plot_manifold", "plot_reconstructions",
           "plot_run", "plot_samples"]
