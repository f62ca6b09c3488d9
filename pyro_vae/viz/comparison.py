"""Several runs in one figure and one table: test ELBO against epochs and wall time, with the
importance-weighted log p(x) where a run was evaluated (``compare.py``).

The runs are read as data and checked (metrics, config, ``eval.json``): nothing of theirs is
imported, so comparing untrusted runs is safe.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from matplotlib.ticker import MaxNLocator

from pyro_vae.config import coerce_overrides
from pyro_vae.core.atomic import atomic_write, make_directory
from pyro_vae.core.errors import RunDirError
from pyro_vae.runs import RunDir, RunLock, read_summary
from pyro_vae.viz.common import plain, plt, write_figure


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
              "bits_per_dim": (lambda v: v is None or (number(v) and v > 0), "a positive number", False),
              "bits_per_dim_stderr": (lambda v: v is None or (number(v) and v >= 0), "a number", False),
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
    elif cfg.get("estimator") not in (None, "reparam", "score") and parts[0] == "trace":
        parts = [str(cfg["estimator"])]  # arm, disarm: the estimator is the objective
    if cfg.get("relax", "none") != "none":
        parts.append(f"{cfg['relax']}{' straight-through' if cfg.get('straight_through') else ''} "
                     f"T={cfg.get('temperature')}")
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


def _training_minutes(history: list[dict[str, Any]]) -> list[float]:
    """Cumulative minutes spent in training steps at the end of each epoch (evaluation excluded)."""
    out, total = [], 0.0
    for r in history:
        total += r.get("train_seconds", r.get("epoch_seconds", 0.0))
        out.append(total / 60)
    return out


def _model_key(cfg: dict) -> str:
    """Which model a run trains (family and latent sizes): runs of different models are drawn in
    panels of their own, their ELBOs being on different scales."""
    latent = cfg.get("latent_dim")
    sizes = "x".join(map(str, latent if isinstance(latent, list) else [latent])) if latent else ""
    categories = f" of {cfg['categories']}" if cfg.get("model") == "categorical" and cfg.get("categories") else ""
    return f"{cfg.get('model', 'vae')} {sizes}{categories}".strip()


def compare_training_elbo(runs: list[tuple], out_dir: Path) -> tuple[Path, list[str]]:
    """The discrete-estimator comparison's figure: the training split's ELBO (``train_elbo``)
    against steps and against training time, one row of panels per model, and the table's
    best-training-ELBO cells."""
    models = list(dict.fromkeys(_model_key(cfg) for _, _, cfg, _ in runs))
    fig, axes = plt.subplots(len(models), 2, figsize=(12, 4.5 * len(models)), squeeze=False)
    cells = []
    for i, (run_dir, history, cfg, _) in enumerate(runs):
        row = axes[models.index(_model_key(cfg))]
        label, color = plain(f"{run_dir.name} ({_label(cfg)})"), f"C{i % 10}"
        elbo = [r["train_elbo"] for r in history]
        row[0].plot([r["step"] for r in history], elbo, color=color, label=label)
        row[1].plot(_training_minutes(history), elbo, color=color, label=label)
        best = max(range(len(elbo)), key=elbo.__getitem__)
        cells.append(f"{elbo[best]:.2f} (epoch {history[best]['epoch']})")
    for model, row in zip(models, axes):
        histories = [h for _, h, cfg, _ in runs if _model_key(cfg) == model]
        # the later half of every curve in view: early epochs would squash the differences
        low = min(min(r["train_elbo"] for r in h[len(h) // 2:]) for h in histories)
        high = max(r["train_elbo"] for h in histories for r in h)
        for ax, xlabel in ((row[0], "training steps"), (row[1], "training time (minutes)")):
            ax.set_xlabel(xlabel)
            ax.set_ylabel("training ELBO, nats per image")
            ax.set_title(plain(model), fontsize=10)
            ax.grid(alpha=0.3)
            if math.isfinite(low) and math.isfinite(high):
                ax.set_ylim(low - 0.05 * (high - low) - 0.5, high + 0.05 * (high - low) + 0.5)
        row[1].legend(fontsize=8, loc="lower right")
    fig.suptitle("training ELBO (one sample per training image, after every epoch; higher is better)")
    return write_figure(fig, out_dir / "compare_train_elbo.png"), cells


def compare_runs(run_dirs: list[str | Path], out_dir: str | Path) -> dict[str, Path]:
    """One figure of test ELBO against epochs and wall time for several runs, test log p(x) where
    evaluated (at the epoch it evaluated), and a markdown table of the final numbers; written
    holding ``out_dir``'s lock, so never into a run another process is writing. Where every run
    recorded ``train_elbo``, a second figure draws it against steps and training time and the
    table gives each run's best (the measure of the discrete-VAE papers)."""
    runs = [(Path(d), *_read_run(Path(d))) for d in run_dirs]
    out_dir = make_directory(out_dir)
    with_train = all("train_elbo" in r for _, history, _, _ in runs for r in history)
    # 8-bit data: log p(x) in bits per dimension too, the unit their papers report
    with_bits = any(log_px is not None and log_px.get("bits_per_dim") is not None for *_, log_px in runs)

    def cell(text) -> str:  # one markdown cell: a '|' or a line break would split the row
        return " ".join(str(text).replace("|", "\\|").split())

    with RunLock(out_dir):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        rows = ["| run | objective | epochs | final test ELBO (nats) | test log p(x) (nats) |"
                + (" bits/dim |" if with_bits else "") + " wall time (s) |"
                + (" best training ELBO (nats) | training time (min) |" if with_train else ""),
                "|---|---|---|---|---|" + ("---|" if with_bits else "") + "---|" + ("---|---|" if with_train else "")]
        paths = {}
        if with_train:
            paths["train_figure"], best = compare_training_elbo(runs, out_dir)
        for i, (run_dir, history, cfg, log_px) in enumerate(runs):
            objective = _label(cfg)
            label = plain(f"{run_dir.name} ({objective})")
            color = f"C{i % 10}"
            epochs = [r["epoch"] for r in history]
            wall = [r["wall_seconds"] for r in history]
            elbo = [r["test_elbo"] for r in history]
            axes[0].plot(epochs, elbo, marker="o", color=color, label=label)
            axes[1].plot(wall, elbo, marker="o", color=color, label=label)
            ll, bits = "not evaluated", "-"
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
                if log_px.get("bits_per_dim") is not None:
                    bits_stderr = log_px.get("bits_per_dim_stderr")
                    bits = f"{log_px['bits_per_dim']:.3f}" + ("" if bits_stderr is None else f" +- {bits_stderr:.3f}")
            rows.append(f"| {cell(run_dir.name)} | {cell(objective)} | {epochs[-1]} | "
                        f"{elbo[-1]:.2f} | {cell(ll)} |" + (f" {bits} |" if with_bits else "") + f" {wall[-1]:.0f} |"
                        + (f" {best[i]} | {_training_minutes(history)[-1]:.1f} |" if with_train else ""))
        axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax, xlabel in ((axes[0], "epoch"), (axes[1], "wall time (s)")):
            ax.set_xlabel(xlabel)
            ax.set_ylabel("test ELBO, nats per image (higher is better)")
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=8, loc="lower right")
        fig.suptitle("test ELBO per run (stars: importance-weighted log p(x), where evaluated)")
        paths.update(figure=write_figure(fig, out_dir / "compare.png"), markdown=out_dir / "compare.md")
        atomic_write(paths["markdown"], "\n".join(rows) + "\n")
    return paths
