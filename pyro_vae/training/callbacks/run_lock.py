"""The run directory, made and locked for the whole fit (:mod:`pyro_vae.runs.lock`)."""

from __future__ import annotations

from contextlib import ExitStack, suppress
from typing import TYPE_CHECKING, Optional

from pyro_vae.core.commands import resume_command
from pyro_vae.core.errors import CheckpointError
from pyro_vae.runs.lock import RunLock
from pyro_vae.training.callbacks import Callback

if TYPE_CHECKING:
    from pyro_vae.training.trainer import Trainer


class RunDirectoryLock(Callback):
    """First in, last out: the run directory is created and locked before anything is written,
    and released after everything is; a new run that saved no epoch leaves no directory behind
    (nor its lock file).

    Between reading the directory (building the trainer) and locking it, another process may
    have written it: a new run checks again that it is empty, a resumed one that its checkpoint
    is the one it read. A resumed run's config.yaml and metrics.jsonl are then made to agree with
    its checkpoint, the source of truth (a crash between the writes can leave them behind).
    """

    def __init__(self) -> None:
        self._held: Optional[ExitStack] = None
        self._lock: Optional[RunLock] = None
        self._created = False

    def on_fit_start(self, trainer: "Trainer") -> None:
        run = trainer.run
        self._created = run.make()
        self._held = ExitStack()
        self._lock = self._held.enter_context(run.lock())
        try:
            self._check_unchanged(trainer)
            if trainer.state.saved_epoch:
                run.agree_with_checkpoint(trainer.saved_checkpoint)
        except BaseException:
            self.on_fit_exit(trainer)
            raise

    def _check_unchanged(self, trainer: "Trainer") -> None:
        run = trainer.run
        if trainer.state.saved_epoch == 0:
            run.check_new()
        elif trainer.checkpoint_signature is not None and \
                run.checkpoint_signature() != trainer.checkpoint_signature:
            raise CheckpointError(f"the checkpoint in {run.path} changed after this process "
                                  "read it (another process wrote it); run "
                                  f"{resume_command(run.path)} again")

    def on_fit_exit(self, trainer: "Trainer") -> None:
        held, self._held = self._held, None
        if held is None:
            return
        with held:  # the lock is released last
            if trainer.state.saved_epoch == 0:
                self._lock.discard()
                if self._created:
                    with suppress(OSError):
                        trainer.run.path.rmdir()
