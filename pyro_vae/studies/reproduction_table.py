"""The reproduction table: one row per config (its reference beside what the run reached), as
markdown (what docs/results.md shows), strict JSON, and a figure (:func:`~pyro_vae.viz.plot_reproduction`).

Apart from running the protocols (:mod:`.reproduction`) so that a table can be remade from the
runs and their ``eval.json`` without training or evaluating anything (``--no-train``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pyro_vae.core.atomic import atomic_write, make_directory
from pyro_vae.evaluation import describe_active_units
from pyro_vae.runs import RunLock
from pyro_vae.studies.protocol_settings import is_number
from pyro_vae.studies.reproduction_plan import Row
from pyro_vae.viz import plot_reproduction

TABLE_NAME = "reproduction"


def _finite_or_nan(value: Any) -> float:
    return float(value) if is_number(value) else math.nan


def make_row(row: Row, last: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """The table row of ``row``: its reference, the run's last checkpoint ``last`` and the
    evaluation ``summary`` (a non-finite estimate is NaN here, null in the JSON)."""
    reference = row.reference
    metrics = last["metrics"]
    best_epoch = summary["epoch"]
    at_best = next((r for r in metrics if r["epoch"] == best_epoch), metrics[-1])
    paper_nll, paper_train = reference.get("nll"), reference.get("train_elbo")
    trained = [r["train_elbo"] for r in metrics if "train_elbo" in r]  # with --train-elbo
    best_train = max(trained) if trained else None
    nll, stderr = _finite_or_nan(summary["nll"]), _finite_or_nan(summary["stderr"])
    psis = summary.get("psis") or {}
    return {
        "config": str(row.config), "run_dir": str(row.run.path), "epochs_scale": row.scale,
        "paper": reference.get("paper"), "table": reference.get("table"),
        "paper_nll": paper_nll, "paper_epochs": reference.get("epochs"),
        "nll": nll, "stderr": stderr,
        "gap": None if paper_nll is None else nll - paper_nll,
        "paper_train_elbo": paper_train, "best_train_elbo": best_train,
        "train_elbo_gap": None if paper_train is None or best_train is None else best_train - paper_train,
        "paper_accuracy": reference.get("accuracy"), "accuracy": summary.get("accuracy"),
        "paper_bits_per_dim": reference.get("bits_per_dim"), "bits_per_dim": summary.get("bits_per_dim"),
        "epochs": last["epoch"], "epochs_planned": row.cfg.optim.epochs, "evaluated_epoch": best_epoch,
        "checkpoint": summary["checkpoint"],
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


def _cell(text: str) -> str:
    """Text as one markdown table cell: a '|' or a line break would split the row."""
    return " ".join(str(text).replace("|", "\\|").split())


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table (what docs/results.md shows). Where a reference gives the
    paper's best training ELBO (the discrete-VAE papers' measure), two columns set ours beside it;
    where one gives a test accuracy (the semi-supervised papers'), two more; where a run is of
    8-bit data, its bits/dim beside the paper's."""
    with_train = any(r.get("paper_train_elbo") is not None for r in rows)
    with_accuracy = any(r.get("paper_accuracy") is not None for r in rows)
    with_bits = any(r.get("bits_per_dim") is not None or r.get("paper_bits_per_dim") is not None for r in rows)
    lines = ["| config | paper (table) | paper NLL | ours NLL +- SE | gap | epochs (paper) | "
             "train time | device | active units | k-hat median / >0.7 |"
             + (" paper best train ELBO | ours (gap) |" if with_train else "")
             + (" paper test accuracy | ours |" if with_accuracy else "")
             + (" paper bits/dim | ours |" if with_bits else ""),
             "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if with_train else "")
             + ("---|---|" if with_accuracy else "") + ("---|---|" if with_bits else "")]
    for r in rows:
        epochs = f"{r['epochs']}" + (f" (best {r['evaluated_epoch']})" if r["checkpoint"] == "best" else "")
        share = r.get("share_khat_above_0.7")
        lines.append(
            f"| {_cell(Path(r['config']).name)}{'' if r['epochs_scale'] == 1 else ' x' + format(r['epochs_scale'], 'g')} "
            f"| {_cell(r['paper'] or '-')}{' (' + _cell(r['table']) + ')' if r['table'] else ''} "
            f"| {_fmt(r['paper_nll'], '.2f')} | {_fmt(r['nll'], '.2f', 'not finite')} +- {_fmt(r['stderr'], '.2f')} "
            f"| {_fmt(r['gap'], '+.2f')} | {epochs} ({_fmt(r['paper_epochs'], 'd')}) "
            f"| {r['train_hours'] * 60:.0f} min | {_cell(r['device'])} | {r['active_units_text'] or '-'} "
            f"| {_fmt(r['khat_median'], '.2f')} / {'-' if share is None else f'{100 * share:.0f}%'} |"
            + (f" {_fmt(r.get('paper_train_elbo'), '.2f')} | {_fmt(r.get('best_train_elbo'), '.2f')}"
               f" ({_fmt(r.get('train_elbo_gap'), '+.2f')}) |" if with_train else "")
            + (f" {_fmt(r.get('paper_accuracy'), '.4f')} | {_fmt(r.get('accuracy'), '.4f')} |"
               if with_accuracy else "")
            + (f" {_fmt(r.get('paper_bits_per_dim'), '.3f')} | {_fmt(r.get('bits_per_dim'), '.3f')} |"
               if with_bits else ""))
    detail = {r["num_samples"] for r in rows}, {r["num_points"] for r in rows}
    lines.append("")
    lines.append(f"NLL in nats on {', '.join(map(str, sorted(detail[1])))} test images, importance "
                 f"sampling with K = {', '.join(map(str, sorted(detail[0])))}; gap = ours - paper."
                 + (" Training ELBO: the best epoch's one-sample ELBO of the whole training split "
                    "(--train-elbo), higher is better." if with_train else ""))
    return "\n".join(lines) + "\n"


def _strict_json(value: Any) -> Any:
    """NaN as null: reproduction.json stays strict JSON."""
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict_json(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_table(rows: list[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    """reproduction.md, .json and .png into ``out_dir``, holding its lock (see RunLock)."""
    out_dir = make_directory(out_dir)
    with RunLock(out_dir):
        paths = {"markdown": out_dir / f"{TABLE_NAME}.md", "json": out_dir / f"{TABLE_NAME}.json"}
        atomic_write(paths["markdown"], markdown_table(rows))
        atomic_write(paths["json"], json.dumps(_strict_json(rows), indent=2) + "\n")
        drawn = [{**r, "config": r["config"].replace("$", r"\$")} for r in rows  # no mathtext
                 if math.isfinite(r["nll"]) and math.isfinite(r["stderr"])]
        paths["figure"] = plot_reproduction(drawn, out_dir / f"{TABLE_NAME}.png")
    return paths
