"""The training loop: epochs of SVI steps, each scored by its ELBO; everything else is a callback.

An epoch is a fresh permutation of the training images in equal-sized batches (the compiled step
is traced for one shape; the ``n % batch`` images left out differ from epoch to epoch), one step
per batch, then a check that the parameters are finite, then the epoch's record: the training
loss and the one-sample ELBO of the test (and validation) split. The record is rank 0's to make;
it goes to the callbacks (:mod:`pyro_vae.training.callbacks`: checkpoints, early stopping, the
console, TensorBoard) and then to the other ranks of a torchrun job.

Steps run from the host one by one, or, where :attr:`TrainingLoop.graphed` is set, as
:class:`~pyro_vae.training.graphed.GraphedSteps` on the device, the loss read every
:data:`~pyro_vae.training.graphed.READ_EVERY` steps (the NaN guard).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch

from pyro_vae.core.distributed import on_main
from pyro_vae.data.streaming import HostBatches
from pyro_vae.models.likelihoods import bits_per_dim, reports_bits_per_dim
from pyro_vae.training.data_parallel import epoch_order, seed_rank_stream
from pyro_vae.training.graphed import READ_EVERY, GraphedSteps, device_steps, set_learning_rate
from pyro_vae.training.labelled_draws import LabelledDraws, labelled_per_step
from pyro_vae.training.schedule import learning_rate
from pyro_vae.training.step import scheduled_values

if TYPE_CHECKING:
    from pyro_vae.training.trainer import Trainer


class Diverged(Exception):
    """A loss, parameter or ELBO became NaN or infinite: what happened and where. The
    :class:`~pyro_vae.training.callbacks.failures.DivergenceReport` callback turns it into the
    user's :class:`~pyro_vae.core.errors.TrainingDivergedError` with the likely cause."""

    def __init__(self, epoch: int, batch: Optional[int], what: str, x: Optional[torch.Tensor] = None):
        super().__init__(what)
        self.epoch, self.batch, self.what, self.x = epoch, batch, what, x


class TrainingLoop:
    """Trains ``trainer``'s model from its state's epoch to ``cfg.epochs`` (see the module
    docstring). ``device_loop``: run each epoch's steps on the device (None: on CUDA only, where
    they are captured as one CUDA graph; True also runs them uncaptured on the CPU)."""

    def __init__(self, trainer: "Trainer", device_loop: Optional[bool] = None):
        self.trainer, self.device_loop = trainer, device_loop
        self.graphed: Optional[GraphedSteps] = None
        self.notes: list[str] = []  # how the steps run, for the console (see prepare)
        self._train_split: Optional[torch.Tensor] = None  # binarized once, scored every epoch
        data, optim = trainer.data, trainer.cfg.optim
        self.labelled = None if data.labelled is None else \
            LabelledDraws(data, labelled_per_step(data, optim.batch_size, optim.labelled_batch_size))

    def train_split(self) -> torch.Tensor:
        """The training split as ``train_elbo`` scores it: fixed, so binarized once per fit
        (a 60,000-image draw) rather than after every epoch."""
        if self._train_split is None:
            self._train_split = self.trainer.data.split("train")
        return self._train_split

    def prepare(self) -> None:
        """Compile the step for the training batch shape (random stream untouched) and choose
        where the steps run; :attr:`notes` says how, one line each."""
        t, cfg = self.trainer, self.trainer.cfg
        devices = [t.device] if t.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            batch = (t.data.train_batch(torch.arange(cfg.optim.batch_size, device=t.device)[t.share]),)
            if self.labelled is not None:
                batch += self.labelled.first()
        self.notes = [f"step: {guarded(t.step.prepare, batch, t.state.epoch + 1, 0)}"]
        self.graphed, note = (None, None) if t.streamed else device_steps(
            t.step, t.optimizer, t.data, cfg.optim.batch_size, t.device, t.ranks.distributed, self.device_loop)
        self.notes += [n for n in (t.stream_note, note) if n]

    def run(self) -> None:
        """Train the remaining epochs (fewer if a callback stops the run)."""
        t = self.trainer
        self.prepare()
        t.callbacks.call_together("on_train_start", t)
        # An epoch's seconds run from the end of the previous epoch's record, so that the previous
        # checkpoint write and log line are counted too: wall_seconds is the run's training time.
        self._clock = time.perf_counter()
        for epoch in range(t.state.epoch + 1, t.cfg.optim.epochs + 1):
            t.callbacks.call("on_epoch_start", t, epoch)
            start = time.perf_counter()
            train_loss = self.train_epoch(epoch)
            train_seconds = time.perf_counter() - start
            if not torch.stack([torch.isfinite(p).all() for p in t.model.parameters()]).all():
                raise Diverged(epoch, None, "a parameter became NaN or infinite")
            record, stop = on_main(lambda: self.end_epoch(epoch, train_loss, train_seconds))
            if not t.ranks.main:  # rank 0 made the record, and its callbacks have seen it
                t.state.record(record)
                t.callbacks.call("on_epoch_end", t, record)
            if stop:
                t.state.stop_reason = stop
                break

    def end_epoch(self, epoch: int, train_loss: float, train_seconds: float) -> tuple[dict[str, Any], Optional[str]]:
        """Score the epoch and hand its record to the callbacks; returns the record and why the
        run stops here, if a callback says so (rank 0's work in a torchrun job)."""
        t, cfg = self.trainer, self.trainer.cfg
        record = {"epoch": epoch, "step": t.state.step, "train_loss": train_loss, "test_elbo": t.evaluate()}
        if t.data.valid is not None:
            record["valid_elbo"] = t.evaluate(t.data.valid)
        if cfg.run.train_elbo:
            record["train_elbo"] = t.evaluate(self.train_split())
        if t.data.labelled is not None:  # the classifier q(y | x) of a semi-supervised run
            record["test_accuracy"] = t.accuracy("test")
            if t.data.valid is not None and t.data.valid_labels is not None:
                record["valid_accuracy"] = t.accuracy("valid")
        for key in ("test_elbo", "valid_elbo", "train_elbo"):
            if key in record and not math.isfinite(record[key]):
                raise Diverged(epoch, None, f"the {key.split('_')[0]} ELBO is {record[key]}")
        if reports_bits_per_dim(t.model):  # 8-bit data: each ELBO in bits/dim too
            values = t.data.test.shape[-1]
            record.update({f"{key.split('_')[0]}_bits_per_dim": bits_per_dim(record[key], values)
                           for key in ("test_elbo", "valid_elbo", "train_elbo") if key in record})
        record.update(scheduled_values(cfg, t.state.step - 1, self.batches_per_epoch()))  # beta, temperature
        now = time.perf_counter()
        seconds, self._clock = now - self._clock, now
        record.update(train_seconds=train_seconds, epoch_seconds=seconds,
                      wall_seconds=t.state.wall_seconds + seconds)
        t.state.record(record)
        t.callbacks.call("on_epoch_end", t, record)
        return record, t.callbacks.stop_reason(t)

    def batches_per_epoch(self) -> int:
        return len(self.trainer.data.train) // self.trainer.cfg.optim.batch_size

    def train_epoch(self, epoch: int) -> float:
        """The epoch's steps; returns the mean training loss per image."""
        t, cfg = self.trainer, self.trainer.cfg
        batch, num_batches = cfg.optim.batch_size, self.batches_per_epoch()
        # derived from the epoch: resume needs no state
        set_learning_rate(t.optimizer, learning_rate(cfg.optim.lr_schedule, cfg.optim.lr, epoch, cfg.optim.lr_schedule_scale))
        if t.ranks.distributed:
            order = epoch_order(len(t.data.train), cfg.run.seed, epoch, t.device)
            seed_rank_stream(cfg.run.seed, epoch, t.ranks.rank)
        else:
            order = torch.randperm(len(t.data.train), device=t.device)
        if self.labelled is not None:
            self.labelled.start_epoch(num_batches, t.device)
        t.model.train()
        if self.graphed is not None:
            return self._train_on_device(epoch, order, num_batches)
        mine, total, on_steps = t.share, 0.0, t.callbacks.hook("on_steps")
        images = batch + (self.labelled.per_step if self.labelled is not None else 0)  # per step
        indices = [order[b * batch:(b + 1) * batch][mine] for b in range(num_batches)]
        streamed = HostBatches(t.data.train, t.device).epoch(indices) if t.streamed else None
        for b in range(num_batches):
            t.step.set_inputs(scheduled_values(cfg, t.state.step, num_batches))
            x = t.data.presented(next(streamed)) if streamed is not None else t.data.train_batch(indices[b])
            inputs = (x, *self.labelled.batch(b)) if self.labelled is not None else (x,)
            loss = guarded(t.step, inputs, epoch, b)
            if not math.isfinite(loss):
                raise Diverged(epoch, b, f"the training loss became {loss}", x)
            total += loss
            t.state.step += 1
            for hook in on_steps:
                hook(t, b + 1, num_batches, loss / images)
        return total / (num_batches * images)

    def _train_on_device(self, epoch: int, order: torch.Tensor, num_batches: int) -> float:
        t, batch, done = self.trainer, self.trainer.cfg.optim.batch_size, 0
        self.graphed.start_epoch(order)
        while done < num_batches:
            steps = min(READ_EVERY, num_batches - done)
            self.graphed.run(steps)
            total, bad = self.graphed.read()
            if bad is not None:
                index, loss = bad
                raise Diverged(epoch, index, f"the training loss became {loss}",
                               t.data.train_batch(order[index * batch:(index + 1) * batch]))
            done += steps
            t.state.step += steps
            t.callbacks.call("on_steps", t, done, num_batches, total / (done * batch))
        return total / (num_batches * batch)


def guarded(step: Callable, inputs: tuple[torch.Tensor, ...], epoch: int, batch: int):
    """``step(*inputs)``, with Pyro's validation errors about NaN parameters as a divergence."""
    x = inputs[0]
    try:
        return step(*inputs)
    except ValueError as e:  # Pyro's validation (first step) saw a NaN parameter
        if "found invalid values" not in str(e):
            raise
        raise Diverged(epoch, batch, "a distribution got invalid parameters ("
                       f"{str(e).splitlines()[0].rstrip(':')})", x) from None

