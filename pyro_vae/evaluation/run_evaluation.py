"""Evaluating a run directory: open its checkpoint, estimate log p(x), write ``eval.json``.

Everything that could stop the results from being written (the output directory's lock, a
read-only or full disk) is checked before any work, so that hours of evaluation are never lost
at the end (:func:`open_for_evaluation`, shared with AIS and BDMC: :mod:`.evaluate_ais`). The
estimator itself knows nothing of run directories (:mod:`.iwae`); this module is the bridge.
"""

from __future__ import annotations

import errno
import shutil
import sys
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch
from torch import nn

from pyro_vae.core.atomic import atomic_write, make_directory
from pyro_vae.core.console import log_line
from pyro_vae.core.distributed import log_on_main, main_first, on_main, ranks, resolve_device, together
from pyro_vae.core.errors import WriteError
from pyro_vae.core.options import option
from pyro_vae.evaluation.diagnostics import describe
from pyro_vae.evaluation.iwae import PointEstimates, evaluate_model
from pyro_vae.evaluation.memory import AUTO_MEMORY
from pyro_vae.models import build_model
from pyro_vae.models.model_data import load_model_data
from pyro_vae.runs import (
    RunDir,
    RunLock,
    checkpoint_path,
    checkpoint_sha256,
    load_checkpoint,
    load_weights,
    save_result,
)
from pyro_vae.runs.opening import run_config


def save_results(directory: Path, summary: dict, points: PointEstimates) -> None:
    """``eval.json`` and ``eval_points.npz`` (see :func:`~pyro_vae.runs.results.save_result`)."""
    arrays = {"log_px": points.log_px, "elbo": points.elbo, "khat": points.khat, "ess": points.ess}
    save_result(directory, "eval", summary, arrays)


def check_writable(directory: Path, num_points: int) -> None:
    """Fail now, not after hours of work, if the results cannot be written into ``directory``:
    a probe file is written and removed, and the free space must hold the results."""
    probe = directory / ".write-probe"
    atomic_write(probe, b"probe")
    probe.unlink(missing_ok=True)
    needed = 4 * 8 * num_points + 2**16  # four float64 columns per point, and eval.json
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise WriteError(f"could not write into {directory}: the disk is full ({free} bytes free, "
                         f"the results need about {needed})", errno.ENOSPC)


@dataclass
class OpenedRun:
    """A trained run made ready for evaluation (see :func:`open_for_evaluation`)."""

    run: RunDir
    target: Path  # where the results go
    state: dict  # the checkpoint
    cfg: object  # the run's Config, with the overrides
    model: nn.Module  # with the checkpoint's weights, on the device
    x: torch.Tensor  # the images to evaluate
    which: str  # "best" or "last"
    description: str  # "runs/x (best.pt, epoch 12)"
    labels: Optional[torch.Tensor] = None  # the classes of x, where the dataset has labels

    def provenance(self) -> dict:
        """What every result file records about the checkpoint it evaluated: its epoch, which
        file ("best"/"last") and its SHA-256 (``checkpoint_sha256``), so that a result is reused
        or compared only beside the very checkpoint it belongs to."""
        return {"epoch": self.state["epoch"], "checkpoint": self.which,
                "checkpoint_sha256": checkpoint_sha256(self.state)}


@contextmanager
def open_for_evaluation(run_dir: str | Path, split: str = "test", limit: Optional[int] = None,
                        device: Optional[str] = None, data_dir: Optional[str] = None,
                        out_dir: str | Path | None = None, trusted_imports: Iterable[str] = (),
                        checkpoint: str = "best"):
    """Open a run for an evaluation whose results go to ``out_dir`` (default: the run
    directory): the output directory is locked and checked for writing before any work, and
    the model is built with the checkpoint's weights. ``checkpoint``: "best" (best.pt, the epoch
    with the best validation ELBO, where the run has one; else the last) or "last".

    In a torchrun job rank 0 alone reads the checkpoint, locks ``out_dir`` and writes there; the
    other ranks get the checkpoint from it and load the data themselves."""
    run = RunDir(run_dir)
    target = Path(out_dir) if out_dir is not None else run.path
    overrides = {k: v for k, v in {"device": device, "data_dir": data_dir}.items() if v is not None}

    def read() -> tuple[str, dict]:
        path = checkpoint_path(run_dir, checkpoint)
        return path.name, load_checkpoint(path)
    name, state = on_main(read)
    cfg = together(lambda: run_config(state, run_dir, overrides, trusted_imports,
                                      source=str(run.path / name)))
    which = "best" if name == run.best_path.name else "last"
    with ExitStack() as stack:
        # everything that could stop the results from being written, before the work
        on_main(_nothing_computed(lambda: stack.enter_context(RunLock(make_directory(target)))),
                shared=False)
        torch_device = together(lambda: resolve_device(cfg.run.device))
        data = main_first(lambda: load_model_data(cfg, torch_device, limit_train=None,
                                                  limit_test=limit if split == "test" else None))
        x = together(lambda: data.split(split)[:limit])
        labels = data.split_labels(split)
        on_main(_nothing_computed(lambda: check_writable(target, len(x))))
        model = build_model(cfg, data.image_shape, dequantized=data.dequantized).to(torch_device)
        together(lambda: load_weights(model, state["model"], run.path))
        note = " (the run has no best.pt: no validation split)" if checkpoint == "best" != which else ""
        yield OpenedRun(run, target, state, cfg, model, x, which,
                        f"{run.path} ({name}, epoch {state['epoch']}{note})",
                        None if labels is None else labels[:limit])


def show_progress(progress: Optional[bool]) -> bool:
    """A progress bar on rank 0 only; by default when stderr is a terminal."""
    return ranks().main and (sys.stderr.isatty() if progress is None else progress)


def _nothing_computed(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn``, with a WriteError's message saying that nothing was computed and what to do."""
    def checked():
        try:
            return fn()
        except WriteError as e:
            raise WriteError(f"{e}. Nothing was computed; pass {option('out', 'DIR', python='out_dir')} to "
                             "write the results elsewhere", e.errno) from None
    return checked


def evaluate_run(run_dir: str | Path, num_samples: int = 5000, split: str = "test",
                 limit: Optional[int] = None, batch_size: int = 100, device: Optional[str] = None,
                 seed: Optional[int] = None, max_memory: int | str = AUTO_MEMORY,
                 data_dir: Optional[str] = None, log: Callable[[str], None] = log_line,
                 progress: Optional[bool] = None, out_dir: str | Path | None = None,
                 trusted_imports: Iterable[str] = (), checkpoint: str = "best",
                 exact_discrete: bool = True) -> dict:
    """Evaluate a checkpoint in ``run_dir``; write ``eval.json`` and ``eval_points.npz`` into
    ``out_dir`` (default: the run directory). ``checkpoint`` as for :func:`open_for_evaluation`.

    The report is logged before the files are written, and a failed write falls back to a
    temporary directory (:func:`save_results`). ``trusted_imports`` as for
    :func:`~pyro_vae.runs.opening.load_run`; ``exact_discrete`` as for :func:`evaluate_model`.
    """
    with open_for_evaluation(run_dir, split, limit, device, data_dir, out_dir, trusted_imports,
                             checkpoint) as opened:
        log = log_on_main(log)
        log(f"evaluating {opened.description} on {len(opened.x)} {split} images, K = {num_samples}"
            + (f", shared by {ranks().describe()}" if ranks().distributed else ""))
        summary, points = evaluate_model(opened.model, opened.x, num_samples, batch_size, max_memory,
                                         opened.cfg.run.seed if seed is None else seed, log,
                                         show_progress(progress), exact_discrete, opened.labels)
        summary.update(split=split, **opened.provenance())

        def report() -> None:
            log(describe(summary))
            save_results(opened.target, summary, points)
        on_main(report)
    return summary
