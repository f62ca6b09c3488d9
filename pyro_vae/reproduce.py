"""Reproducing published rows: train (or resume) each config, evaluate it, write one table.

A row is a YAML config whose ``reference`` mapping names the published result it stands beside
(``paper``, ``table``, ``nll``, ``epochs``; see ``configs/papers/``). For every config,
:func:`reproduce` trains the run in ``RUNS_DIR/<folder>-<name>`` (or resumes it: the run directory
persists, so a long protocol can be run across sessions), evaluates log p(x) on the test split
with K importance samples (the papers' protocol: the full 10,000 images, K = 5000), and writes
``reproduction.md``, ``reproduction.json`` and ``reproduction.png`` (test -ELBO against
training time per row, with the final NLL) into the output directory.

``epochs_scale`` F shrinks a protocol in time: epochs, the iwae schedule's stages
(``lr_schedule_scale``), the KL warm-up and the early-stopping patience are all multiplied by
F, and the run directory gets the suffix ``-xF`` so it is never confused with the full protocol.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Optional

from .atomic import atomic_write, make_directory
from .build import checkpoint_path, load_run
from .checkpoint import load_checkpoint
from .config import Config, read_config_file, validate
from .console import log_line
from .data import load_dataset
from .errors import ConfigError
from .evaluate import describe_active_units, evaluate_run
from .plots import plot_reproduction
from .rundir import RunDir
from .train import train

TABLE_NAME = "reproduction"


def scaled_settings(settings: dict[str, Any], scale: float) -> dict[str, Any]:
    """``settings`` with the protocol's length multiplied by ``scale`` (see the module doc)."""
    if scale == 1:
        return dict(settings)
    if not scale > 0:
        raise ConfigError(f"--epochs-scale must be positive, got {scale}")
    out = dict(settings)
    out["epochs"] = max(1, round(settings.get("epochs", 10) * scale))
    out["lr_schedule_scale"] = settings.get("lr_schedule_scale", 1.0) * scale
    if settings.get("kl_warmup"):
        out["kl_warmup"] = settings["kl_warmup"] * scale
    if settings.get("early_stopping"):
        out["early_stopping"] = max(1, round(settings["early_stopping"] * scale))
    return out


def run_name(config: Path, scale: float) -> str:
    """``papers-burda_1layer_vae_k1`` for configs/papers/burda_1layer_vae_k1.yaml; ``-x0.1``
    appended for a scaled protocol."""
    name = f"{config.parent.name}-{config.stem}" if config.parent.name else config.stem
    return name if scale == 1 else f"{name}-x{scale:g}"


def _reusable(run: RunDir, num_samples: int, limit: Optional[int],
              data_dir: Optional[str]) -> Optional[dict[str, Any]]:
    """The run's eval.json if it evaluated the checkpoint now on disk the way asked."""
    path = run.path / "eval.json"
    if not path.exists():
        return None
    try:
        summary = json.loads(path.read_text())
        state = load_checkpoint(checkpoint_path(run.path, "best"))
    except (OSError, ValueError):
        return None
    expected_points = limit
    if limit is None:  # the whole test split
        cfg = state["config"]
        expected_points = len(load_dataset(cfg["dataset"], data_dir or cfg.get("data_dir"), limit_train=1).test)
    if (summary.get("split") == "test" and summary.get("num_samples") == num_samples
            and summary.get("epoch") == state["epoch"] and summary.get("num_points") == expected_points
            and "checkpoint" in summary):
        return summary
    return None


def reproduce_one(config: Path, runs_dir: Path, scale: float = 1.0, num_samples: int = 5000,
                  limit: Optional[int] = None, overrides: Optional[dict[str, Any]] = None,
                  train_runs: bool = True, log: Callable[[str], None] = log_line) -> dict[str, Any]:
    """Train or resume ``config``'s run, evaluate it, and return its table row."""
    settings, reference = read_config_file(config)
    settings = {**scaled_settings(settings, scale), **(overrides or {})}
    run = RunDir(runs_dir / run_name(config, scale))
    if train_runs:
        if run.checkpoint_path.exists():
            log(f"== {config}: resuming {run.path}")
            trainer = train({**settings, "resume": str(run.path), "plots": False}, log=log)
        else:
            log(f"== {config}: training {run.path}")
            trainer = train({**settings, "out": str(run.path), "plots": False}, log=log)
        if trainer.stopped_early():
            log(f"   stopped early: {trainer.stop_reason()}")
    elif not run.checkpoint_path.exists():
        raise ConfigError(f"{run.path} holds no run to evaluate; drop --no-train to train it")
    summary = _reusable(run, num_samples, limit, (overrides or {}).get("data_dir"))
    if summary is None:
        summary = evaluate_run(run.path, num_samples, "test", limit,
                               data_dir=(overrides or {}).get("data_dir"),
                               device=(overrides or {}).get("device"), log=log)
    else:
        log(f"   {run.path}/eval.json already evaluates epoch {summary['epoch']} (K = {num_samples})")
    return make_row(config, run, reference, summary, scale)


def make_row(config: Path, run: RunDir, reference: dict[str, Any], summary: dict[str, Any],
             scale: float) -> dict[str, Any]:
    last, cfg = load_run(run.path)
    metrics = last["metrics"]
    best_epoch = summary["epoch"]
    at_best = next((r for r in metrics if r["epoch"] == best_epoch), metrics[-1])
    paper_nll = reference.get("nll")
    psis = summary.get("psis") or {}
    return {
        "config": str(config), "run_dir": str(run.path), "epochs_scale": scale,
        "paper": reference.get("paper"), "table": reference.get("table"),
        "paper_nll": paper_nll, "paper_epochs": reference.get("epochs"),
        "nll": summary["nll"], "stderr": summary["stderr"],
        "gap": None if paper_nll is None else summary["nll"] - paper_nll,
        "epochs": last["epoch"], "epochs_planned": cfg.epochs, "evaluated_epoch": best_epoch,
        "checkpoint": summary.get("checkpoint", "last"),
        "train_hours": last["wall_seconds"] / 3600,
        "hours_to_evaluated_epoch": at_best["wall_seconds"] / 3600,
        "eval_minutes": summary["seconds"] / 60, "device": summary["device"],
        "num_points": summary["num_points"], "num_samples": summary["num_samples"],
        "active_units": summary.get("active_units"), "latent_dim": summary.get("latent_dim"),
        "active_units_per_site": summary.get("active_units_per_site"),
        "active_units_text": describe_active_units(summary) if "active_units" in summary else None,
        "khat_median": psis.get("khat_median"), "share_khat_above_0.7": psis.get("share_khat_above_0.7"),
        "curve": [{"hours": r["wall_seconds"] / 3600, "test_nelbo": -r["test_elbo"]} for r in metrics],
    }


def _fmt(value, spec: str, empty: str = "-") -> str:
    return empty if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table (what README "Results" shows)."""
    lines = ["| config | paper (table) | paper NLL | ours NLL +- SE | gap | epochs (paper) | "
             "train time | device | active units | k-hat median / >0.7 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        epochs = f"{r['epochs']}" + (f" (best {r['evaluated_epoch']})" if r["checkpoint"] == "best" else "")
        share = r.get("share_khat_above_0.7")
        lines.append(
            f"| {Path(r['config']).name}{'' if r['epochs_scale'] == 1 else ' x' + format(r['epochs_scale'], 'g')} "
            f"| {r['paper'] or '-'}{' (' + r['table'] + ')' if r['table'] else ''} "
            f"| {_fmt(r['paper_nll'], '.2f')} | {r['nll']:.2f} +- {r['stderr']:.2f} "
            f"| {_fmt(r['gap'], '+.2f')} | {epochs} ({_fmt(r['paper_epochs'], 'd')}) "
            f"| {r['train_hours'] * 60:.0f} min | {r['device']} | {r['active_units_text'] or '-'} "
            f"| {_fmt(r['khat_median'], '.2f')} / {'-' if share is None else f'{100 * share:.0f}%'} |")
    detail = {r["num_samples"] for r in rows}, {r["num_points"] for r in rows}
    lines.append("")
    lines.append(f"NLL in nats on {', '.join(map(str, sorted(detail[1])))} test images, importance "
                 f"sampling with K = {', '.join(map(str, sorted(detail[0])))}; gap = ours - paper.")
    return "\n".join(lines) + "\n"


def write_table(rows: list[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    out_dir = make_directory(out_dir)
    paths = {"markdown": out_dir / f"{TABLE_NAME}.md", "json": out_dir / f"{TABLE_NAME}.json"}
    atomic_write(paths["markdown"], markdown_table(rows))
    atomic_write(paths["json"], json.dumps(rows, indent=2) + "\n")
    paths["figure"] = plot_reproduction(rows, out_dir / f"{TABLE_NAME}.png")
    return paths


def reproduce(configs: list[Path], runs_dir: Path, out_dir: Path, scale: float = 1.0,
              num_samples: int = 5000, limit: Optional[int] = None,
              overrides: Optional[dict[str, Any]] = None, train_runs: bool = True,
              log: Callable[[str], None] = log_line) -> dict[str, Path]:
    """Every config in turn (see :func:`reproduce_one`), then the table and figure."""
    for config in configs:  # every file is checked before hours of training start
        settings = scaled_settings(read_config_file(config)[0], scale)
        validate(Config(**{**settings, **(overrides or {})}))
    rows = [reproduce_one(Path(c), runs_dir, scale, num_samples, limit, overrides, train_runs, log)
            for c in configs]
    paths = write_table(rows, out_dir)
    log(markdown_table(rows))
    log(f"wrote {', '.join(str(p) for p in paths.values())}")
    return paths
