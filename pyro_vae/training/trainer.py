"""SVI training: the loop, per-epoch evaluation, metrics, checkpoints and resume.

One step computes what ``pyro.infer.SVI.step`` does, the objective's loss and gradients followed
by an optimizer step: by default from a graph traced once (:mod:`pyro_vae.infer.lowering`), with
``--no-compile`` by ``elbo.loss_and_grads(model, guide, x)``. The optimizer differs from SVI's:
one ``torch.optim.Adam`` over ``VAE.parameters()`` instead of ``pyro.optim.Adam``, which keeps a
separate optimizer per parameter tensor. A single torch optimizer has a plain ``state_dict`` for checkpoints and is the
same optimizer the hand-written PyTorch reference in ``benchmarks/`` uses.

Pyro's validation (distribution arguments, site shapes) runs on the first step of every run
(compiled: while tracing), where a modelling mistake would show, and is then switched off: on an
MLP-sized model it costs about 5% of a step. NaN and inf are caught by our own check on every loss instead.
"""

from __future__ import annotations

import copy
import math
import sys
import time
import warnings
from contextlib import ExitStack, contextmanager, suppress
from typing import Any, Callable, Iterable, Optional

import pyro
import torch
from pyro.infer import ELBO
from torch.distributions import constraints
from tqdm.auto import tqdm

from pyro_vae.config import IMPORT_PATH_KEYS, Config, import_paths, merge_values, resume_config, validate
from pyro_vae.core.commands import resume_command
from pyro_vae.core.console import describe_unexpected, log_line
from pyro_vae.core.distributed import (
    broadcast_module,
    log_on_main,
    main_first,
    mark_reported,
    on_main,
    ranks,
    resolve_device,
    share,
    together,
)
from pyro_vae.core.errors import (
    CheckpointError,
    ConfigError,
    InterruptedRunError,
    PyroVAEError,
    TrainingDivergedError,
    WriteError,
)
from pyro_vae.core.precision import tf32
from pyro_vae.data import VAEData, load_dataset
from pyro_vae.evaluation.evaluate import describe, evaluate_model, save_results
from pyro_vae.infer.importance import elbo_per_datapoint
from pyro_vae.infer.lowering import LoweredStep, LoweringFailed, lowering_problem
from pyro_vae.infer.objectives import build_objective, model_structure
from pyro_vae.infer.warmup import LatentScale, warmup_beta
from pyro_vae.models import build_model
from pyro_vae.models.priors import kl_description
from pyro_vae.models.sites import trace_once
from pyro_vae.runs.checkpoint import checkpoint_sha256, load_checkpoint, save_checkpoint
from pyro_vae.runs.opening import load_weights, saved_run_values
from pyro_vae.runs.rundir import RunDir
from pyro_vae.training.data_parallel import check_data_parallel, epoch_order, seed_rank_stream, sum_loss_and_gradients
from pyro_vae.training.divergence import likely_cause
from pyro_vae.training.graphed import (
    READ_EVERY,
    GraphedSteps,
    portable_state,
    set_learning_rate,
    use_tensor_learning_rate,
)
from pyro_vae.training.schedule import learning_rate
from pyro_vae.viz.plots import plot_run

EVAL_BATCH_SIZE = 1000


def make_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    parameters = list(model.parameters())
    if not parameters:
        raise ConfigError(f"model {cfg.model.name!r} has no parameters to train: keep its networks as "
                          "attributes (submodules) of the model, as docs/models.md (\"Your own model\") shows")
    return torch.optim.Adam(parameters, lr=cfg.optim.lr, betas=tuple(cfg.optim.adam_betas), eps=cfg.optim.adam_eps)


class SVIStep:
    """One stochastic-variational-inference step; returns the minibatch loss (-ELBO, summed).

    Compiled (the default): the loss and gradients come from one traced graph per input shape
    (:mod:`pyro_vae.infer.lowering`), then the optimizer steps. Eager: ``elbo.loss_and_grads`` as in
    ``pyro.infer.SVI.step``. ``reason`` says why a step asked to compile runs eagerly (None if
    compiled); a model that cannot be traced falls back to eager on its first step.
    """

    def __init__(self, model: torch.nn.Module, elbo: ELBO, optimizer: torch.optim.Optimizer,
                 compile: bool = True, reason: Optional[str] = None,
                 scale: Optional[LatentScale] = None, data_parallel: bool = False):
        self.elbo, self.optimizer = elbo, optimizer
        # In a torchrun job: the loss and gradients of this rank's share of the batch are summed
        # over the ranks before the optimizer steps (pyro_vae.training.data_parallel).
        self.data_parallel = data_parallel
        # Bind once: ``model.model`` makes a new bound-method object on every access.
        self.model, self.guide = model.model, model.guide
        self.scale = scale  # KL warm-up: the latent sites of model and guide weighted by its beta
        if scale is not None:
            self.model, self.guide = scale(self.model), scale(self.guide)
        self.params = list(model.parameters())
        self.lowered = LoweredStep(elbo, self.model, self.guide, self.params, scale) \
            if compile and reason is None else None
        self.reason = reason if compile else "--no-compile"
        self.validated = False

    def prepare(self, x: torch.Tensor) -> str:
        """Compile for ``x``'s shape now (random stream untouched); returns how steps will run."""
        if self.lowered is not None:
            try:
                return f"compiled ({self.lowered.operations(x)} tensor operations per step)"
            except LoweringFailed as e:
                self._fall_back(e)
        return f"eager ({self.reason})"

    def set_beta(self, beta: float) -> None:
        """The KL warm-up weight of the next steps (in place: a compiled step reads it)."""
        self.scale.beta.fill_(beta)

    def _fall_back(self, error: LoweringFailed) -> None:
        self.lowered, self.reason = None, f"the model could not be traced ({error})"

    def __call__(self, x: torch.Tensor) -> float:
        if self.lowered is None:
            return self._eager(x)
        try:
            loss_tensor, grads = self.lowered(x)  # traced on the first step of a shape
        except LoweringFailed as e:
            self._fall_back(e)
            return self._eager(x)
        if self.data_parallel:
            loss_tensor, grads = sum_loss_and_gradients(loss_tensor, grads)
        for p, g in zip(self.params, grads):  # replaced on every step: no zero_grad needed
            p.grad = g
        loss = loss_tensor.item()
        if not math.isfinite(loss):  # no update; the gradients stay for the caller to diagnose
            return loss
        self.optimizer.step()
        return loss

    def _eager(self, x: torch.Tensor) -> float:
        with pyro.validation_enabled(not self.validated):
            loss = self.elbo.loss_and_grads(self.model, self.guide, x)
        self.validated = True
        if self.data_parallel:
            total, grads = sum_loss_and_gradients(torch.tensor(loss, device=x.device),
                                                  [p.grad for p in self.params])
            for p, g in zip(self.params, grads):
                p.grad = g
            loss = total.item()
        if not math.isfinite(loss):  # no update: the parameters stay as they were, and the
            return loss  # gradients stay for the caller to diagnose
        self.optimizer.step()
        self.optimizer.zero_grad()
        return loss


def make_step(cfg: Config, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
              data_parallel: bool = False) -> SVIStep:
    """The run's step: compiled unless ``--no-compile`` or the configuration cannot be traced;
    with ``--kl-warmup``, under a :class:`~pyro_vae.infer.warmup.LatentScale`; summed over the ranks
    of a torchrun job if ``data_parallel``."""
    scale = None
    if cfg.objective.kl_warmup > 0:
        device = next(model.parameters()).device
        scale = LatentScale(torch.ones((), device=device))
    return SVIStep(model, build_objective(cfg), optimizer, cfg.run.compile, lowering_problem(cfg), scale,
                   data_parallel)


def non_module_params() -> dict[str, torch.Tensor]:
    """Param-store state that lives outside the modules, e.g. the decaying average of
    TraceGraph_ELBO's baselines: without it a resumed run would restart the average."""
    store = pyro.get_param_store()
    return {name: store[name].detach().clone() for name in store.keys() if "$$$" not in name}


def _rng_state(device: torch.device) -> dict[str, Any]:
    """The CPU generator, and the run's own GPU's (None for a CPU run): not every GPU's, which a
    machine with fewer GPUs could not take back."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _saved_cuda_state(saved: Any, device: torch.device) -> tuple[Optional[torch.Tensor], str, Optional[str]]:
    """(the saved CUDA generator state for ``device``, its field, or None and a note saying why
    there is none). ``saved``: a tensor (the run's GPU's), None (a CPU run), or, as pyro-vae wrote
    before, a list of one state per GPU of the machine that wrote it (empty: a CPU run)."""
    if isinstance(saved, (list, tuple)) and not saved:
        saved = None
    if not isinstance(saved, (list, tuple)):
        return saved, "rng.cuda", None if saved is not None else (
            "the checkpoint was written on the cpu, so the GPU's random numbers continue from the "
            "seed, not from where the run stopped")
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index < len(saved):
        return saved[index], f"rng.cuda[{index}]", None
    return None, "rng.cuda", (f"the checkpoint holds no CUDA generator state for cuda:{index} (it has "
                              f"{len(saved)}), so the GPU's random numbers continue from the seed")


def _set_rng_state(state: dict[str, Any], device: torch.device, source) -> Optional[str]:
    """Restore the generators (checked on load: :mod:`~pyro_vae.runs.checkpoint_schema`); returns a note
    where a CUDA state could not be restored (a run moved between the CPU and a GPU). A CUDA
    state's format is checked by torch here, where a GPU is."""
    torch.set_rng_state(state["torch"])
    saved = state["cuda"]
    if device.type != "cuda":
        return None if saved is None or len(saved) == 0 else (
            "the checkpoint's CUDA generator state is not restored on the cpu; the random numbers "
            "continue from its CPU generator")
    cuda_state, field, note = _saved_cuda_state(saved, device)
    if cuda_state is not None:
        try:
            torch.cuda.set_rng_state(cuda_state, device)
        except (RuntimeError, TypeError) as e:
            raise CheckpointError(f"{source}: field {field!r} is not a CUDA generator state that "
                                  f"torch accepts ({' '.join(str(e).split())}); the file was not "
                                  "written by pyro-vae or was altered") from None
    return note


class Trainer:
    """Trains one run. ``Trainer(cfg)`` starts a new run; :meth:`resume` continues one.

    Nothing is written before :meth:`fit`, which holds the run directory's lock throughout
    (:mod:`pyro_vae.runs.lock`). The checkpoint is the run's source of truth: config.yaml and
    metrics.jsonl are copies written after it, and a resume first rewrites them from the
    checkpoint where a crash between the writes left them behind; a new run that stops before its
    first checkpoint leaves no directory behind.

    In a torchrun job (:mod:`pyro_vae.core.distributed`) every rank makes a Trainer and trains its
    share of each batch (:mod:`pyro_vae.training.data_parallel`); rank 0 alone reads and writes the run
    directory, evaluates the epochs and prints, and tells the others what they need.
    """

    # Run each epoch's steps on the device as GraphedSteps (pyro_vae.training.graphed): None means on CUDA
    # only, where they are captured as a CUDA graph; True runs them uncaptured on the CPU (tests).
    device_loop: Optional[bool] = None

    def __init__(self, cfg: Config, checkpoint: Optional[dict[str, Any]] = None,
                 log: Callable[[str], None] = log_line, progress: Optional[bool] = None,
                 checkpoint_signature: Optional[tuple] = None):
        self.ranks = ranks()
        self.cfg = cfg = together(lambda: validate(cfg))  # also resolves an unset elbo
        self.log = log_on_main(log)
        self.progress = self.ranks.main and (sys.stderr.isatty() if progress is None else progress)
        self.device = together(lambda: resolve_device(cfg.run.device))
        self.run = RunDir(cfg.run.resume) if checkpoint is not None else \
            RunDir(on_main(lambda: str(RunDir.new(cfg.run.out).path)))
        self._signature = checkpoint_signature  # the checkpoint file as read (see fit)
        pyro.set_rng_seed(cfg.run.seed)
        self._param_scope: Optional[dict] = None
        self.data: VAEData = main_first(lambda: load_dataset(
            cfg.data.dataset, cfg.data.data_dir, self.device, cfg.data.limit_train, cfg.data.limit_test,
            valid_size=cfg.data.valid_size))
        self.graphed: Optional[GraphedSteps] = None
        self._rng_note: Optional[str] = None  # a resumed run's generators that could not be restored
        self.epoch, self.global_step, self.wall_seconds = 0, 0, 0.0
        self.saved_epoch = 0  # the epoch of the checkpoint on disk (0: none)
        self.history: list[dict[str, Any]] = []
        # The epoch with the highest validation ELBO so far, {"epoch", "valid_elbo"} (best.pt).
        self.best: Optional[dict[str, Any]] = None
        together(lambda: self._build(checkpoint))
        broadcast_module(self.model)  # as DistributedDataParallel starts: rank 0's weights

    def _build(self, checkpoint: Optional[dict[str, Any]]) -> None:
        """The model, its optimizer and step, initialized or restored from ``checkpoint``."""
        cfg, n = self.cfg, len(self.data.train)
        if cfg.optim.batch_size > n:
            raise ConfigError(f"batch_size {cfg.optim.batch_size} is larger than the {n} training images; "
                              f"use --batch-size {n} or less")
        self.model = build_model(cfg, self.data.image_shape, self.data.train).to(self.device)
        self.structure = model_structure(self.model, cfg, self.data.test[:2])
        if self.ranks.distributed:
            check_data_parallel(cfg, self.model, self.data.test[:2], self.ranks)
        self.optimizer = make_optimizer(cfg, self.model)
        self.step = make_step(cfg, self.model, self.optimizer, self.ranks.distributed)
        if checkpoint is None:
            init = getattr(self.model, "init_from_data", None)  # optional (see pyro_vae.models)
            if init is not None:
                init(self.data.mean_pixel)
        else:
            self._restore(checkpoint)

    @classmethod
    def resume(cls, run_dir: str, overrides: Optional[dict[str, Any]] = None,
               trusted_imports: Iterable[str] = (), **kwargs) -> "Trainer":
        """Continue the run in ``run_dir``; ``overrides`` may change epochs, lr, device, data_dir.
        ``trusted_imports``: import paths in the saved config that may be imported."""
        run, overrides = RunDir(run_dir), overrides or {}
        on_main(lambda: run.require("--resume"), shared=False)
        # Rank 0 reads the checkpoint and hands it to the others (who may be on other machines).
        signature, state = on_main(lambda: (run.checkpoint_signature(), load_checkpoint(run.checkpoint_path)))
        # The saved config on its own first: a value it holds that pyro-vae refuses is the
        # checkpoint's fault (named so), not the flags'. A --prior/--model PATH repeated on
        # resume trusts that path, as resume_config does.
        named = [overrides[key] for key in IMPORT_PATH_KEYS if key in overrides]
        together(lambda: saved_run_values(state, str(run.checkpoint_path), [*trusted_imports, *named]))
        cfg = together(lambda: resume_config(state["config"], overrides, str(run_dir), trusted_imports))
        return cls(cfg, state, checkpoint_signature=signature, **kwargs)

    def _restore(self, state: dict[str, Any]) -> None:
        load_weights(self.model, state["model"], self.run.path)
        load_weights(self.optimizer, state["optimizer"], self.run.path)
        self.epoch, self.global_step = state["epoch"], state["step"]
        self.saved_epoch = self.epoch
        self.wall_seconds = state.get("wall_seconds", 0.0)
        self.history = list(state["metrics"])
        self.best = state.get("best")
        self._saved_state = {"config": state["config"], "metrics": state["metrics"]}  # see fit
        pyro_params = {k: v.to(self.device) for k, v in state.get("pyro_params", {}).items()}
        self._param_scope = {"params": pyro_params,
                             "constraints": {k: constraints.real for k in pyro_params}}
        self._rng_note = _set_rng_state(state["rng"], self.device, self.run.checkpoint_path)

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
        if self.epoch >= self.cfg.optim.epochs:  # nothing to do, so nothing is written
            self.log(f"{self.run.path} is already trained to epoch {self.epoch} (--epochs "
                     f"{self.cfg.optim.epochs}); pass a larger --epochs to continue.")
            return self.history
        if self.stopped_early():
            self.log(f"{self.run.path} stopped early at epoch {self.epoch}: {self.stop_reason()}. "
                     "Its best weights are in best.pt; nothing to do.")
            return self.history
        with ExitStack() as stack, warnings.catch_warnings():
            # Every non-finite loss stops training with a message of ours (_diverged), so
            # Pyro's "Encountered NaN" warnings would only print lines of noise before it.
            warnings.filterwarnings("ignore", message="Encountered NaN", category=UserWarning)
            stack.enter_context(tf32(self.cfg.run.tf32))  # --tf32; evaluations switch it off again
            opened = on_main(lambda: self._open_for_writing(stack), shared=False)  # rank 0's
            try:
                with self.param_scope():
                    return self._fit()
            except KeyboardInterrupt:
                when = (f"during epoch {self.epoch + 1}" if self.epoch < self.cfg.optim.epochs else
                        "after training, while evaluating or drawing figures")
                raise mark_reported(InterruptedRunError(f"interrupted {when}. {self._kept()}")) from None
            except PyroVAEError:
                raise
            except torch.cuda.OutOfMemoryError as e:
                raise PyroVAEError(self._out_of_memory(e)) from None  # this rank's GPU, said by it
            except Exception as e:  # the user's model or prior failed after its start-up probe
                raise PyroVAEError(f"{describe_unexpected(e)}. {self._kept()}") from e
            finally:
                if opened is not None:
                    self._leave_nothing_unsaved(*opened)

    def _out_of_memory(self, error: BaseException) -> str:
        """What to do when the GPU's memory ran out while training (not a bug to report)."""
        detail = ". ".join(" ".join(str(error).split()).split(". ")[:2])  # "CUDA out of memory. Tried to allocate 2.00 GiB"
        when = f"during epoch {self.epoch + 1}" if self.epoch < self.cfg.optim.epochs else "after training"
        return (f"the GPU ran out of memory {when} ({detail}): lower --batch-size (now "
                f"{self.cfg.optim.batch_size}){' or --num-particles' if self.cfg.objective.num_particles > 1 else ''}, "
                f"or train on a GPU with more free memory. {self._kept()}")

    def _open_for_writing(self, stack: ExitStack):
        """Create and lock the run directory (held until ``stack`` closes), and check that nobody
        wrote it since it was read; returns (the lock, whether the directory is new)."""
        created = self.run.make()
        lock = stack.enter_context(self.run.lock())
        try:
            self._check_unchanged()
            if self.saved_epoch:  # a crash after the last checkpoint may have left them behind
                self.run.agree_with_checkpoint(self._saved_state)
        except BaseException:
            self._leave_nothing_unsaved(lock, created)
            raise
        return lock, created

    def _leave_nothing_unsaved(self, lock, created: bool) -> None:
        """A new run that saved nothing leaves nothing behind."""
        if self.saved_epoch == 0:
            lock.discard()
            if created:
                with suppress(OSError):
                    self.run.path.rmdir()

    def _check_unchanged(self) -> None:
        """Between reading the directory and locking it, another process may have written it."""
        if self.saved_epoch == 0:
            self.run.check_new()
        elif self._signature is not None and self.run.checkpoint_signature() != self._signature:
            raise CheckpointError(f"the checkpoint in {self.run.path} changed after this process "
                                  "read it (another process wrote it); run "
                                  f"{resume_command(self.run.path)} again")

    def _kept(self, *resume_flags: str) -> str:
        """What survives a stop now, and how to go on (the command quoted, to paste)."""
        if self.saved_epoch == 0:
            return "No epoch had finished, so no run directory was kept; start again."
        return (f"The checkpoint of epoch {self.saved_epoch} in {self.run.path} is intact: "
                f"continue with {resume_command(self.run.path, *resume_flags)}")

    def _fit(self) -> list[dict[str, Any]]:
        cfg = self.cfg
        self.log(self._describe())
        if self._rng_note:
            self.log(f"  note: {self._rng_note}")
        if cfg.objective.elbo == "meanfield" and self.ranks.main:
            for line in self._kl_kinds():
                self.log(f"  --elbo meanfield: {line}")
        self.log(f"  step: {self._prepare_step()}")
        device_loop = self.step.lowered is not None and (
            self.device_loop or (self.device_loop is None and self.device.type == "cuda"))
        if device_loop and self.ranks.distributed:
            self.log("  data-parallel: each step is launched from the host, its gradients summed "
                     "over the ranks between the backward pass and Adam (no whole-step CUDA graph)")
        elif device_loop and self.step.scale is not None:
            self.log("  KL warm-up changes beta every step, so each step is launched from the host "
                     "(no whole-step CUDA graph)")
        elif device_loop:
            capture = self.device.type == "cuda"
            if capture:
                use_tensor_learning_rate(self.optimizer, capturable=True)
            self.graphed = GraphedSteps(self.step.lowered, self.optimizer, self.data.train,
                                        cfg.optim.batch_size, self.data.dynamic_binarization, capture)
            self.log(f"  the whole step runs on the device{' as one CUDA graph' if capture else ''}; "
                     f"the loss is read every {READ_EVERY} steps")
        self.log("train loss = -ELBO of the training objective" +
                 (" (with the warm-up's beta)" if cfg.objective.kl_warmup else "") +
                 "; test/valid ELBO = one-sample ELBO on the test/validation split (higher is "
                 "better); all in nats per image" + ("; * marks a new best validation ELBO "
                                                     "(best.pt)" if self.data.valid is not None else ""))
        # An epoch's seconds run from the end of the previous epoch's record, so that the previous
        # checkpoint write and log line are counted too: wall_seconds is the run's training time.
        self._clock = time.perf_counter()
        for epoch in range(self.epoch + 1, cfg.optim.epochs + 1):
            start = time.perf_counter()
            train_loss = self._train_epoch(epoch)
            train_seconds = time.perf_counter() - start
            self._check_parameters(epoch)
            record, self.best = on_main(lambda: self._end_epoch(epoch, train_loss, train_seconds))
            if not self.ranks.main:
                self._record(record)
            if self.stopped_early():
                self.log(f"early stopping: {self.stop_reason()}")
                break
        self.log(f"done: test ELBO {self.history[-1]['test_elbo']:.3f} nats/image after "
                 f"{self.epoch} epochs; run directory {self.run.path}" +
                 (f"; best validation ELBO {self.best['valid_elbo']:.3f} at epoch "
                  f"{self.best['epoch']} (best.pt)" if self.best else ""))
        try:
            if cfg.run.eval_samples:
                self.evaluate_log_likelihood(cfg.run.eval_samples)
            if cfg.run.plots:
                on_main(self._plot)
        except WriteError as e:
            raise WriteError(f"{e}. Training itself finished: {self._kept()}", e.errno) from None
        return self.history

    def _end_epoch(self, epoch: int, train_loss: float, train_seconds: float) -> tuple[dict, Optional[dict]]:
        """Evaluate the epoch, record it, save and report it; returns the record and the best
        epoch (in a torchrun job this is rank 0's work, and the others take its result)."""
        cfg = self.cfg
        record = {"epoch": epoch, "step": self.global_step, "train_loss": train_loss,
                  "test_elbo": self.evaluate()}
        if self.data.valid is not None:
            record["valid_elbo"] = self.evaluate(self.data.valid)
        for key in ("test_elbo", "valid_elbo"):
            if key in record and not math.isfinite(record[key]):
                raise self._diverged(epoch, None, f"the {key.split('_')[0]} ELBO is {record[key]}")
        if cfg.objective.kl_warmup:
            record["beta"] = warmup_beta(self.global_step - 1, self._batches_per_epoch(), cfg.objective.kl_warmup)
        # An epoch's seconds run from the end of the previous epoch's record, so that the previous
        # checkpoint write and log line are counted too: wall_seconds is the run's training time.
        now = time.perf_counter()
        seconds, self._clock = now - self._clock, now
        record.update(train_seconds=train_seconds, epoch_seconds=seconds,
                      wall_seconds=self.wall_seconds + seconds)
        improved = "valid_elbo" in record and (self.best is None or
                                               record["valid_elbo"] > self.best["valid_elbo"])
        if improved:
            self.best = {"epoch": epoch, "valid_elbo": record["valid_elbo"]}
        self._record(record)
        self._save(best=improved)
        valid = (f"  valid ELBO {record['valid_elbo']:9.3f}{'*' if improved else ' '}"
                 if "valid_elbo" in record else "")
        self.log(f"epoch {epoch:>3}/{cfg.optim.epochs}  train loss {train_loss:9.3f}  "
                 f"test ELBO {record['test_elbo']:9.3f}{valid}  ({seconds:.1f} s)")
        return record, self.best

    def _record(self, record: dict[str, Any]) -> None:
        self.epoch, self.wall_seconds = record["epoch"], record["wall_seconds"]
        self.history.append(record)

    def _plot(self) -> None:
        cfg = self.cfg
        figures = plot_run(self.run.path, cfg.data.data_dir,
                           trusted_imports=import_paths(cfg.to_flat()).values())
        self.log(f"figures: {', '.join(str(p) for p in figures)}")

    def stopped_early(self) -> bool:
        """Whether ``early_stopping`` epochs have passed without a better validation ELBO."""
        patience = self.cfg.optim.early_stopping
        return bool(patience and self.best and self.epoch - self.best["epoch"] >= patience)

    def stop_reason(self) -> str:
        return (f"no better validation ELBO for {self.cfg.optim.early_stopping} epochs; the best was "
                f"{self.best['valid_elbo']:.3f} at epoch {self.best['epoch']}")

    def _save(self, best: bool = False) -> None:
        """best.pt if ``best`` (this epoch has the best validation ELBO), then the checkpoint,
        then config.yaml and metrics.jsonl, all from the same state. best.pt comes first so that
        the checkpoint never names a best epoch that is not on disk."""
        try:
            state = self._state()
            if best:
                save_checkpoint(state, self.run.best_path)
            save_checkpoint(state, self.run.checkpoint_path)
            self.saved_epoch = self.epoch
            self.run.write_config(self.cfg.to_flat())
            self.run.write_metrics(self.history)
        except WriteError as e:
            raise WriteError(f"{e}. {self._kept()}", e.errno) from None

    def evaluate_log_likelihood(self, num_samples: int) -> dict:
        """log p(x) on the test split (``--eval-samples``), written to eval.json: of the best
        epoch's weights where the run keeps them (best.pt), as ``evaluate.py`` does."""
        which = "best" if self.best is not None else "last"
        path = self.run.best_path if which == "best" else self.run.checkpoint_path

        def read() -> tuple[dict, str]:  # the file evaluated, as evaluate.py would open it
            state = load_checkpoint(path)
            return state["model"], checkpoint_sha256(state)
        weights, checksum = on_main(read)
        model, epoch = self.model, self.epoch
        if which == "best":
            model, epoch = copy.deepcopy(self.model), self.best["epoch"]
            load_weights(model, weights, self.run.path)
        self.log(f"estimating log p(x) on {len(self.data.test)} test images with K = {num_samples} "
                 f"({which} checkpoint, epoch {epoch})")
        summary, points = evaluate_model(model, self.data.test, num_samples,
                                       seed=self.cfg.run.seed, log=self.log, progress=self.progress)
        summary.update(split="test", epoch=epoch, checkpoint=which, checkpoint_sha256=checksum)

        def report() -> None:
            self.log(describe(summary))
            save_results(self.run.path, summary, points)
        on_main(report)
        return summary

    def _kl_kinds(self) -> list[str]:
        """Analytic or Monte Carlo KL for each latent site's guide/model pair (traced in isolation,
        so that a resumed run's random stream stays the uninterrupted one's)."""
        with torch.no_grad():
            model_trace, guide_trace = trace_once(self.model.model, self.model.guide, self.data.test[:2])
        return [f"KL term of site {s.name!r}: "
                f"{kl_description(guide_trace.nodes[s.name]['fn'], model_trace.nodes[s.name]['fn'])}"
                for s in self.structure.latents]

    def _prepare_step(self) -> str:
        """Compile the step for the training batch shape (random stream untouched)."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            x = self.data.train_batch(torch.arange(self.cfg.optim.batch_size, device=self.device)[self._share])
        return self._guarded(self.step.prepare, x, self.epoch + 1, 0)

    def _guarded(self, step: Callable, x: torch.Tensor, epoch: int, batch: int):
        """``step(x)``, with Pyro's validation errors about NaN parameters as a divergence."""
        try:
            return step(x)
        except ValueError as e:  # Pyro's validation (first step) saw a NaN parameter
            if "found invalid values" not in str(e):
                raise
            raise self._diverged(epoch, batch, "a distribution got invalid parameters ("
                                 f"{str(e).splitlines()[0].rstrip(':')})", x) from None

    @property
    def _share(self) -> slice:
        """This rank's share of every batch (all of it in one process)."""
        return share(self.cfg.optim.batch_size, self.ranks)

    def _batches_per_epoch(self) -> int:
        # Equal-sized batches only: the compiled step is traced for one shape. The n % batch
        # examples left out differ from epoch to epoch (fresh permutation).
        return len(self.data.train) // self.cfg.optim.batch_size

    def _train_epoch(self, epoch: int) -> float:
        batch, num_batches = self.cfg.optim.batch_size, self._batches_per_epoch()
        # derived from the epoch: resume needs no state
        set_learning_rate(self.optimizer, learning_rate(self.cfg.optim.lr_schedule, self.cfg.optim.lr, epoch,
                                                         self.cfg.optim.lr_schedule_scale))
        if self.ranks.distributed:
            order = epoch_order(len(self.data.train), self.cfg.run.seed, epoch, self.device)
            seed_rank_stream(self.cfg.run.seed, epoch, self.ranks.rank)
        else:
            order = torch.randperm(len(self.data.train), device=self.device)
        mine = self._share
        total = 0.0
        self.model.train()
        with tqdm(total=num_batches, desc=f"epoch {epoch}", unit="batch", leave=False,
                  disable=not self.progress, file=sys.stderr) as bar:
            if self.graphed is not None:
                return self._train_epoch_on_device(epoch, order, num_batches, bar)
            for b in range(num_batches):
                if self.step.scale is not None:
                    self.step.set_beta(warmup_beta(self.global_step, num_batches, self.cfg.objective.kl_warmup))
                x = self.data.train_batch(order[b * batch:(b + 1) * batch][mine])
                loss = self._guarded(self.step, x, epoch, b)
                if not math.isfinite(loss):
                    raise self._diverged(epoch, b, f"the training loss became {loss}", x)
                total += loss
                self.global_step += 1
                bar.update()
                if b % 20 == 0:
                    bar.set_postfix(loss=f"{loss / batch:.2f}")
        return total / (num_batches * batch)

    def _train_epoch_on_device(self, epoch: int, order: torch.Tensor, num_batches: int, bar) -> float:
        """The epoch's steps as :class:`~pyro_vae.training.graphed.GraphedSteps`, the loss read every
        READ_EVERY steps (the NaN guard)."""
        batch, done = self.cfg.optim.batch_size, 0
        self.graphed.start_epoch(order)
        while done < num_batches:
            steps = min(READ_EVERY, num_batches - done)
            self.graphed.run(steps)
            total, bad = self.graphed.read()
            if bad is not None:
                index, loss = bad
                x = self.data.train_batch(order[index * batch:(index + 1) * batch])
                raise self._diverged(epoch, index, f"the training loss became {loss}", x)
            done += steps
            self.global_step += steps
            bar.update(steps)
            bar.set_postfix(loss=f"{total / (done * batch):.2f}")
        return total / (num_batches * batch)

    def evaluate(self, x: Optional[torch.Tensor] = None) -> float:
        """Mean one-sample ELBO over ``x`` (default: the test split), with RNG forked at the
        run's seed; the true ELBO (no warm-up weight).

        Every epoch is scored with the same noise, and training's RNG stream is left untouched,
        so a resumed run reproduces an uninterrupted one exactly.
        """
        self.model.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        with self.param_scope(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.cfg.run.seed)
            values = elbo_per_datapoint(self.model.model, self.model.guide,
                                        self.data.test if x is None else x,
                                        batch_size=EVAL_BATCH_SIZE)
        return values.mean().item()

    def _check_parameters(self, epoch: int) -> None:
        finite = torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all()
        if not finite:
            raise self._diverged(epoch, None, "a parameter became NaN or infinite")

    def _diverged(self, epoch: int, batch: Optional[int], what: str,
                  x: Optional[torch.Tensor] = None) -> TrainingDivergedError:
        """The error, with the likely cause (:mod:`pyro_vae.training.divergence`) and what to do."""
        where = f"epoch {epoch}" + (f", batch {batch}" if batch is not None else "")
        with self.param_scope():
            cause = likely_cause(self.model, x, self.cfg.prior.name, self.structure.top.name)
        if cause.prior:
            advice = ("Check the prior's settings (prior_df, prior_components, prior_options) or, "
                      "for a prior of your own, its forward() and log_prob.")
            kept = self._kept()
        else:
            lower = f"{self.cfg.optim.lr / 10:g}"
            advice = f"Lower the learning rate (now {self.cfg.optim.lr:g}), e.g. to {lower}."
            kept = self._kept("--lr", lower)
        # Every rank sees the same summed loss and the same parameters, so all stop here together.
        return mark_reported(TrainingDivergedError(f"training diverged at {where}: {what}. Likely "
                                                   f"cause: {cause.text}. {advice} {kept}"))

    def _state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.global_step, "config": self.cfg.to_flat(),
                "model": self.model.state_dict(), "optimizer": portable_state(self.optimizer),
                "rng": _rng_state(self.device), "metrics": self.history,
                "wall_seconds": self.wall_seconds, "pyro_params": non_module_params(),
                "best": self.best}

    def _network_description(self) -> str:
        """"mlp 784-400-400-50 relu" (vae), "hvae mlp 784-200-200-(z1 100)-100-100-(z2 50) tanh",
        or a user model's name and latent sites."""
        cfg, x_dim = self.cfg, self.data.train.shape[1]
        if cfg.model.name == "vae":
            sizes = "-".join(str(s) for s in [x_dim, *cfg.model.hidden, cfg.model.latent_dim[0]])
            if cfg.model.arch == "conv":
                sizes = f"conv(32, 64 channels)-{sizes.split('-', 1)[1]}"
            return f"{cfg.model.arch} {sizes} {cfg.model.activation}"
        if cfg.model.name == "hvae":
            parts = [str(x_dim), *map(str, cfg.model.hidden), f"(z1 {cfg.model.latent_dim[0]})"]
            for layer, size in enumerate(cfg.model.latent_dim[1:], start=2):
                parts += [*map(str, cfg.model.upper_hidden), f"(z{layer} {size})"]
            return f"hvae {cfg.model.arch} {'-'.join(parts)} {cfg.model.activation}"
        order = self.structure.guide_order
        latents = ", ".join(f"{s.name} {s.size}" for s in sorted(self.structure.latents,
                                                                 key=lambda s: order.index(s.name)))
        return f"{cfg.model.name} (latent sites {latents})"

    def _describe(self) -> str:
        cfg, data = self.cfg, self.data
        n_params = sum(p.numel() for p in self.model.parameters())
        nets = self._network_description()
        binarization = "dynamic" if data.dynamic_binarization else "static"
        elbo = type(self.step.elbo).__name__
        action = "resuming at epoch %d" % (self.epoch + 1) if self.epoch else "training"
        valid = f" / {len(data.valid)} validation" if data.valid is not None else ""
        schedule = "" if cfg.optim.lr_schedule == "constant" else (
            f", {cfg.optim.lr_schedule} schedule" + (f" x{cfg.optim.lr_schedule_scale:g}" if cfg.optim.lr_schedule_scale != 1 else ""))
        extras = [f"KL warm-up over {cfg.objective.kl_warmup:g} epochs"] if cfg.objective.kl_warmup else []
        if cfg.optim.early_stopping:
            extras.append(f"early stopping after {cfg.optim.early_stopping} epochs without improvement")
        where = str(self.device)
        if self.ranks.distributed:
            base, extra = divmod(cfg.optim.batch_size, self.ranks.world_size)
            where += (f", data-parallel over {self.ranks.describe()}: each rank takes "
                      f"{f'{base} or {base + 1}' if extra else base} of every batch of {cfg.optim.batch_size}")
        return (f"pyro-vae: {action} on {cfg.data.dataset} ({len(data.train)} train{valid} / {len(data.test)} "
                f"test images, {binarization} binarization) on {where}\n"
                f"  model: {nets}, prior {cfg.prior.name}, {n_params:,} parameters\n"
                f"  objective: {cfg.objective.elbo} ({elbo}), Adam lr {cfg.optim.lr:g}{schedule}, betas "
                f"{cfg.optim.adam_betas[0]:g}/{cfg.optim.adam_betas[1]:g}, batch {cfg.optim.batch_size}"
                f"{''.join(', ' + e for e in extras)}\n"
                f"  run directory: {self.run.path}")


def train(overrides: Optional[dict[str, Any]] = None, config_file: Optional[str] = None,
          trusted_imports: Iterable[str] = (), **kwargs) -> Trainer:
    """Defaults < ``config_file`` < ``overrides``; resumes if they name ``resume``. Trains.
    ``trusted_imports``: import paths a resumed run's checkpoint may name (``--trust-import``)."""
    values = merge_values(overrides, config_file)
    if values.get("resume"):
        trainer = Trainer.resume(values["resume"], values, trusted_imports, **kwargs)
    else:
        trainer = Trainer(validate(Config.from_flat(**values)), **kwargs)
    trainer.fit()
    return trainer
