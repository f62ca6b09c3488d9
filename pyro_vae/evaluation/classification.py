"""Classification accuracy of a model's q(y | x): the guide's label site ``"y"`` read as a
classifier (:func:`~pyro_vae.infer.labels.class_probabilities`), its most probable class against
the true labels, as Pyro's ss-vae tutorial and Kingma et al. (2014) report it."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from pyro import poutine

from pyro_vae.infer.labels import class_probabilities
from pyro_vae.models.sites import LABEL_SITE, isolated


@torch.no_grad()
def predicted_classes(guide: Callable, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """``(N,)``: the most probable class of q(y | x) for every row of ``x``."""
    return torch.cat([class_probabilities(guide, x[i:i + batch_size]).argmax(-1)
                      for i in range(0, len(x), batch_size)])


def correct(guide: Callable, x: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> int:
    """How many rows of ``x`` have their label (class indices) as q(y | x)'s most probable class."""
    return int((predicted_classes(guide, x, batch_size) == labels.to(x.device)).sum())


def accuracy(guide: Callable, x: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """The fraction of rows of ``x`` whose most probable class is their label (class indices)."""
    return correct(guide, x, labels, batch_size) / len(x)


def has_label_site(guide: Callable, x: torch.Tensor) -> bool:
    """Whether ``guide(x)`` samples the label site ``"y"`` (run on one image, isolated)."""
    with isolated(x[:1]):
        return LABEL_SITE in poutine.trace(guide).get_trace(x[:1]).nodes


def classified(guide: Callable, x: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> Optional[int]:
    """How many rows of ``x`` q(y | x) classifies as their label, or None where the guide has no
    label site (a model that takes no labels)."""
    return correct(guide, x, labels, batch_size) if has_label_site(guide, x) else None
