"""A handler whose effect hangs on one number that changes between training steps.

KL warm-up's beta (:class:`~pyro_vae.infer.warmup.LatentScale`) and a relaxation's temperature
(:class:`~pyro_vae.infer.relax.Relaxation`) are Pyro handlers around the model and the guide
whose effect depends on a schedule. The number is a 0-dim tensor changed *in place* between
steps, never a Python float: the compiled step (:class:`~pyro_vae.infer.lowering.LoweredStep`)
takes each handler's tensor as an input of its graph, read anew on every call, so a value that
changes is never baked into the graph and one trace serves every step.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from pyro.poutine.messenger import Messenger


class StepInput(Messenger):
    """A Pyro handler reading ``value``, a 0-dim tensor set between steps by :meth:`set`.
    ``changes``: what changes it every step, for the run's log (e.g. "KL warm-up changes beta"),
    or None where it stays fixed through the run."""

    def __init__(self, value: torch.Tensor, changes: Optional[str] = None):
        super().__init__()
        self.value, self.changes = value, changes

    def set(self, value: float) -> None:
        """The value of the next steps (in place: a compiled step reads this tensor)."""
        self.value.fill_(value)

    @contextmanager
    def holding(self, value: torch.Tensor) -> Iterator[None]:
        """``value`` in place of the handler's tensor for a while: while a step is traced, the
        graph's input (a proxy) stands for it."""
        saved, self.value = self.value, value
        try:
            yield
        finally:
            self.value = saved
