"""A fit that stops early says why in one line, and what was kept (:meth:`Trainer.kept`).

Both callbacks run on every rank: each rank raises its own error, and rank 0 alone reports it
(``mark_reported``), as every rank stops at the same point (the summed loss, the same
parameters, the same Ctrl-C from torchrun).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch

from pyro_vae.core.console import describe_unexpected
from pyro_vae.core.distributed import mark_reported
from pyro_vae.core.errors import InterruptedRunError, PyroVAEError, TrainingDivergedError
from pyro_vae.core.options import option
from pyro_vae.training.callbacks import Callback
from pyro_vae.training.divergence import likely_cause
from pyro_vae.training.loop import Diverged

if TYPE_CHECKING:
    from pyro_vae.training.trainer import Trainer


class DivergenceReport(Callback):
    """A NaN or infinite loss, parameter or ELBO (:class:`~pyro_vae.training.loop.Diverged`) as a
    :class:`~pyro_vae.core.errors.TrainingDivergedError` with its likely cause
    (:mod:`pyro_vae.training.divergence`) and what to do: check the prior, or lower the learning
    rate (the command that continues the run with it)."""

    every_rank = True

    def on_exception(self, trainer: "Trainer", error: BaseException) -> Optional[BaseException]:
        if not isinstance(error, Diverged):
            return None
        cfg = trainer.cfg
        where = f"epoch {error.epoch}" + (f", batch {error.batch}" if error.batch is not None else "")
        with trainer.param_scope():
            cause = likely_cause(trainer.model, error.x, cfg.prior.name, trainer.structure.top.name)
        if cause.prior:
            advice = ("Check the prior's settings (prior_df, prior_components, prior_options) or, "
                      "for a prior of your own, its forward() and log_prob.")
            kept = trainer.kept()
        else:
            lower = f"{cfg.optim.lr / 10:g}"
            advice = f"Lower the learning rate (now {cfg.optim.lr:g}), e.g. to {lower}."
            kept = trainer.kept("--lr", lower)
        return mark_reported(TrainingDivergedError(f"training diverged at {where}: {error.what}. Likely "
                                                   f"cause: {cause.text}. {advice} {kept}"))


class FailureReport(Callback):
    """Ctrl-C, a GPU out of memory, or an error in the user's code, as one line with what was
    kept; pyro-vae's own errors pass as they are."""

    every_rank = True

    def on_exception(self, trainer: "Trainer", error: BaseException) -> Optional[BaseException]:
        state, cfg = trainer.state, trainer.cfg
        when = f"during epoch {state.epoch + 1}" if state.epoch < cfg.optim.epochs else None
        if isinstance(error, KeyboardInterrupt):
            when = when or "after training, while evaluating or drawing figures"
            return mark_reported(InterruptedRunError(f"interrupted {when}. {trainer.kept()}"))
        if isinstance(error, PyroVAEError) or not isinstance(error, Exception):
            return None
        if isinstance(error, torch.cuda.OutOfMemoryError):  # this rank's GPU, said by it
            detail = ". ".join(" ".join(str(error).split()).split(". ")[:2])  # "CUDA out of memory. Tried to allocate 2.00 GiB"
            particles = f" or {option('num_particles')}" if cfg.objective.num_particles > 1 else ""
            return PyroVAEError(f"the GPU ran out of memory {when or 'after training'} ({detail}): lower "
                                f"{option('batch_size')} (now {cfg.optim.batch_size}){particles}, or train on a "
                                f"GPU with more free memory. {trainer.kept()}")
        failure = PyroVAEError(f"{describe_unexpected(error)}. {trainer.kept()}")
        failure.__cause__ = error  # the user's model or prior failed after its start-up probe
        return failure
