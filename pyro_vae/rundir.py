"""The run directory: the one place a run's outputs live, and what later commands read.

Layout (every later command takes the directory)::

    runs/<name>/
      config.yaml     the resolved configuration (defaults + file + flags)
      metrics.jsonl   one JSON object per finished epoch
      checkpoint.pt   model, prior and optimizer state, epoch, RNG state, config, metrics
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import yaml

from .atomic import atomic_write
from .errors import ConfigError


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.yaml")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    checkpoint_path = property(lambda self: self.path / "checkpoint.pt")

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
        if run.checkpoint_path.exists() or run.metrics_path.exists():
            raise ConfigError(f"{path} already holds a run. Continue it with --resume {path}, "
                              "or choose another --out.")
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--out {path} is a file, not a directory")
        return run

    def make(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the run directory {self.path}: {e.strerror}") from None

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write(self.config_path, yaml.safe_dump(config, sort_keys=False))

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        """Rewrite the whole file: after a resume it matches the checkpoint's history exactly."""
        atomic_write(self.metrics_path, "".join(json.dumps(r) + "\n" for r in records))

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line]
