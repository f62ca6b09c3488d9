"""Semi-supervised data: which training images keep their labels (``labels``), chosen as Kingma et
al. (2014) did, balanced across classes and drawn from the run's seed, and the labels as the
one-hot values of the observed label site ``"y"``.

The labelled images leave the training split: ``VAEData.train`` holds the unlabelled rest (an epoch
is a pass over them) and ``VAEData.labelled`` the labelled ones. The validation and test splits keep
all their labels, for model selection and the reported accuracy.
"""

from __future__ import annotations

import dataclasses

import torch
from torch.nn import functional as F

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import option
from pyro_vae.data.vaedata import LabelledSet, VAEData


def balanced_choice(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Sorted indices of ``count`` entries of ``labels``: ``count // C`` of each of the C classes
    present, the ``count % C`` left over given to classes drawn at random, each class's images
    drawn at random; all draws from a generator seeded with ``seed`` (on the CPU, so the choice
    is the same on every device)."""
    labels = labels.cpu()
    classes = torch.unique(labels)
    generator = torch.Generator().manual_seed(seed)
    per_class, extra = divmod(count, len(classes))
    bonus = set(torch.randperm(len(classes), generator=generator)[:extra].tolist())
    chosen = []
    for i, c in enumerate(classes.tolist()):
        pool = torch.nonzero(labels == c).flatten()
        take = per_class + (i in bonus)
        if take > len(pool):
            raise ConfigError(f"{option('labels', count)} asks for {take} labelled images of class {c}, "
                              f"but the training split has {len(pool)}; ask for fewer labels")
        chosen.append(pool[torch.randperm(len(pool), generator=generator)[:take]])
    return torch.cat(chosen).sort().values


def one_hot(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Class indices ``(N,)`` as float one-hot rows ``(N, classes)``: what the site ``"y"`` observes."""
    return F.one_hot(labels.long(), classes).float()


def keep_labels(data: VAEData, count: int, seed: int, classes: int) -> VAEData:
    """``data`` split for semi-supervised training: ``count`` training images keep their labels
    (:func:`balanced_choice` with ``seed``) as ``data.labelled``; the rest, unlabelled, are the
    training split. ``classes``: the size of the one-hot label (the model's number of classes)."""
    if data.train_labels is None:
        raise ConfigError(f"{option('labels', count)}: dataset {data.name!r} has no labels; use mnist or "
                          "fashion-mnist, or data with labels")
    if not 0 < count < len(data.train):
        raise ConfigError(f"{option('labels', count)} must keep between 1 and {len(data.train) - 1} of the "
                          f"{len(data.train)} training images' labels")
    largest = int(data.train_labels.max())
    if largest >= classes:
        raise ConfigError(f"dataset {data.name!r} has labels up to {largest}, more than the model's "
                          f"{classes} classes; use {option('categories', largest + 1)}")
    index = balanced_choice(data.train_labels, count, seed).to(data.train.device)
    rest = torch.ones(len(data.train), dtype=torch.bool, device=data.train.device)
    rest[index] = False
    labelled = LabelledSet(data.train[index], one_hot(data.train_labels[index], classes), index)
    return dataclasses.replace(data, train=data.train[rest], train_labels=data.train_labels[rest],
                               labelled=labelled)
