"""Figures only: one module per family of figures.

- :mod:`.run_figures`: one run's samples, reconstructions, latent space, manifold and learning
  curves (:func:`plot_run`);
- :mod:`.comparison`: several runs in one figure and table (:func:`compare_runs`);
- :mod:`.study_figures`: the reproduction table's and the gradient-variance study's figures;
- :mod:`.common`: what they share (the Agg backend, atomic PNG writes, image grids).

Other layers import from here (``from pyro_vae.viz import plot_run``).
"""

from pyro_vae.viz.common import plain
from pyro_vae.viz.comparison import compare_runs
from pyro_vae.viz.run_figures import (
    draw_run_figures,
    plot_latent_space,
    plot_learning_curves,
    plot_manifold,
    plot_reconstructions,
    plot_run,
    plot_samples,
)
from pyro_vae.viz.study_figures import plot_grad_variance, plot_reproduction

__all__ = [
    "compare_runs",
    "draw_run_figures",
    "plain",
    "plot_grad_variance",
    "plot_latent_space",
    "plot_learning_curves",
    "plot_manifold",
    "plot_reconstructions",
    "plot_reproduction",
    "plot_run",
    "plot_samples",
]
