"""Reproducing published rows: train (or resume) each config, evaluate it, write one table.

A row is a YAML config whose ``reference`` mapping names the published result it stands beside
(``paper``, ``table``, ``nll``, ``epochs``; see ``configs/papers/``). For every config,
:func:`reproduce` trains the run in ``RUNS_DIR/<folder>-<name>`` (or resumes it: the run directory
persists, so a long protocol can be run across sessions), evaluates log p(x) on the test split
with K importance samples (the papers' protocol: the full 10,000 images, K = 5000), and writes
``reproduction.md``, ``reproduction.json`` and ``reproduction.png`` (test -ELBO against
training time per row, with the final NLL) into the output directory.

A table reports only what was run for its configs, so everything that could make a row report
another config's run is settled before anything trains (:func:`plan`):

- each run directory records the config file it was made from (:data:`SOURCE_NAME`, the file's
  resolved path); a second config file with the same folder and file name gets a run directory
  of its own (``<folder>-<name>-<8 hex digits of its path's SHA-256>``);
- a run is used only if the settings saved in its checkpoint are the config's (up to the keys a
  resume may change: :data:`~pyro_vae.config.RESUME_OVERRIDABLE`), else it is refused;
- an ``eval.json`` is reused only beside the very checkpoint it evaluated (its
  ``checkpoint_sha256``), and its fields are checked before they are tabulated.

The import paths a config names (a user prior or model) are imported for its run without
``--trust-import``: the config file is named by the user, as with ``svi_train.py --config``; and
the run's saved config is opened only after it was found to name the same paths.

``epochs_scale`` F shrinks a protocol in time: epochs, the iwae schedule's stages
(``lr_schedule_scale``), the KL warm-up and the early-stopping patience are all multiplied by
F, and the run directory gets the suffix ``-xF`` so it is never confused with the full protocol.
"""

from __future__ import annotations

import hashlib
import json
import math
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from pyro_vae.config import KEYS, RESUME_OVERRIDABLE, Config, coerce_overrides, import_paths, read_config_file, validate
from pyro_vae.core.atomic import atomic_write, make_directory
from pyro_vae.core.console import log_line
from pyro_vae.core.errors import CheckpointError, ConfigError, PyroVAEError, RunDirError, RunLockedError, WriteError
from pyro_vae.data import load_dataset
from pyro_vae.evaluation.evaluate import describe_active_units, evaluate_run
from pyro_vae.runs import results
from pyro_vae.runs.checkpoint import checkpoint_sha256, load_checkpoint
from pyro_vae.runs.lock import RunLock
from pyro_vae.runs.opening import checkpoint_path
from pyro_vae.runs.rundir import RunDir
from pyro_vae.training.trainer import train
from pyro_vae.viz.plots import plot_reproduction

TABLE_NAME = "reproduction"

# In a run directory made by reproduce: {"config": the resolved path of the config file}.
SOURCE_NAME = "reproduce_source.json"

# The keys of a config's ``reference`` mapping and what each must be.
REFERENCE_FIELDS = {"paper": "a string", "table": "a string", "nll": "a finite number",
                    "epochs": "a whole number of at least 1"}

# Keys in which a run may differ from its config and still be its run (what a resume may change).
MAY_DIFFER = frozenset(RESUME_OVERRIDABLE) | {"resume", "out"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: Any, least: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def check_reference(reference: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """``reference`` if each key is one of :data:`REFERENCE_FIELDS` with a value of its kind; a
    one-line ConfigError naming the key otherwise."""
    checks = {"paper": lambda v: isinstance(v, str), "table": lambda v: isinstance(v, str),
              "nll": lambda v: _is_number(v) and math.isfinite(v), "epochs": lambda v: _is_count(v, 1)}
    for key, value in reference.items():
        if key not in REFERENCE_FIELDS:
            raise ConfigError(f"unknown key {key!r} in the reference mapping of {path}; it may hold "
                              f"{', '.join(REFERENCE_FIELDS)}")
        if not checks[key](value):
            raise ConfigError(f"reference {key} in {path} must be {REFERENCE_FIELDS[key]}, got {value!r}")
    return reference


def check_scale(scale: float) -> float:
    if not (_is_number(scale) and math.isfinite(scale) and scale > 0):
        raise ConfigError(f"--epochs-scale must be a positive finite number, got {scale}")
    return scale


def scaled_settings(settings: dict[str, Any], scale: float) -> dict[str, Any]:
    """``settings`` with the protocol's length multiplied by ``scale`` (see the module doc)."""
    check_scale(scale)
    if scale == 1:
        return dict(settings)

    def scaled(key: str, default: float) -> float:
        value = (settings.get(key) or default) * scale
        if not math.isfinite(value):
            raise ConfigError(f"--epochs-scale {scale:g} makes {key} {settings.get(key) or default} "
                              "infinite; choose a smaller scale")
        return value

    out = dict(settings)
    out["epochs"] = max(1, round(scaled("epochs", Config.default("epochs"))))
    out["lr_schedule_scale"] = scaled("lr_schedule_scale", Config.default("lr_schedule_scale"))
    if settings.get("kl_warmup"):
        out["kl_warmup"] = scaled("kl_warmup", 0)
    if settings.get("early_stopping"):
        out["early_stopping"] = max(1, round(scaled("early_stopping", 0)))
    return out


def run_name(config: str | Path, scale: float, distinct: bool = False) -> str:
    """``papers-burda_1layer_vae_k1`` for configs/papers/burda_1layer_vae_k1.yaml (its folder and
    file name, wherever it is given from); ``distinct``: with 8 hex digits of the SHA-256 of the
    file's path appended, the run of a second config file of the same folder and file name;
    ``-x0.1`` appended for a scaled protocol."""
    source = Path(config).resolve()
    name = f"{source.parent.name}-{source.stem}" if source.parent.name else source.stem
    if distinct:
        name += "-" + hashlib.sha256(str(source).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return name if scale == 1 else f"{name}-x{scale:g}"


def read_json(path: Path, what: str) -> Any:
    """The JSON in ``path`` (None if there is no such file), or a one-line RunDirError: not a
    regular file, too large, not UTF-8 JSON (:func:`pyro_vae.runs.results.read_json`)."""
    if not path.exists() and not path.is_symlink():
        return None
    return results.read_json(path, f"delete it or {what}")


def settings_differences(saved: Any, expected: Config, source: str) -> list[str]:
    """The keys in which a checkpoint's saved config ``saved`` (read as data: nothing is imported)
    differs from ``expected``, as "key SAVED there, EXPECTED in the config", leaving out
    :data:`MAY_DIFFER`. Shared by reproduce and ``compare.py --sweep``."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{source} holds no config mapping")
    saved = Config.from_flat(**coerce_overrides(saved, where=source))
    return [f"{key} {saved.value(key)!r} there, {expected.value(key)!r} in the config"
            for key in KEYS if key not in MAY_DIFFER and saved.value(key) != expected.value(key)]


def check_same_settings(run: RunDir, expected: Config, config: str, why: str) -> dict[str, Any]:
    """The run's last checkpoint, if the settings saved in it (and in best.pt, which evaluation
    opens) are ``expected`` (see :func:`settings_differences`); otherwise a one-line ConfigError
    that ends with ``why`` (what the mismatch means and what to do)."""
    last = load_checkpoint(run.checkpoint_path)
    opened = [(run.path, run.checkpoint_path, last)]
    if run.best_path.exists():
        opened.append((run.best_path, run.best_path, load_checkpoint(run.best_path)))
    for where, path, state in opened:
        differences = settings_differences(state["config"], expected, str(path))
        if differences:
            shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
            raise ConfigError(f"{where} is a run of other settings than {config} ({shown}): {why}")
    return last


def _recorded_source(run: RunDir) -> Optional[Path]:
    """The config file that the run records it was made from (None if it records none)."""
    path = run.path / SOURCE_NAME
    record = read_json(path, "move the run away")
    if record is None:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("config"), str):
        raise RunDirError(f"{path} does not name a config file ({{\"config\": PATH}}); delete it or "
                          "move the run away")
    return Path(record["config"])


def _record_source(run: RunDir, source: Path) -> None:
    """Write :data:`SOURCE_NAME` (under the run's lock) unless it names ``source`` already."""
    if run.checkpoint_path.exists() and _recorded_source(run) != source:
        with run.lock():
            atomic_write(run.path / SOURCE_NAME, json.dumps({"config": str(source)}) + "\n")


@dataclass
class Row:
    """One config of a reproduction, its settings checked and its run directory chosen."""

    config: Path  # as the user gave it
    source: Path  # the file, resolved: the config's identity
    reference: dict[str, Any]
    settings: dict[str, Any]  # scaled, with the overrides
    cfg: Config  # the settings, validated
    run: RunDir
    scale: float  # --epochs-scale

    @property
    def trusted_imports(self) -> list[str]:
        """The import paths the config names: the user named the config (see the module doc)."""
        return list(import_paths(self.cfg.to_flat()).values())


def _choose_run(source: Path, runs_dir: Path, scale: float, claimed: dict[str, Path]) -> RunDir:
    """``<folder>-<name>``, or ``<folder>-<name>-<hash>`` where that belongs to another config
    file (it records another existing file, or another config of this command claims it)."""
    for distinct in (False, True):
        run = RunDir(runs_dir / run_name(source, scale, distinct))
        owner = claimed.get(run.path.name)
        if owner is None and run.checkpoint_path.exists():
            owner = _recorded_source(run)
            if owner is not None and owner != source and not owner.is_file():
                owner = None  # its config file is gone (moved or deleted): the settings decide
        if owner is None or owner == source:
            claimed[run.path.name] = source
            return run
    raise ConfigError(f"{run.path} belongs to the config {owner}, not to {source}; move it away or "
                      "use another --runs-dir")


def plan(configs: list[str | Path], runs_dir: Path, scale: float = 1.0,
         overrides: Optional[dict[str, Any]] = None, train_runs: bool = True,
         log: Callable[[str], None] = log_line) -> list[Row]:
    """Every config read, checked and given its run directory, every existing run checked
    against its config, before anything trains: a later config's mistake costs nothing."""
    check_scale(scale)
    rows: list[Row] = []
    seen: dict[Path, Path] = {}
    claimed: dict[str, Path] = {}
    for given in map(Path, configs):
        source = given.resolve()
        if source in seen:
            log(f"{given} is {seen[source]} again: its row is made once")
            continue
        seen[source] = given
        settings, reference = read_config_file(given)
        check_reference(reference, given)
        settings = {**scaled_settings(settings, scale), **(overrides or {})}
        cfg = validate(Config.from_flat(**settings))
        row = Row(given, source, reference, settings, cfg,
                  _choose_run(source, Path(runs_dir), scale, claimed), scale)
        if row.run.checkpoint_path.exists():
            recorded = _recorded_source(row.run) == source
            check_same_settings(row.run, cfg, str(given), (
                f"{given} was edited since the run was made from it; restore its settings, or move "
                "the run away to train the new ones") if recorded else (
                f"the run does not record its config, so it may be another config's; move it away "
                f"or use another --runs-dir (or restore the settings if it is the run of {given})"))
            _evaluation_of(row.run, load_checkpoint(checkpoint_path(row.run.path, "best")))
        elif not train_runs:
            raise ConfigError(f"{row.run.path} holds no run of {given} to evaluate; drop --no-train "
                              "to train it")
        rows.append(row)
    return rows


# What make_row reads from an eval.json, and what each must be (null: a non-finite estimate).
def _number_or_null(v):
    return v is None or _is_number(v)


def _names_to_counts(v):
    return isinstance(v, dict) and all(isinstance(k, str) and _is_count(n) for k, n in v.items())


SUMMARY_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "nll": (_number_or_null, "a number"),
    "stderr": (_number_or_null, "a number"),
    "epoch": (_is_count, "a whole number"),
    "num_points": (lambda v: _is_count(v, 1), "a whole number of at least 1"),
    "num_samples": (lambda v: _is_count(v, 1), "a whole number of at least 1"),
    "seconds": (lambda v: _is_number(v) and math.isfinite(v) and v >= 0, "a number of seconds"),
    "device": (lambda v: isinstance(v, str), "a string"),
    "split": (lambda v: isinstance(v, str), "a string"),
    "checkpoint": (lambda v: v in ("best", "last"), "'best' or 'last'"),
}
OPTIONAL_SUMMARY_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "psis": (lambda v: v is None or (isinstance(v, dict) and all(
        _number_or_null(v.get(k)) for k in ("khat_median", "share_khat_above_0.7"))),
        "a mapping with khat_median and share_khat_above_0.7 numbers"),
    "active_units": (_is_count, "a whole number"),
    "latent_dim": (lambda v: _is_count(v, 1), "a whole number of at least 1"),
    "active_units_per_site": (_names_to_counts, "a mapping of site names to whole numbers"),
    "latent_dim_per_site": (_names_to_counts, "a mapping of site names to whole numbers"),
}


def check_summary(summary: dict[str, Any], path: Path) -> dict[str, Any]:
    """``summary`` (an eval.json) if every field that a row reads is of its kind; a one-line
    RunDirError naming the file and the field otherwise."""
    def refuse(key: str, kind: str) -> RunDirError:
        return RunDirError(f"{path}: {key} must be {kind}, got {summary.get(key)!r}; delete it (it "
                           "is evaluated again) or run scripts/evaluate.py again")
    for key, (ok, kind) in SUMMARY_FIELDS.items():
        if not ok(summary.get(key, ...)):
            raise refuse(key, kind)
    for key, (ok, kind) in OPTIONAL_SUMMARY_FIELDS.items():
        if key in summary and not ok(summary[key]):
            raise refuse(key, kind)
    if "active_units" in summary and "latent_dim" not in summary:
        raise refuse("latent_dim", "given with active_units")
    per_site = summary.get("active_units_per_site") or {}
    if len(per_site) > 1 and not set(per_site) <= set(summary.get("latent_dim_per_site") or {}):
        raise refuse("latent_dim_per_site", "a size for every site of active_units_per_site")
    return summary


def _evaluation_of(run: RunDir, state: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The run's eval.json if it evaluated the checkpoint ``state`` (its ``checkpoint_sha256``),
    its fields checked; None if there is none, or it evaluated another checkpoint (or is from a
    pyro-vae that did not record which)."""
    path = run.path / "eval.json"
    summary = read_json(path, "run scripts/evaluate.py again")
    if summary is None:
        return None
    if not isinstance(summary, dict):
        raise RunDirError(f"{path} holds no JSON object; delete it or run scripts/evaluate.py again")
    if summary.get("checkpoint_sha256") != checkpoint_sha256(state):
        return None
    return check_summary(summary, path)


def _reusable(row: Row, num_samples: int, limit: Optional[int]) -> Optional[dict[str, Any]]:
    """The run's eval.json if it evaluated the checkpoint now on disk the way asked."""
    state = load_checkpoint(checkpoint_path(row.run.path, "best"))
    summary = _evaluation_of(row.run, state)
    if summary is None or (summary["split"], summary["num_samples"], summary["epoch"]) != (
            "test", num_samples, state["epoch"]):
        return None
    if limit is None or summary["num_points"] != limit:  # as many as the test split holds?
        test = load_dataset(row.cfg.data.dataset, row.cfg.data.data_dir, limit_train=1).test
        if summary["num_points"] != len(test[:limit]):
            return None
    return summary


def reproduce_one(row: Row, num_samples: int = 5000, limit: Optional[int] = None,
                  train_runs: bool = True, log: Callable[[str], None] = log_line) -> dict[str, Any]:
    """Train or resume ``row``'s run, evaluate it, and return its table row."""
    run = row.run
    if train_runs:
        resuming = run.checkpoint_path.exists()
        if resuming:
            _record_source(run, row.source)
        log(f"== {row.config}: {'resuming' if resuming else 'training'} {run.path}")
        where = {"resume": str(run.path)} if resuming else {"out": str(run.path)}
        try:
            trainer = train({**row.settings, "plots": False, **where}, log=log)
        except BaseException:  # a new run that saved an epoch records its config all the same
            if not resuming and run.checkpoint_path.exists():
                with suppress(PyroVAEError, OSError):
                    _record_source(run, row.source)
            raise
        _record_source(run, row.source)
        if trainer.stopped_early():
            log(f"   stopped early: {trainer.stop_reason()}")
    summary = _reusable(row, num_samples, limit)
    if summary is None:
        summary = evaluate_run(run.path, num_samples, "test", limit, data_dir=row.cfg.data.data_dir,
                               device=row.cfg.run.device, log=log, trusted_imports=row.trusted_imports)
    else:
        log(f"   {run.path}/eval.json already evaluates epoch {summary['epoch']} (K = {num_samples})")
    return make_row(row, load_checkpoint(run.checkpoint_path), summary)


def _finite_or_nan(value: Any) -> float:
    return float(value) if _is_number(value) else math.nan


def make_row(row: Row, last: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """The table row of ``row``: its reference, the run's last checkpoint ``last`` and the
    evaluation ``summary`` (a non-finite estimate is NaN here, null in the JSON)."""
    reference = row.reference
    metrics = last["metrics"]
    best_epoch = summary["epoch"]
    at_best = next((r for r in metrics if r["epoch"] == best_epoch), metrics[-1])
    paper_nll = reference.get("nll")
    nll, stderr = _finite_or_nan(summary["nll"]), _finite_or_nan(summary["stderr"])
    psis = summary.get("psis") or {}
    return {
        "config": str(row.config), "run_dir": str(row.run.path), "epochs_scale": row.scale,
        "paper": reference.get("paper"), "table": reference.get("table"),
        "paper_nll": paper_nll, "paper_epochs": reference.get("epochs"),
        "nll": nll, "stderr": stderr,
        "gap": None if paper_nll is None else nll - paper_nll,
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
    """The rows as a markdown table (what docs/results.md shows)."""
    lines = ["| config | paper (table) | paper NLL | ours NLL +- SE | gap | epochs (paper) | "
             "train time | device | active units | k-hat median / >0.7 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        epochs = f"{r['epochs']}" + (f" (best {r['evaluated_epoch']})" if r["checkpoint"] == "best" else "")
        share = r.get("share_khat_above_0.7")
        lines.append(
            f"| {_cell(Path(r['config']).name)}{'' if r['epochs_scale'] == 1 else ' x' + format(r['epochs_scale'], 'g')} "
            f"| {_cell(r['paper'] or '-')}{' (' + _cell(r['table']) + ')' if r['table'] else ''} "
            f"| {_fmt(r['paper_nll'], '.2f')} | {_fmt(r['nll'], '.2f', 'not finite')} +- {_fmt(r['stderr'], '.2f')} "
            f"| {_fmt(r['gap'], '+.2f')} | {epochs} ({_fmt(r['paper_epochs'], 'd')}) "
            f"| {r['train_hours'] * 60:.0f} min | {_cell(r['device'])} | {r['active_units_text'] or '-'} "
            f"| {_fmt(r['khat_median'], '.2f')} / {'-' if share is None else f'{100 * share:.0f}%'} |")
    detail = {r["num_samples"] for r in rows}, {r["num_points"] for r in rows}
    lines.append("")
    lines.append(f"NLL in nats on {', '.join(map(str, sorted(detail[1])))} test images, importance "
                 f"sampling with K = {', '.join(map(str, sorted(detail[0])))}; gap = ours - paper.")
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


def reproduce(configs: list[str | Path], runs_dir: Path, out_dir: Path, scale: float = 1.0,
              num_samples: int = 5000, limit: Optional[int] = None,
              overrides: Optional[dict[str, Any]] = None, train_runs: bool = True,
              log: Callable[[str], None] = log_line) -> dict[str, Path]:
    """Every config in turn (see :func:`reproduce_one`), then the table and figure. Everything
    is checked first (:func:`plan`), the output directory included."""
    planned = plan(configs, Path(runs_dir), scale, overrides, train_runs, log)
    with RunLock(make_directory(out_dir)):  # not written by another process now (held again below)
        pass
    rows = [reproduce_one(row, num_samples, limit, train_runs, log) for row in planned]
    try:
        paths = write_table(rows, Path(out_dir))
    except (RunLockedError, WriteError) as e:
        kept = (f"{e}. Every run and its eval.json are saved: run the same command again with "
                "--no-train to write the table")
        raise (WriteError(kept, e.errno) if isinstance(e, WriteError) else RunLockedError(kept)) from None
    log(markdown_table(rows))
    log(f"wrote {', '.join(str(p) for p in paths.values())}")
    return paths
