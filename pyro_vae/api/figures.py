"""A run's figures: samples, reconstructions, latent space, learning curves and, for a 2-D top
latent layer, the decoded manifold (:mod:`pyro_vae.viz`; matplotlib is imported only to draw).

A run directory is reopened and drawn as ``scripts/plot_run.py`` draws it; a :class:`Run` in
memory is drawn from its own model and data, which a run trained from objects made in Python
(or in memory) needs: nothing on disk could rebuild it.
"""

from __future__ import annotations

import copy
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Iterable, Optional

import torch

from pyro_vae.api.arguments import positive
from pyro_vae.api.runs import Run
from pyro_vae.core.atomic import make_directory
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.registry import instance_class
from pyro_vae.models.discrete_settings import prior_label
from pyro_vae.models.sites import probe
from pyro_vae.runs.rundir import RunDir


def plot_run(run: Run | str | os.PathLike, *, out: Optional[str | os.PathLike] = None, num_points: int = 2000,
             data_dir: Optional[str] = None, trusted_imports: Iterable[str] = ()) -> list[Path]:
    """Draw the figures of ``run`` (a :class:`Run`, or a run directory) and return their paths.

    Into ``RUN_DIR/figures/`` (a run directory's lock held meanwhile), or into ``out`` (needed for
    a run trained in memory). ``num_points``: test images in the latent-space plot. For a run
    directory, ``data_dir`` and ``trusted_imports`` are as for
    :func:`~pyro_vae.api.runs.open_run` (a run trained from objects is drawn from
    ``open_run(path, model=...)`` instead).
    """
    num_points = positive("num_points", num_points)
    if isinstance(run, (str, os.PathLike)):
        if out is not None:
            raise ConfigError("out= is for a Run object; a run directory's figures go into its figures/ "
                              "folder (for another folder, pass pyro_vae.open_run(path) and out=)")
        if isinstance(trusted_imports, str):
            raise ConfigError(f"trusted_imports= is a list of import paths: trusted_imports=[{trusted_imports!r}]")
        from pyro_vae.viz import plot_run as plot_run_directory

        return plot_run_directory(run, data_dir, num_points, trusted_imports=trusted_imports)
    if not isinstance(run, Run):
        raise ConfigError(f"run= must be a Run (from pyro_vae.train, resume or open_run) or a run directory; "
                          f"got {type(run).__name__}")
    if out is None and run.run_dir is None:
        raise ConfigError("run= was trained in memory and has no run directory: pass out=DIR for its figures")
    return draw_figures(run, Path(out) if out is not None else run.run_dir / "figures", num_points)


def draw_figures(run: Run, directory: Path, num_points: int = 2000) -> list[Path]:
    """Every figure of ``run``, drawn from its model, data and history into ``directory`` (under
    the run directory's lock where it is inside it), with the run's seed in a forked RNG."""
    from pyro_vae import viz

    inside = run.run_dir is not None and Path(directory).resolve().is_relative_to(run.run_dir.resolve())
    model = run.model
    if any(p.device.type != "cpu" for p in model.parameters()):
        model = copy.deepcopy(model).cpu()  # figures are drawn on the CPU
    data = run.data
    x = data.test[:num_points].cpu()
    labels = None if data.test_labels is None else data.test_labels[:num_points].cpu()
    cfg, shape, training = run.config, run.image_shape, model.training
    title = (f"{run.run_dir.name if run.run_dir is not None else 'in memory'}: {type(model).__name__}, "
             f"{_short(cfg.objective.elbo)}, {cfg.model.estimator}, prior {_short(prior_label(cfg))}")
    with RunDir(run.run_dir).lock() if inside else nullcontext(), torch.random.fork_rng():
        out = make_directory(directory)
        torch.manual_seed(cfg.run.seed)
        model.eval()
        try:
            structure = probe(model.model, model.guide, x, type(model).__name__)
            return viz.draw_run_figures(model, x, labels, shape, run.history, title, out, structure)
        finally:
            model.train(training)


def _short(name: str) -> str:
    """A config value as a figure's title shows it: an object's class name, not its record."""
    recorded = instance_class(name)
    return recorded[0] if recorded else name
