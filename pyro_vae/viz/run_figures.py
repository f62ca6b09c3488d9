"""The figures of one run: samples, reconstructions, latent space, manifold, learning curves
(:func:`plot_run` draws them all into ``RUN_DIR/figures/``).

Each reads the model only through :mod:`pyro_vae.models.decode` (samples, reconstructions and
posterior means from its traces), so every model family and prior gets the same figures.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from pyro_vae.core.atomic import make_directory
from pyro_vae.core.console import log_line
from pyro_vae.core.errors import ConfigError
from pyro_vae.data import load_dataset
from pyro_vae.models import build_model
from pyro_vae.models.decode import (
    decode,
    decode_sites,
    posterior_means,
    predictions,
    prior_samples,
    reconstruct,
    sample_images_and_draws,
)
from pyro_vae.models.discrete_settings import prior_label
from pyro_vae.models.sites import LABEL_SITE, Structure, probe
from pyro_vae.runs import RunDir, load_run, load_weights
from pyro_vae.viz.common import plain, plt, show_grid, show_grids, write_figure


def plot_samples(model, image_shape, path: Path, n: int = 64) -> Path:
    """``n`` images from the model: the mean of p(x | z) (left) and one draw from it (right), for
    the same latents."""
    means, draws = sample_images_and_draws(model, n, math.prod(image_shape))
    return show_grids([means.reshape(n, *image_shape), draws.reshape(n, *image_shape)], int(math.sqrt(n)),
                      [f"{n} samples: the mean of p(x | z)", "and a draw from p(x | z)"], path)


def plot_reconstructions(model, x: torch.Tensor, image_shape, path: Path, n: int = 16) -> Path:
    """Test images (odd rows) above their reconstructions, decoded from the guide's mean path."""
    x = x[:n]
    recon = reconstruct(model, x)
    rows = []
    for i in range(0, len(x), 8):
        rows += [x[i:i + 8], recon[i:i + 8]]
    images = torch.cat(rows).reshape(-1, *image_shape)
    return show_grid(images, 8, "test images (rows 1, 3) and their reconstructions (rows 2, 4)", path)


def _pca_2d(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    centred = points - points.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    explained = s ** 2 / (s ** 2).sum()
    return centred @ vt[:2].T, explained[:2]


def plot_latent_space(model, x: torch.Tensor, labels: Optional[torch.Tensor], path: Path,
                      site: str = "z", layers: int = 1) -> Path:
    """Posterior means E_q[z | x] of test images in latent ``site`` (the top layer; a discrete
    site's probabilities); a 2-D PCA projection when it has more than 2 dimensions. ``layers``:
    how many latent layers the model has."""
    means = posterior_means(model, x)[site].cpu().numpy()
    where = f" (top of {layers} latent layers)" if layers > 1 else ""
    if means.shape[1] == 2:
        xy, axis_names = means, (f"{site}[0]", f"{site}[1]")
        title = f"posterior means E_q[{site} | x] of test images{where}"
    else:
        xy, explained = _pca_2d(means)
        axis_names = tuple(f"principal component {i + 1} ({100 * e:.0f}% of variance)"
                           for i, e in enumerate(explained))
        title = f"posterior means of test images, PCA of {means.shape[1]}-D {site}{where}"
    fig, ax = plt.subplots(figsize=(7, 6))
    if labels is not None:
        scatter = ax.scatter(xy[:, 0], xy[:, 1], c=labels.cpu().numpy(), cmap="tab10", s=4, alpha=0.7,
                             vmin=-0.5, vmax=9.5)
        fig.colorbar(scatter, ax=ax, ticks=range(10), label="digit / class label")
    else:
        ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.5)
        title += " (this dataset has no labels)"
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    ax.set_title(title)
    return write_figure(fig, path)


def plot_manifold(model, image_shape, path: Path, site: str = "z", n: int = 15) -> Path:
    """For a 2-D top latent layer: images decoded on a grid of its marginal quantiles under the
    generative model (5% to 95%), every layer below at its conditional mean.

    Quantiles are estimated from prior samples, so the grid follows any prior, not only N(0, I).
    """
    x_dim = math.prod(image_shape)
    samples = prior_samples(model, site, 20000, x_dim)
    levels = torch.linspace(0.05, 0.95, n, device=samples.device)
    q0, q1 = (torch.quantile(samples[:, j], levels) for j in range(2))
    grid = torch.stack(torch.meshgrid(q1.flip(0), q0, indexing="ij"), -1).reshape(-1, 2)[:, [1, 0]]
    images = decode(model, site, grid, x_dim).reshape(-1, *image_shape)
    return show_grid(images, n, f"decoded manifold: {site} on a grid of prior quantiles 5%..95%",
                      path, size=7)


def plot_learning_curves(history: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Training loss and test -ELBO against epochs and wall time; for a run that classifies
    (records with ``test_accuracy``), a third panel of test and validation accuracy."""
    epochs = [r["epoch"] for r in history]
    wall = [r["wall_seconds"] for r in history]
    train = [r["train_loss"] for r in history]
    test = [-r["test_elbo"] for r in history]
    accuracy = "test_accuracy" in history[-1]
    fig, axes = plt.subplots(1, 3 if accuracy else 2, figsize=(16 if accuracy else 11, 4))
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax, x, xlabel in ((axes[0], epochs, "epoch"), (axes[1], wall, "wall time (s)")):
        ax.plot(x, train, marker="o", label="train loss (-ELBO of the objective)")
        ax.plot(x, test, marker="s", label="test -ELBO (one sample)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("nats per image (lower is better)")
        ax.grid(alpha=0.3)
        ax.legend()
    if accuracy:
        ax = axes[2]
        for key, label in (("test_accuracy", "test"), ("valid_accuracy", "validation")):
            if key in history[-1]:
                ax.plot(epochs, [r[key] for r in history], marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy of q(y | x) (higher is better)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or "learning curves")
    return write_figure(fig, path)


def plot_completions(model, x: torch.Tensor, image_shape, path: Path, n: int = 10, draws: int = 4) -> Path:
    """For a model that predicts part of each image from the rest (``target_mask``, the CVAE):
    the given pixels (the rest grey), the true image, then ``draws`` predictions, each from a new
    z drawn from p(z | given), with the given pixels pasted in."""
    x, target = x[:n], model.target_mask.to(x.device)
    given = x * (1 - target) + 0.5 * target
    rows = [given, x]
    for _ in range(draws):
        rows.append(x * (1 - target) + predictions(model, x) * target)
    images = torch.cat(rows).reshape(-1, *image_shape)
    return show_grid(images, len(x), f"given pixels (row 1), truth (row 2), {draws} predictions of "
                                     "the rest (rows 3+)", path, size=7)


def plot_style_and_class(model, x: torch.Tensor, image_shape, path: Path, classes: int, n: int = 8) -> Path:
    """M2's analogies (Kingma et al. 2014, Figure 1): each row a test image (first column), then
    its style z = E_q[z | x, y] (y the most probable class) decoded with every class in turn."""
    x = x[:n]
    x_dim = math.prod(image_shape)
    style = posterior_means(model, x)["z"]
    labels = torch.eye(classes, device=x.device)
    rows = []
    for i in range(len(x)):
        decoded = decode_sites(model, {"z": style[i].expand(classes, -1), LABEL_SITE: labels}, x_dim)
        rows.append(torch.cat([x[i:i + 1], decoded]))
    images = torch.cat(rows).reshape(-1, *image_shape)
    return show_grid(images, classes + 1, "test image, then its style decoded with each class", path,
                     size=7)


def draw_run_figures(model, x: torch.Tensor, labels: Optional[torch.Tensor], image_shape,
                     history: list[dict[str, Any]], title: str, out: Path, structure: Structure,
                     log: Callable[[str], None] = log_line) -> list[Path]:
    """Every figure of a run into the directory ``out``: samples, reconstructions, latent space,
    learning curves, for a model with a class y and a style z (M2) its analogies, for a model that
    predicts part of each image (``target_mask``, the CVAE) its completions, and, for a 2-D
    real-valued top layer, the manifold. A figure that has no
    meaning for the model is skipped with the reason, in one line to ``log``."""
    top, layers = structure.top, len(structure.latents)
    paths = [plot_samples(model, image_shape, out / "samples.png"),
             plot_reconstructions(model, x, image_shape, out / "reconstructions.png"),
             plot_latent_space(model, x, labels, out / "latent_space.png", top.name, layers),
             plot_learning_curves(history, out / "learning_curves.png", plain(title))]
    if getattr(model, "target_mask", None) is not None:
        paths.append(plot_completions(model, x, image_shape, out / "completions.png"))
    labels_site = next((site for site in structure.latents if site.name == LABEL_SITE), None)
    if labels_site is not None and labels_site.family == "OneHotCategorical" and "z" in \
            {site.name for site in structure.latents}:
        paths.append(plot_style_and_class(model, x, image_shape, out / "style_and_class.png",
                                          labels_site.event_shape[-1]))
    if top.size == 2 and top.discrete:
        log(f"manifold figure skipped: the top latent site {top.name!r} is discrete ({top.family}), "
            "and a grid of prior quantiles has no meaning for a discrete code")
    elif top.size == 2:
        paths.append(plot_manifold(model, image_shape, out / "manifold.png", top.name))
    return paths


def plot_run(run_dir: str | Path, data_dir: Optional[str] = None, num_points: int = 2000,
             trusted_imports: Iterable[str] = (), log: Callable[[str], None] = log_line) -> list[Path]:
    """All figures of a run into ``RUN_DIR/figures/``, holding the run's lock while drawing.
    ``trusted_imports`` as for :func:`~pyro_vae.runs.opening.load_run`; ``log`` gets a line for
    each figure skipped (see :func:`draw_run_figures`)."""
    if num_points < 1:
        raise ConfigError(f"num_points must be at least 1, got {num_points}")
    run = RunDir(run_dir)
    state, cfg = load_run(run_dir, {"device": "cpu", **({"data_dir": data_dir} if data_dir else {})},
                          trusted_imports)
    with run.lock():
        data = load_dataset(cfg.data.dataset, cfg.data.data_dir, "cpu", limit_train=1, limit_test=num_points)
        model = build_model(cfg, data.image_shape, dequantized=data.dequantized)
        load_weights(model, state["model"], run.path)
        model.eval()
        structure = probe(model.model, model.guide, data.test, cfg.model.name)
        out = make_directory(run.path / "figures")
        torch.manual_seed(cfg.run.seed)
        title = (f"{run.path.name}: {cfg.model.name}, {cfg.objective.elbo}, {cfg.model.estimator}, "
                 f"prior {prior_label(cfg)}")
        return draw_run_figures(model, data.test, data.test_labels, data.image_shape, state["metrics"],
                                title, out, structure, log)
