"""The Trainer: a run's parts wired together, and :func:`train`, the one call that trains.

A run is built from its :class:`~pyro_vae.config.Config` (or from what a caller hands in: a model,
a prior, an objective, the data), trained by a :class:`~pyro_vae.training.loop.TrainingLoop`,
and looked after by callbacks (:mod:`pyro_vae.training.callbacks`): the lock and checkpoints of
its run directory, early stopping, the console, TensorBoard, the final log p(x) and figures, and
the one-line message of a run that stops. The step itself is :mod:`pyro_vae.training.step`.
"""

from __future__ import annotations

import warnings
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Iterable, Optional, Sequence

import pyro
import torch
from pyro.infer import ELBO

from pyro_vae.config import IMPORT_PATH_KEYS, Config, merge_values, resume_config, validate
from pyro_vae.core.commands import resume_command
from pyro_vae.core.console import log_line
from pyro_vae.core.distributed import (
    broadcast_module,
    log_on_main,
    main_first,
    on_main,
    ranks,
    resolve_device,
    share,
    together,
)
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import option
from pyro_vae.core.precision import tf32
from pyro_vae.data import VAEData
from pyro_vae.data.labels import keep_labels
from pyro_vae.data.streaming import decide as decide_streaming
from pyro_vae.evaluation import accuracy
from pyro_vae.infer.importance import elbo_per_datapoint
from pyro_vae.infer.labels import check_labels
from pyro_vae.infer.objectives import model_structure
from pyro_vae.models import build_model
from pyro_vae.models.model_data import load_model_data, present_for
from pyro_vae.runs.checkpoint import load_checkpoint
from pyro_vae.runs.opening import saved_run_values
from pyro_vae.runs.rundir import RunDir
from pyro_vae.training.callbacks import Callback, CallbackList
from pyro_vae.training.callbacks.checkpoint import BestWeightsInMemory, Checkpointing
from pyro_vae.training.callbacks.console import ConsoleReport, show_progress
from pyro_vae.training.callbacks.early_stopping import EarlyStopping, stop_reason, stopped_early
from pyro_vae.training.callbacks.failures import DivergenceReport, FailureReport
from pyro_vae.training.callbacks.final import Figures, FinalEvaluation
from pyro_vae.training.callbacks.run_lock import RunDirectoryLock
from pyro_vae.training.callbacks.tensorboard import TensorBoardCallback, log_directory
from pyro_vae.training.callbacks.time_limit import TimeLimit
from pyro_vae.training.checkpointing import non_module_params, restore
from pyro_vae.training.data_parallel import check_data_parallel
from pyro_vae.training.loop import TrainingLoop
from pyro_vae.training.rng import RunGenerators, seed_torch
from pyro_vae.training.state import TrainingState
from pyro_vae.training.step import SVIStep, make_optimizer, make_step

# Re-exported: scripts, studies and benchmarks import the step and the param-store helper here.
__all__ = ["Trainer", "train", "SVIStep", "make_optimizer", "make_step", "non_module_params", "EVAL_BATCH_SIZE"]

EVAL_BATCH_SIZE = 1000


class Trainer:
    """Trains one run. ``Trainer(cfg)`` starts a new run; :meth:`resume` continues one.

    Nothing is written before :meth:`fit`, which holds the run directory's lock throughout. The
    checkpoint is the run's source of truth: config.yaml and metrics.jsonl are copies written
    after it; a new run that stops before its first checkpoint leaves no directory behind.
    Instead of what ``cfg`` names: ``model`` (an ``nn.Module`` with ``model``/``guide`` that follow
    :mod:`pyro_vae.models.sites`), ``prior`` (a prior module, given to the model's builder), ``elbo``
    (a ``pyro.infer.ELBO``), ``data`` (a :class:`~pyro_vae.data.VAEData`). ``in_memory``: no run
    directory at all (no lock, checkpoint or file; the history stays in :attr:`state`, and early
    stopping puts the best epoch's weights back into the model). ``callbacks`` come after the
    built-in ones. ``device_loop``: run each epoch's steps on the device (None: on CUDA only).

    The seed is the run's own: the caller's global random generators are the same after
    :meth:`fit` as before (:class:`~pyro_vae.training.rng.RunGenerators`).

    In a torchrun job (:mod:`pyro_vae.core.distributed`) every rank makes a Trainer and trains its
    share of each batch (:mod:`pyro_vae.training.data_parallel`); rank 0 alone reads and writes the
    run directory, evaluates the epochs and prints, and tells the others what they need.
    """

    def __init__(self, cfg: Config, checkpoint: Optional[dict[str, Any]] = None, *,
                 model: Optional[torch.nn.Module] = None, prior: Optional[torch.nn.Module] = None,
                 elbo: Optional[ELBO] = None, data: Optional[VAEData] = None, in_memory: bool = False,
                 callbacks: Sequence[Callback] = (), log: Callable[[str], None] = log_line,
                 progress: Optional[bool] = None, checkpoint_signature: Optional[tuple] = None,
                 device_loop: Optional[bool] = None):
        self.ranks = ranks()
        self.cfg = cfg = together(lambda: validate(cfg))  # also resolves an unset elbo
        self.log = log_on_main(log)
        self.progress = self.ranks.main and (show_progress() if progress is None else progress)
        self.given = _check_given(model, prior, elbo, data)  # which parts were handed in
        self.device = together(lambda: resolve_device(cfg.run.device))
        if in_memory:
            if checkpoint is None and cfg.run.out is not None:
                raise ConfigError(f"a run in memory has no run directory: drop {option('out', cfg.run.out)}, "
                                  "or train into it without in_memory")
            self.run = None
        else:
            self.run = RunDir(cfg.run.resume) if checkpoint is not None else \
                RunDir(on_main(lambda: str(RunDir.new(cfg.run.out).path)))
        self.checkpoint_signature = checkpoint_signature  # the checkpoint file as read (see RunDirectoryLock)
        self.saved_checkpoint = None if checkpoint is None else \
            {"config": checkpoint["config"], "metrics": checkpoint["metrics"]}
        self.state, self.rng_note = TrainingState(), None  # rng_note: generators a resume could not restore
        self._param_scope: Optional[dict] = None
        self.callbacks = together(lambda: CallbackList([*built_in_callbacks(cfg, in_memory, self.progress),
                                                        *callbacks], main=self.ranks.main))
        self.generators = RunGenerators(cfg.run.seed, self.device)
        with self.generators.active():
            host = present_for(cfg, data) if data is not None else main_first(lambda: load_model_data(cfg, "cpu"))
            # streamed: the training images stay in host memory (pyro_vae.data.streaming)
            self.streamed, self.stream_note = decide_streaming(cfg.data.stream, host.train, self.device)
            self.data: VAEData = _on_device(host, self.device, keep=("train",) if self.streamed else ())
            if cfg.data.labels is not None:
                self.data = _on_device(keep_labels(self.data, cfg.data.labels, cfg.run.seed, cfg.model.categories),
                                       self.device, keep=("train",) if self.streamed else ())
            together(lambda: self._build(checkpoint, model, prior, elbo))
            broadcast_module(self.model)  # as DistributedDataParallel starts: rank 0's weights
        self.loop = TrainingLoop(self, device_loop)

    def _build(self, checkpoint: Optional[dict[str, Any]], model, prior, elbo) -> None:
        """The model, its optimizer and step, initialized or restored from ``checkpoint``."""
        cfg, n = self.cfg, len(self.data.train)
        if cfg.optim.batch_size > n:
            raise ConfigError(f"batch_size {cfg.optim.batch_size} is larger than the {n} training images; "
                              f"use {option('batch_size', n)} or less")
        if model is None:
            model = build_model(cfg, self.data.image_shape, self.data.train, prior=prior,
                                    dequantized=self.data.dequantized)
        self.model = model.to(self.device)
        self.structure = model_structure(self.model, cfg, self.data.test[:2])
        if self.data.labelled is not None:
            check_labels(self.model, self.data.labelled, cfg.model.name)
        if self.ranks.distributed:
            if self.data.labelled is not None:
                raise ConfigError(f"semi-supervised training ({option('labels', cfg.data.labels)}) runs in "
                                  "one process; start it without torchrun")
            if elbo is not None:
                raise ConfigError("an objective given as an instance cannot be checked for training on "
                                  "several ranks; register it (register_objective(..., sums_over_data=True)) "
                                  f"and name it with {option('elbo')}")
            check_data_parallel(cfg, self.model, self.data.test[:2], self.ranks)
        self.optimizer = make_optimizer(cfg, self.model)
        self.step: SVIStep = make_step(cfg, self.model, self.optimizer, self.ranks.distributed, elbo)
        if checkpoint is None:
            init = getattr(self.model, "init_from_data", None)  # optional (see pyro_vae.models)
            if init is not None:
                init(self.data.mean_pixel)
        else:
            self.state, self._param_scope, self.rng_note = restore(self, checkpoint, RunDir(cfg.run.resume))

    @classmethod
    def resume(cls, run_dir: str, overrides: Optional[dict[str, Any]] = None,
               trusted_imports: Iterable[str] = (), **kwargs) -> "Trainer":
        """Continue the run in ``run_dir``; ``overrides`` may change epochs, lr, device, data_dir
        (and the other keys of ``RESUME_OVERRIDABLE``). ``trusted_imports``: import paths in the
        saved config that may be imported. ``kwargs``: as for the constructor."""
        run, overrides = RunDir(run_dir), overrides or {}
        on_main(lambda: run.require(option("resume")), shared=False)
        # Rank 0 reads the checkpoint and hands it to the others (who may be on other machines).
        signature, state = on_main(lambda: (run.checkpoint_signature(), load_checkpoint(run.checkpoint_path)))
        # The saved config on its own first: a value it holds that pyro-vae refuses is the
        # checkpoint's fault (named so), not the flags'. A prior/model PATH repeated on resume
        # trusts that path, as resume_config does.
        named = [overrides[key] for key in IMPORT_PATH_KEYS if key in overrides]
        together(lambda: saved_run_values(state, str(run.checkpoint_path), [*trusted_imports, *named]))
        cfg = together(lambda: resume_config(state["config"], overrides, str(run_dir), trusted_imports))
        return cls(cfg, state, checkpoint_signature=signature, **kwargs)

    @contextmanager
    def param_scope(self):
        """This run's own Pyro param store, entered while the model and guide run.

        ``pyro.module`` registers parameters by name in Pyro's global store; a second VAE in the
        same process (tests, notebooks, benchmarks) would find the first one's tensors there and
        shadow its own.
        """
        with pyro.get_param_store().scope(self._param_scope) as scope:
            self._param_scope = scope
            yield

    def fit(self) -> list[dict[str, Any]]:
        """Train up to ``cfg.epochs``; returns the metrics of every epoch of the run."""
        state, cfg = self.state, self.cfg
        where = self.run.path if self.run is not None else "the run"
        if state.epoch >= cfg.optim.epochs:  # nothing to do, so nothing is written
            self.log(f"{where} is already trained to epoch {state.epoch} ({option('epochs', cfg.optim.epochs)}); "
                     f"pass a larger {option('epochs')} to continue.")
            return self.history
        if self.stopped_early():
            self.log(f"{where} stopped early at epoch {state.epoch}: {self.stop_reason()}. "
                     "Its best weights are in best.pt; nothing to do.")
            return self.history
        state.stop_reason = state.model_epoch = None
        with self.generators.active(), ExitStack() as stack, warnings.catch_warnings():
            # Every non-finite loss stops training with a message of ours (DivergenceReport), so
            # Pyro's "Encountered NaN" warnings would only print lines of noise before it.
            warnings.filterwarnings("ignore", message="Encountered NaN", category=UserWarning)
            stack.enter_context(tf32(cfg.run.tf32))  # evaluations switch it off again
            stack.callback(self.callbacks.on_fit_exit, self)
            with self.param_scope():
                try:
                    self.callbacks.call_together("on_fit_start", self)
                    self.loop.run()
                    self.callbacks.call_together("on_fit_end", self)
                except BaseException as error:
                    replacement = self.callbacks.on_exception(self, error)
                    if replacement is None or replacement is error:
                        raise
                    raise replacement from replacement.__cause__
        return self.history

    def evaluate(self, x: Optional[torch.Tensor] = None) -> float:
        """Mean one-sample ELBO over ``x`` (default: the test split), with the random generators
        forked at the run's seed; the true ELBO (no warm-up weight).

        Every epoch is scored with the same noise, and training's random stream is left
        untouched, so a resumed run reproduces an uninterrupted one exactly.
        """
        with self._scoring():
            values = elbo_per_datapoint(self.model.model, self.model.guide,
                                        self.data.test if x is None else x, batch_size=EVAL_BATCH_SIZE)
        return values.mean().item()

    def accuracy(self, split: str) -> float:
        """Classification accuracy of q(y | x) on the evaluation split ``split`` (test or valid),
        scored as :meth:`evaluate` scores the ELBO."""
        with self._scoring():
            return accuracy(self.model.guide, self.data.split(split), self.data.split_labels(split),
                            batch_size=EVAL_BATCH_SIZE)

    @contextmanager
    def _scoring(self):
        """Eval mode, the run's param store, and the random generators forked at the run's seed."""
        self.model.eval()
        with self.param_scope(), torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            seed_torch(self.cfg.run.seed, self.device)
            yield

    def kept(self, *resume_flags: str) -> str:
        """What survives a stop now, and how to go on (the command quoted, to paste)."""
        if self.run is None:
            return "Nothing was saved: the run trained in memory."
        if self.state.saved_epoch == 0:
            return "No epoch had finished, so no run directory was kept; start again."
        return (f"The checkpoint of epoch {self.state.saved_epoch} in {self.run.path} is intact: "
                f"continue with {resume_command(self.run.path, *resume_flags)}")

    def stopped_early(self) -> bool:
        """Whether ``early_stopping`` epochs have passed without a better validation ELBO."""
        return stopped_early(self.state, self.cfg.optim.early_stopping)

    def stop_reason(self) -> str:
        return stop_reason(self.state, self.cfg.optim.early_stopping)

    @property
    def share(self) -> slice:
        """This rank's share of every batch (all of it in one process)."""
        return share(self.cfg.optim.batch_size, self.ranks)

    history = property(lambda self: self.state.history, doc="one record per finished epoch")
    epoch = property(lambda self: self.state.epoch)
    global_step = property(lambda self: self.state.step)
    best = property(lambda self: self.state.best)
    graphed = property(lambda self: self.loop.graphed, doc="the device loop's steps, if it runs")


def built_in_callbacks(cfg: Config, in_memory: bool, progress: bool) -> list[Callback]:
    """The callbacks a run gets from its config, in the order of :mod:`pyro_vae.training.callbacks`."""
    out: list[Callback] = [RunDirectoryLock(), Checkpointing()] if not in_memory else \
        [BestWeightsInMemory()] if cfg.optim.early_stopping else []
    if cfg.optim.early_stopping:
        out.append(EarlyStopping(cfg.optim.early_stopping))
    if cfg.optim.max_minutes:
        out.append(TimeLimit(cfg.optim.max_minutes))
    out.append(ConsoleReport(progress))
    if cfg.run.tensorboard:
        out.append(TensorBoardCallback(cfg.run.tensorboard))
        if in_memory:
            log_directory(cfg.run.tensorboard, None)  # refused now: the default needs a run directory
    if cfg.run.eval_samples:
        out.append(FinalEvaluation(cfg.run.eval_samples))
    if cfg.run.plots and not in_memory:
        out.append(Figures())
    return out + [DivergenceReport(), FailureReport()]


def _check_given(model, prior, elbo, data) -> dict[str, bool]:
    """Which parts were handed in, each checked to be what it must be."""
    checks = {"model": (model, torch.nn.Module, "an nn.Module with model(x) and guide(x) methods"),
              "prior": (prior, torch.nn.Module, "a prior module (see pyro_vae.models.priors)"),
              "elbo": (elbo, ELBO, "a pyro.infer.ELBO instance"),
              "data": (data, VAEData, "a pyro_vae.data.VAEData")}
    for name, (value, kind, what) in checks.items():
        if value is not None and not isinstance(value, kind):
            raise ConfigError(f"{name} must be {what}, got {type(value).__name__}")
    if model is not None and not all(callable(getattr(model, m, None)) for m in ("model", "guide")):
        raise ConfigError(f"model {type(model).__name__} needs model(x) and guide(x) methods (docs/models.md)")
    if model is not None and prior is not None:
        raise ConfigError("prior is for a model built from its name; a model instance brings its own prior")
    return {name: value is not None for name, (value, _, _) in checks.items()}


def _on_device(data: VAEData, device: torch.device, keep: tuple[str, ...] = ()) -> VAEData:
    """``data`` with its tensors on ``device`` (``data`` itself if they are there already), but
    those named in ``keep`` (the training split, when it is streamed)."""
    moved = []

    def move(name: str, t: torch.Tensor) -> torch.Tensor:
        if t.device == device or name in keep:
            return t
        moved.append(name)
        return t.to(device)
    copy = data.mapped(move)
    return copy if moved else data


def train(overrides: Optional[dict[str, Any]] = None, config_file: Optional[str] = None,
          trusted_imports: Iterable[str] = (), **kwargs) -> Trainer:
    """Defaults < ``config_file`` < ``overrides``; resumes if they name ``resume``. Trains.
    ``trusted_imports``: import paths a resumed run's checkpoint may name (``trust_import``).
    ``kwargs``: as for :class:`Trainer`."""
    values = merge_values(overrides, config_file)
    if values.get("resume"):
        trainer = Trainer.resume(values["resume"], values, trusted_imports, **kwargs)
    else:
        trainer = Trainer(validate(Config.from_flat(**values)), **kwargs)
    trainer.fit()
    return trainer
