"""Reproducing published rows: train (or resume) each config, evaluate it, write one table.

A row is a YAML config whose ``reference`` mapping names the published result it stands beside
(``paper``, ``table``, ``nll``, ``epochs``; see ``configs/papers/``). For every config,
:func:`reproduce` trains the run in ``RUNS_DIR/<folder>-<name>`` (or resumes it: the run directory
persists, so a long protocol can be run across sessions), evaluates log p(x) on the test split
with K importance samples (the papers' protocol: the full 10,000 images, K = 5000), and writes
``reproduction.md``, ``reproduction.json`` and ``reproduction.png`` (test -ELBO against
training time per row, with the final NLL) into the output directory.

Everything that could make a row report another config's run is settled before anything trains
(:mod:`.reproduction_plan`); a protocol's settings and their scaling in time are
:mod:`.protocol_settings`'; an evaluation is reused only beside its own checkpoint
(:mod:`.reused_evaluations`); the table is :mod:`.reproduction_table`'s. This module runs them.

The import paths a config names (a user prior or model) are imported for its run without
``--trust-import``: the config file is named by the user, as with ``svi_train.py --config``; and
the run's saved config is opened only after it was found to name the same paths.
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import Any, Callable, Optional

from pyro_vae.core.atomic import make_directory
from pyro_vae.core.console import log_line
from pyro_vae.core.errors import PyroVAEError, RunLockedError, WriteError
from pyro_vae.core.options import option, uses_flags
from pyro_vae.evaluation import evaluate_run
from pyro_vae.runs import RunLock, load_checkpoint
from pyro_vae.studies.reproduction_plan import Row, plan, record_source
from pyro_vae.studies.reproduction_table import make_row, markdown_table, write_table
from pyro_vae.studies.reused_evaluations import reusable
from pyro_vae.training.trainer import train


def reproduce_one(row: Row, num_samples: int = 5000, limit: Optional[int] = None,
                  train_runs: bool = True, log: Callable[[str], None] = log_line) -> dict[str, Any]:
    """Train or resume ``row``'s run, evaluate it, and return its table row."""
    run = row.run
    if train_runs:
        resuming = run.checkpoint_path.exists()
        if resuming:
            record_source(run, row.source)
        log(f"== {row.config}: {'resuming' if resuming else 'training'} {run.path}")
        where = {"resume": str(run.path)} if resuming else {"out": str(run.path)}
        try:
            trainer = train({**row.settings, "plots": False, **where}, log=log)
        except BaseException:  # a new run that saved an epoch records its config all the same
            if not resuming and run.checkpoint_path.exists():
                with suppress(PyroVAEError, OSError):
                    record_source(run, row.source)
            raise
        record_source(run, row.source)
        if trainer.stopped_early():
            log(f"   stopped early: {trainer.stop_reason()}")
    summary = reusable(row, num_samples, limit)
    if summary is None:
        summary = evaluate_run(run.path, num_samples, "test", limit, data_dir=row.cfg.data.data_dir,
                               device=row.cfg.run.device, log=log, trusted_imports=row.trusted_imports)
    else:
        log(f"   {run.path}/eval.json already evaluates epoch {summary['epoch']} (K = {num_samples})")
    return make_row(row, load_checkpoint(run.checkpoint_path), summary)


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
        again = "run the same command again" if uses_flags() else "call reproduce again"
        kept = (f"{e}. Every run and its eval.json are saved: {again} with "
                f"{option('no_train', python='train_runs=False')} to write the table")
        raise (WriteError(kept, e.errno) if isinstance(e, WriteError) else RunLockedError(kept)) from None
    log(markdown_table(rows))
    log(f"wrote {', '.join(str(p) for p in paths.values())}")
    return paths
