"""Which config's run is where, settled before anything trains.

A reproduction table reports only what was run for its configs, so everything that could make
a row report another config's run is settled first (:func:`plan`):

- each run directory records the config file it was made from (:data:`SOURCE_NAME`, the file's
  resolved path); a second config file with the same folder and file name gets a run directory
  of its own (``<folder>-<name>-<8 hex digits of its path's SHA-256>``);
- a run is used only if the settings saved in its checkpoint are the config's
  (:func:`~pyro_vae.studies.protocol_settings.check_same_settings`), else it is refused;
- an existing ``eval.json`` is checked too (:mod:`.reused_evaluations`).

A later config's mistake so costs nothing: no earlier config has trained yet.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from pyro_vae.config import Config, import_paths, read_config_file, validate
from pyro_vae.core.atomic import atomic_write
from pyro_vae.core.console import log_line
from pyro_vae.core.errors import ConfigError, RunDirError
from pyro_vae.core.options import option
from pyro_vae.runs import RunDir, checkpoint_path, load_checkpoint
from pyro_vae.studies.protocol_settings import check_reference, check_same_settings, check_scale, scaled_settings
from pyro_vae.studies.reused_evaluations import evaluation_of, read_json

# In a run directory made by reproduce: {"config": the resolved path of the config file}.
SOURCE_NAME = "reproduce_source.json"


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


def record_source(run: RunDir, source: Path) -> None:
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
                      f"use another {option('runs_dir')}")


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
                f"or use another {option('runs_dir')} (or restore the settings if it is the run of {given})"))
            evaluation_of(row.run, load_checkpoint(checkpoint_path(row.run.path, "best")))
        elif not train_runs:
            raise ConfigError(f"{row.run.path} holds no run of {given} to evaluate; drop "
                              f"{option('no_train', python='train_runs=False')} to train it")
        rows.append(row)
    return rows
