"""The run directory: the one place a run's outputs live, and what later commands read.

Layout (every later command takes the directory)::

    runs/<name>/
      config.yaml     the resolved configuration: a copy of the checkpoint's (see read_config)
      metrics.jsonl   one JSON object per finished epoch
      checkpoint.pt   model, prior and optimizer state, epoch, RNG state, config, metrics
      best.pt         the same, of the epoch with the best validation ELBO (runs with one)
      .lock           locked by the process that writes the directory (see runlock.py)
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Optional

import yaml

from pyro_vae.config import read_yaml
from pyro_vae.core.atomic import atomic_write
from pyro_vae.core.commands import resume_command
from pyro_vae.core.errors import ConfigError, RunDirError
from pyro_vae.core.options import option
from pyro_vae.runs.checkpoint import load_checkpoint
from pyro_vae.runs.checkpoint_schema import METRIC_KEYS  # what every line of metrics.jsonl holds
from pyro_vae.runs.lock import LOCK_NAME, RunLock


def _is_leftover(name: str) -> bool:
    """Files an interrupted pyro-vae process may leave in a directory that holds no run yet:
    the lock file and temporary files of atomic writes. They do not make it "not empty"."""
    return name == LOCK_NAME or (name.startswith(".") and name.endswith(".tmp"))


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.yaml")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    checkpoint_path = property(lambda self: self.path / "checkpoint.pt")
    best_path = property(lambda self: self.path / "best.pt")

    @classmethod
    def new(cls, out: Optional[str]) -> "RunDir":
        """The directory for a new run: ``out``, or ``runs/<timestamp>``; not created yet.

        Checked before any data is loaded, so pointing ``--out`` at an existing run fails at
        once: a run directory is never overwritten.
        """
        if out is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path, i = Path("runs") / stamp, 1
            while path.exists():
                path, i = Path("runs") / f"{stamp}-{i}", i + 1
        else:
            path = Path(out)
        run = cls(path)
        run.check_new()
        return run

    def check_new(self) -> None:
        """Refuse a directory that holds a run or anything else: a new run writes config.yaml,
        metrics.jsonl, figures/ and more, and must not overwrite a file of the user's."""
        path = self.path
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{option('out', str(path))} is a file, not a directory")
        if self.checkpoint_path.exists() or self.metrics_path.exists():
            raise ConfigError(f"{path} already holds a run. Continue it with {resume_command(path)}, "
                              f"or choose another {option('out')}.")
        if not path.exists():
            return
        try:
            others = sorted(p.name for p in path.iterdir() if not _is_leftover(p.name))
        except OSError as e:
            raise ConfigError(f"cannot read {option('out', str(path))}: {e.strerror}") from None
        if others:
            shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            raise ConfigError(f"{option('out', str(path))} is not empty (it holds {shown}); a new run needs a "
                              "new or empty directory so that none of your files is overwritten. "
                              f"Choose another {option('out')}.")

    def require(self, flag: str = "the run directory") -> "RunDir":
        """This run, if its path is a directory: a file or a missing path is named in one line."""
        if not self.path.is_dir():
            what = "a file" if self.path.exists() else "missing"
            raise RunDirError(f"{flag} {self.path} is {what}: name a run directory (the folder "
                              "that holds checkpoint.pt)")
        return self

    def make(self) -> bool:
        """Create the directory; True if it did not exist before."""
        existed = self.path.is_dir()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the run directory {self.path}: {e.strerror}") from None
        return not existed

    def lock(self) -> RunLock:
        """``with run.lock():`` makes this process the directory's only writer."""
        return RunLock(self.path)

    def checkpoint_signature(self) -> Optional[tuple[int, int, int]]:
        """Identifies the checkpoint file on disk (each atomic write makes a new file): a process
        that read it can tell, once it holds the lock, whether another wrote it since."""
        try:
            st = os.stat(self.checkpoint_path)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write(self.config_path, yaml.safe_dump(config, sort_keys=False))

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        """Rewrite the whole file: after a resume it matches the checkpoint's history exactly."""
        atomic_write(self.metrics_path, _metrics_text(records))

    def agree_with_checkpoint(self, state: dict[str, Any]) -> list[str]:
        """Rewrite config.yaml and metrics.jsonl where they differ from the checkpoint ``state``
        read from this directory; returns the names of the files rewritten.

        The checkpoint is the run's single source of truth; the two files are copies written
        after it, so a process killed between the writes (a resume with a new --lr, say) leaves
        them one epoch behind. Called by the process that opens the run for writing, holding
        its lock; files that agree are left as they are (not even rewritten)."""
        rewritten = []
        if self._config_on_disk() != state["config"]:
            self.write_config(state["config"])
            rewritten.append(self.config_path.name)
        try:
            metrics = self.metrics_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            metrics = None
        if metrics != _metrics_text(state["metrics"]):
            self.write_metrics(state["metrics"])
            rewritten.append(self.metrics_path.name)
        return rewritten

    def _config_on_disk(self) -> Any:
        """config.yaml's data, or None where it is missing or unreadable."""
        try:
            return read_yaml(self.config_path, "run config")
        except ConfigError:
            return None

    def read_config(self) -> dict[str, Any]:
        """The run's config as a mapping (read as data: nothing in it is imported or run).

        The checkpoint's config where the run has a checkpoint: it is the source of truth, and
        config.yaml, written after it, may be one epoch behind after a crash between the two
        writes (see :meth:`agree_with_checkpoint`). config.yaml only where there is none."""
        if self.checkpoint_path.exists():
            return load_checkpoint(self.checkpoint_path)["config"]
        config = read_yaml(self.config_path, "run config")
        if not isinstance(config, dict):
            raise RunDirError(f"{self.config_path} must hold a mapping of config keys to values")
        return config

    def read_metrics(self) -> list[dict[str, Any]]:
        """The records of metrics.jsonl, each checked to hold :data:`METRIC_KEYS` as numbers."""
        if not self.metrics_path.exists():
            return []
        try:
            lines = self.metrics_path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise RunDirError(f"cannot read {self.metrics_path}: {e}") from None
        records = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise RunDirError(f"{self.metrics_path}, line {number}: not JSON ({e.msg}); fix or "
                                  "delete that line") from None
            bad = [k for k in METRIC_KEYS if not isinstance(record, dict) or not _is_number(record.get(k))]
            if bad:
                raise RunDirError(f"{self.metrics_path}, line {number}: {', '.join(bad)} missing or "
                                  "not a number; fix or delete that line")
            records.append(record)
        return records


def _metrics_text(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not (
        isinstance(value, float) and math.isnan(value))
