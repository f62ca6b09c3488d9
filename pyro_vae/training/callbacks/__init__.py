"""Training callbacks: what a run does around its loop, one job each.

The :class:`~pyro_vae.training.loop.TrainingLoop` trains and scores epochs; everything else is a
:class:`Callback` that the :class:`~pyro_vae.training.trainer.Trainer` lists in this order:

- :class:`~.run_lock.RunDirectoryLock`: the run directory made and locked for the whole fit;
- :class:`~.checkpoint.Checkpointing` (``best.pt``, then ``checkpoint.pt``, config.yaml and
  metrics.jsonl after every epoch), or in memory :class:`~.checkpoint.BestWeightsInMemory`;
- :class:`~.early_stopping.EarlyStopping` and :class:`~.time_limit.TimeLimit` (``max_minutes``);
- :class:`~.console.ConsoleReport`: the log lines and the progress bar;
- :class:`~.tensorboard.TensorBoardCallback` (``tensorboard``);
- :class:`~.final.FinalEvaluation` (``eval_samples``) and :class:`~.final.Figures` (``plots``);
- :class:`~.failures.DivergenceReport` and :class:`~.failures.FailureReport`: a stop (a NaN, Ctrl-C,
  a full disk, an error in the user's model) as one message that says what was kept;

then the user's own (``Trainer(..., callbacks=[...])``). A new tracker (W&B, MLflow) is one more
file here with the same hooks as the TensorBoard one.

In a torchrun job rank 0 alone writes and prints: a callback runs there only, unless it sets
:attr:`Callback.every_rank` (then on every rank, e.g. an evaluation that the ranks share). Its
``on_fit_start``, ``on_train_start`` and ``on_fit_end`` run with the ranks together, so that an
error there stops every rank with one message; ``on_epoch_end`` runs on rank 0 before the other
ranks learn the epoch's record; ``on_epoch_start`` and ``on_steps`` run without any exchange
between ranks (keep them light: they must not fail).
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from pyro_vae.core.distributed import on_main
from pyro_vae.core.errors import ConfigError

if TYPE_CHECKING:
    from pyro_vae.training.trainer import Trainer

__all__ = ["Callback", "CallbackList"]


class Callback:
    """Hooks the trainer calls; each does nothing unless a subclass overrides it. ``trainer``
    gives the run: ``trainer.cfg``, ``.model``, ``.data``, ``.state`` (a
    :class:`~pyro_vae.training.state.TrainingState`), ``.run`` (the run directory, None in
    memory), ``.log``."""

    every_rank = False  # run on every rank of a torchrun job, not on rank 0 alone

    def on_fit_start(self, trainer: "Trainer") -> None:
        """The fit begins (the run directory is locked; nothing is compiled or trained yet)."""

    def on_train_start(self, trainer: "Trainer") -> None:
        """The step is compiled and the first epoch is about to start
        (``trainer.loop.notes`` says how the steps run)."""

    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None:
        """Epoch ``epoch`` (counted from 1) is about to train."""

    def on_steps(self, trainer: "Trainer", done: int, total: int, loss: float) -> None:
        """``done`` of the epoch's ``total`` steps have run; ``loss``: the latest loss per image
        (every step on the host; on the device, the epoch's mean so far, read every few steps)."""

    def on_epoch_end(self, trainer: "Trainer", record: dict[str, Any]) -> None:
        """The epoch is scored: ``record`` is its line of metrics.jsonl, already appended to
        ``trainer.state.history`` (``trainer.state.is_best(epoch)``: a new best validation ELBO)."""

    def should_stop(self, trainer: "Trainer") -> Optional[str]:
        """Why training stops after this epoch (asked after ``on_epoch_end``), or None."""
        return None

    def on_fit_end(self, trainer: "Trainer") -> None:
        """Training is over (every epoch done, or stopped by :meth:`should_stop`)."""

    def on_exception(self, trainer: "Trainer", error: BaseException) -> Optional[BaseException]:
        """The fit stops with ``error`` (Ctrl-C included). Return the exception to raise instead,
        or None; the first callback (in order) that returns one decides."""
        return None

    def on_fit_exit(self, trainer: "Trainer") -> None:
        """The fit is over, whichever way (called in reverse order: release what you hold)."""


def _overrides(callback: Callback, name: str) -> bool:
    return getattr(type(callback), name) is not getattr(Callback, name)


class CallbackList:
    """The run's callbacks, called in order (see the module docstring for which rank runs what)."""

    def __init__(self, callbacks: Iterable[Callback], main: bool = True):
        self.callbacks, self.main = list(callbacks), main
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise ConfigError(f"callbacks must be pyro_vae.training.callbacks.Callback instances, got "
                                  f"{type(callback).__name__}")

    def __iter__(self):
        return iter(self.callbacks)

    def _here(self, name: str) -> list[Callback]:
        return [c for c in self.callbacks if (self.main or c.every_rank) and _overrides(c, name)]

    def hook(self, name: str) -> list[Callable]:
        """The bound hooks ``name`` of the callbacks that run on this rank (for a hot loop)."""
        return [getattr(c, name) for c in self._here(name)]

    def call(self, name: str, *args: Any) -> None:
        """Hook ``name`` of every callback that runs on this rank, in order."""
        for hook in self.hook(name):
            hook(*args)

    def call_together(self, name: str, trainer: "Trainer") -> None:
        """Hook ``name`` of every callback, in order, the ranks together: a rank-0 callback's
        error stops every rank (every rank walks the same list; see :func:`on_main`)."""
        for callback in self.callbacks:
            if not _overrides(callback, name):
                continue
            hook = getattr(callback, name)
            if callback.every_rank:
                hook(trainer)
            else:
                on_main(lambda: hook(trainer), shared=False)

    def stop_reason(self, trainer: "Trainer") -> Optional[str]:
        for callback in self._here("should_stop"):
            reason = callback.should_stop(trainer)
            if reason:
                return reason
        return None

    def on_exception(self, trainer: "Trainer", error: BaseException) -> Optional[BaseException]:
        """The exception to raise for ``error``: the first callback's answer. Every callback is
        told, even after one has answered."""
        answer = None
        for callback in self._here("on_exception"):
            replacement = callback.on_exception(trainer, error)
            if answer is None:
                answer = replacement
        return answer

    def on_fit_exit(self, trainer: "Trainer") -> None:
        """Every callback's ``on_fit_exit`` in reverse order, each even if a later one failed."""
        with ExitStack() as stack:
            for callback in self._here("on_fit_exit"):
                stack.callback(callback.on_fit_exit, trainer)
