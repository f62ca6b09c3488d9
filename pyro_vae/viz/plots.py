"""Figures of a run: samples, reconstructions, latent space, manifold, learning curves; and the
comparison of several runs.

Everything draws with matplotlib's non-interactive Agg backend (no display needed) and writes PNG
files. Image grids come from ``torchvision.utils.make_grid``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

from pyro_vae.config import coerce_overrides  # noqa: E402
from pyro_vae.core.atomic import atomic_write, make_directory, save_figure  # noqa: E402
from pyro_vae.core.errors import ConfigError, RunDirError  # noqa: E402
from pyro_vae.data import load_dataset  # noqa: E402
from pyro_vae.models import build_model  # noqa: E402
from pyro_vae.models.decode import decode, posterior_mean_trace, prior_samples, reconstruct, sample_images  # noqa: E402
from pyro_vae.models.sites import probe  # noqa: E402
from pyro_vae.runs.lock import RunLock  # noqa: E402
from pyro_vae.runs.opening import load_run, load_weights  # noqa: E402
from pyro_vae.runs.results import read_summary  # noqa: E402
from pyro_vae.runs.rundir import RunDir  # noqa: E402

DPI = 100


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    try:
        return save_figure(fig, path, dpi=DPI)
    finally:
        plt.close(fig)


def plain(text) -> str:
    """``text`` as a matplotlib label shows it: a '$' (in a run's name, say) would start mathtext."""
    return str(text).replace("$", r"\$")


def _show_grid(images: torch.Tensor, nrow: int, title: str, path: Path, size: float = 6.0) -> Path:
    """Pixel probabilities ``(N, 1, 28, 28)`` as one grid image with a title."""
    grid = make_grid(images.detach().cpu().clamp(0, 1), nrow=nrow, padding=2, pad_value=1.0)
    fig, ax = plt.subplots(figsize=(size, size * grid.shape[1] / grid.shape[2] + 0.5))
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
    return _save(fig, path)


def plot_samples(model, image_shape, path: Path, n: int = 64) -> Path:
    images = sample_images(model, n, math.prod(image_shape)).reshape(n, *image_shape)
    return _show_grid(images, int(math.sqrt(n)), f"{n} samples from the model (pixel probabilities)", path)


def plot_reconstructions(model, x: torch.Tensor, image_shape, path: Path, n: int = 16) -> Path:
    """Test images (odd rows) above their reconstructions, decoded from the guide's mean path."""
    x = x[:n]
    recon = reconstruct(model, x)
    rows = []
    for i in range(0, len(x), 8):
        rows += [x[i:i + 8], recon[i:i + 8]]
    images = torch.cat(rows).reshape(-1, *image_shape)
    return _show_grid(images, 8, "test images (rows 1, 3) and their reconstructions (rows 2, 4)", path)


def _pca_2d(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    centred = points - points.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    explained = s ** 2 / (s ** 2).sum()
    return centred @ vt[:2].T, explained[:2]


def plot_latent_space(model, x: torch.Tensor, labels: Optional[torch.Tensor], path: Path,
                      site: str = "z", layers: int = 1) -> Path:
    """Posterior means of test images in latent ``site`` (the top layer); a 2-D PCA projection
    when it has more than 2 dimensions. ``layers``: how many latent layers the model has."""
    value = posterior_mean_trace(model, x).nodes[site]["value"]
    means = value.reshape(len(x), -1).cpu().numpy()
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
    return _save(fig, path)


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
    return _show_grid(images, n, f"decoded manifold: {site} on a grid of prior quantiles 5%..95%",
                      path, size=7)


def plot_learning_curves(history: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    epochs = [r["epoch"] for r in history]
    wall = [r["wall_seconds"] for r in history]
    train = [r["train_loss"] for r in history]
    test = [-r["test_elbo"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax, x, xlabel in ((axes[0], epochs, "epoch"), (axes[1], wall, "wall time (s)")):
        ax.plot(x, train, marker="o", label="train loss (-ELBO of the objective)")
        ax.plot(x, test, marker="s", label="test -ELBO (one sample)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("nats per image (lower is better)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or "learning curves")
    return _save(fig, path)


def plot_reproduction(rows: list[dict[str, Any]], path: Path) -> Path:
    """Test -ELBO (one sample, each epoch) against training time for every row of a reproduction
    table, with the row's final NLL (K-sample estimate) as a marker and the paper's NLL as a
    dashed line in the same colour."""
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for i, row in enumerate(rows):
        color = f"C{i % 10}"
        hours = [p["hours"] for p in row["curve"]]
        label = Path(row["config"]).stem
        ax.plot(hours, [p["test_nelbo"] for p in row["curve"]], color=color, alpha=0.6,
                label=f"{label}: test -ELBO")
        ax.errorbar([row["hours_to_evaluated_epoch"]], [row["nll"]], yerr=[row["stderr"]], fmt="o",
                    color=color, label=f"{label}: NLL {row['nll']:.2f} (K = {row['num_samples']})")
        if row.get("paper_nll") is not None:
            ax.axhline(row["paper_nll"], color=color, linestyle="--", linewidth=1)
    values = [row["nll"] for row in rows] + [row["paper_nll"] for row in rows if row.get("paper_nll")]
    if values:  # the interesting range: from below the best number to well above it
        ax.set_ylim(min(values) - 2, max(values) + 12)
    ax.set_xlabel("training wall time (hours)")
    ax.set_ylabel("nats per test image (lower is better)")
    ax.set_title("reproduction: -ELBO per epoch, final NLL (dots), paper NLL (dashed)")
    ax.grid(alpha=0.3)
    if rows:  # a table of rows none of which could be drawn has nothing to label
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_run(run_dir: str | Path, data_dir: Optional[str] = None, num_points: int = 2000,
             trusted_imports: Iterable[str] = ()) -> list[Path]:
    """All figures of a run into ``RUN_DIR/figures/``, holding the run's lock while drawing.
    ``trusted_imports`` as for :func:`~pyro_vae.runs.opening.load_run`."""
    if num_points < 1:
        raise ConfigError(f"num_points must be at least 1, got {num_points}")
    run = RunDir(run_dir)
    state, cfg = load_run(run_dir, {"device": "cpu", **({"data_dir": data_dir} if data_dir else {})},
                          trusted_imports)
    with run.lock():
        data = load_dataset(cfg.data.dataset, cfg.data.data_dir, "cpu", limit_train=1, limit_test=num_points)
        model = build_model(cfg, data.image_shape)
        load_weights(model, state["model"], run.path)
        model.eval()
        structure = probe(model.model, model.guide, data.test, cfg.model.name)
        top, layers = structure.top, len(structure.latents)
        out = make_directory(run.path / "figures")
        torch.manual_seed(cfg.run.seed)
        shape = data.image_shape
        paths = [plot_samples(model, shape, out / "samples.png"),
                 plot_reconstructions(model, data.test, shape, out / "reconstructions.png"),
                 plot_latent_space(model, data.test, data.test_labels, out / "latent_space.png",
                                   top.name, layers),
                 plot_learning_curves(state["metrics"], out / "learning_curves.png",
                                      plain(f"{run.path.name}: {cfg.model.name}, {cfg.objective.elbo}, "
                                            f"{cfg.model.estimator}, prior {cfg.prior.name}"))]
        if top.size == 2:
            paths.append(plot_manifold(model, shape, out / "manifold.png", top.name))
    return paths


def _read_evaluation(path: Path) -> Optional[dict[str, Any]]:
    """eval.json's numbers for the comparison, or None where the run was not evaluated. A file
    that is not what pyro-vae writes is a one-line RunDirError naming the file and the field
    (as ``scripts/reproduce.py`` does); ``log_likelihood`` may be null (a non-finite estimate)."""
    if not path.exists() and not path.is_symlink():
        return None
    advice = "run scripts/evaluate.py again or delete it"
    result = read_summary(path, advice)

    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def count(v, least=0):
        return isinstance(v, int) and not isinstance(v, bool) and v >= least
    fields = {"log_likelihood": (lambda v: v is None or number(v), "a number", True),
              "num_samples": (lambda v: count(v, 1), "a whole number of at least 1", True),
              "stderr": (lambda v: v is None or number(v), "a number", False),
              "epoch": (count, "a whole number", False),
              "split": (lambda v: isinstance(v, str), "a string", False)}
    for key, (ok, kind, required) in fields.items():
        if (required or key in result) and not ok(result.get(key, ...)):
            got = "nothing" if key not in result else repr(result[key])
            raise RunDirError(f"{path}: {key} must be {kind}, got {got}; {advice}")
    return result


def _label(cfg: dict) -> str:
    """The objective of a run's config, e.g. "score/tracegraph+avg, K=5, prior vamp"."""
    parts = [cfg.get("elbo") or "trace"]
    if cfg.get("estimator") == "score":
        parts = [f"score/{parts[0]}" + (f"+{cfg['baseline']}" if cfg.get("baseline", "none") != "none" else "")]
    if (cfg.get("num_particles") or 1) > 1:
        parts.append(f"K={cfg['num_particles']}")
    if cfg.get("prior", "normal") != "normal":
        parts.append(f"prior {cfg['prior']}")
    if cfg.get("model", "vae") != "vae":
        parts.insert(0, cfg["model"])
    return ", ".join(parts)


def _read_run(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any], Optional[dict[str, Any]]]:
    """A run's metrics, config and evaluation, read as data and checked (nothing is imported)."""
    run = RunDir(run_dir)
    if not run.metrics_path.exists() or not run.config_path.exists():
        raise RunDirError(f"{run_dir} has no metrics.jsonl or config.yaml: is it a run directory "
                          "written by scripts/svi_train.py?")
    history = run.read_metrics()
    if not history:
        raise RunDirError(f"{run.metrics_path} holds no epoch yet")
    cfg = coerce_overrides(run.read_config(), where=str(run.config_path))
    return history, cfg, _read_evaluation(run.path / "eval.json")


def compare_runs(run_dirs: list[str | Path], out_dir: str | Path) -> dict[str, Path]:
    """One figure of test ELBO against epochs and wall time for several runs, test log p(x) where
    evaluated (at the epoch it evaluated), and a markdown table of the final numbers; written
    holding ``out_dir``'s lock, so never into a run another process is writing."""
    runs = [(Path(d), *_read_run(Path(d))) for d in run_dirs]
    out_dir = make_directory(out_dir)

    def cell(text) -> str:  # one markdown cell: a '|' or a line break would split the row
        return " ".join(str(text).replace("|", "\\|").split())

    with RunLock(out_dir):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        rows = ["| run | objective | epochs | final test ELBO (nats) | test log p(x) (nats) | wall time (s) |",
                "|---|---|---|---|---|---|"]
        for i, (run_dir, history, cfg, log_px) in enumerate(runs):
            objective = _label(cfg)
            label = plain(f"{run_dir.name} ({objective})")
            color = f"C{i % 10}"
            epochs = [r["epoch"] for r in history]
            wall = [r["wall_seconds"] for r in history]
            elbo = [r["test_elbo"] for r in history]
            axes[0].plot(epochs, elbo, marker="o", color=color, label=label)
            axes[1].plot(wall, elbo, marker="o", color=color, label=label)
            ll = "not evaluated"
            if log_px is not None:  # at the epoch it evaluated (best.pt's), where it says which
                value, stderr = log_px["log_likelihood"], log_px.get("stderr")
                at = next((r for r in history if r["epoch"] == log_px.get("epoch")), history[-1])
                finite = value is not None and math.isfinite(value)
                if finite:
                    for ax, x in ((axes[0], at["epoch"]), (axes[1], at["wall_seconds"])):
                        ax.scatter([x], [value], marker="*", s=150, color=color, zorder=3)
                notes = [f"K = {log_px['num_samples']}"]
                if log_px.get("epoch") is not None and log_px["epoch"] != epochs[-1]:
                    notes.append(f"epoch {log_px['epoch']}")
                if log_px.get("split", "test") != "test":
                    notes.append(f"{log_px['split']} split")
                ll = (f"{value:.2f} +- {'-' if stderr is None else format(stderr, '.2f')}" if finite
                      else "not finite") + f" ({', '.join(notes)})"
            rows.append(f"| {cell(run_dir.name)} | {cell(objective)} | {epochs[-1]} | "
                        f"{elbo[-1]:.2f} | {cell(ll)} | {wall[-1]:.0f} |")
        axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax, xlabel in ((axes[0], "epoch"), (axes[1], "wall time (s)")):
            ax.set_xlabel(xlabel)
            ax.set_ylabel("test ELBO, nats per image (higher is better)")
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=8, loc="lower right")
        fig.suptitle("test ELBO per run (stars: importance-weighted log p(x), where evaluated)")
        paths = {"figure": _save(fig, out_dir / "compare.png"), "markdown": out_dir / "compare.md"}
        atomic_write(paths["markdown"], "\n".join(rows) + "\n")
    return paths
