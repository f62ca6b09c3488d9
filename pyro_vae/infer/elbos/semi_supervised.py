"""The semi-supervised objective of Kingma et al. (2014): one step's loss over unlabelled images,
labelled images, and the classifier's auxiliary term.

    loss = -sum_u U(x_u) - sum_l [L(x_l, y_l) + A log q(y_l | x_l)]

``U(x)``: the ELBO of ``model(x)`` / ``guide(x)``, the label site ``"y"`` latent (enumerated by
``traceenum``, sampled by the others); ``L(x, y)``: the ELBO of ``model(x, y)`` / ``guide(x, y)``,
``"y"`` observed in the model and absent from the guide (Pyro's ss-vae convention); both by the
same objective. ``A``: ``aux_loss`` (Pyro's ``aux_loss_multiplier``): without it q(y | x) learns
only from the unlabelled term, where it is a posterior over classes that need not be the digits.
The term ``log q(y_l | x_l)`` is the guide's own label site, run with ``"y"`` conditioned on the
true label (an observed site: no relaxation or KL warm-up touches it).
"""

from __future__ import annotations

from typing import Callable

import torch
from pyro import poutine
from pyro.infer import ELBO

from pyro_vae.infer.lowering import differentiable_loss
from pyro_vae.models.sites import LABEL_SITE


def classifier_log_prob(guide: Callable, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(B,)``: log q(y | x) of the guide's label site at the one-hot labels ``y``."""
    trace = poutine.trace(poutine.condition(guide, data={LABEL_SITE: y})).get_trace(x)
    site = trace.nodes[LABEL_SITE]
    return site["fn"].log_prob(site["value"])


class SemiSupervisedELBO(ELBO):
    """``objective`` over a step's ``(x, x_labelled, y_labelled)`` (see the module docstring);
    called with ``x`` alone it is ``objective`` itself (evaluation, an unlabelled batch)."""

    def __init__(self, objective: ELBO, aux_loss: float = 0.0):
        super().__init__()
        self.objective, self.aux_loss = objective, aux_loss

    def _get_trace(self, model, guide, args, kwargs):
        return self.objective._get_trace(model, guide, args, kwargs)

    def _auxiliary(self, guide: Callable, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -self.aux_loss * classifier_log_prob(guide, x, y).sum()

    def differentiable_loss(self, model: Callable, guide: Callable, x: torch.Tensor,
                            x_labelled: torch.Tensor = None, y_labelled: torch.Tensor = None) -> torch.Tensor:
        loss = differentiable_loss(self.objective, model, guide, x)
        if x_labelled is None:
            return loss
        loss = loss + differentiable_loss(self.objective, model, guide, x_labelled, y_labelled)
        return loss + self._auxiliary(guide, x_labelled, y_labelled) if self.aux_loss else loss

    def loss(self, model: Callable, guide: Callable, x: torch.Tensor, x_labelled: torch.Tensor = None,
             y_labelled: torch.Tensor = None) -> float:
        total = self.objective.loss(model, guide, x)
        if x_labelled is None:
            return total
        total += self.objective.loss(model, guide, x_labelled, y_labelled)
        if self.aux_loss:
            with torch.no_grad():
                total += self._auxiliary(guide, x_labelled, y_labelled).item()
        return total

    def loss_and_grads(self, model: Callable, guide: Callable, x: torch.Tensor,
                       x_labelled: torch.Tensor = None, y_labelled: torch.Tensor = None) -> float:
        """Each term's gradients accumulate into the parameters' ``.grad``, as Pyro's do."""
        total = self.objective.loss_and_grads(model, guide, x)
        if x_labelled is None:
            return total
        total += self.objective.loss_and_grads(model, guide, x_labelled, y_labelled)
        if self.aux_loss:
            auxiliary = self._auxiliary(guide, x_labelled, y_labelled)
            auxiliary.backward()
            total += auxiliary.item()
        return total
