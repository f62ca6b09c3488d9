"""A dataset as whole tensors on the training device.

MNIST-sized data fits in memory many times over, so each split is one ``(N, C H W)`` float
tensor in [0, 1] and minibatches are index slices of it: no per-item Python loading. How the
values reach the model (binarized, dequantized, as they are) is :mod:`pyro_vae.data.presentation`'s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from pyro_vae.core.errors import ConfigError, DatasetNotFoundError
from pyro_vae.data.binarize import binarize_fixed
from pyro_vae.data.dequantize import dequantize, dequantize_fixed

IMAGE_SHAPE = (1, 28, 28)


def hold_out(train: torch.Tensor, labels: Optional[torch.Tensor], valid_size: Optional[int],
             where: str = "all") -> tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor],
                                          Optional[torch.Tensor]]:
    """``(train, valid, train_labels, valid_labels)``: the last ``valid_size`` training images (and
    labels) held out as the validation split, as the VampPrior code does (None: no split). A
    ``valid_size`` that leaves no training images is refused (``where``: the images' source)."""
    if not valid_size:
        return train, None, labels, None
    if not valid_size < len(train):
        raise ConfigError(f"valid_size {valid_size} leaves no training images ({len(train)} in {where})")
    cut = len(train) - valid_size
    return (train[:cut], train[cut:], None if labels is None else labels[:cut],
            None if labels is None else labels[cut:])


@dataclass
class LabelledSet:
    """The training images whose labels a semi-supervised run keeps (``labels``): their pixels as
    the training split holds them (grey levels are binarized afresh per batch, as the rest are),
    their labels as one-hot rows ``(N, C)`` (the value of the observed label site ``"y"``), and
    where they were in the training split (``index``, for the run's record)."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor

    def __len__(self) -> int:
        return len(self.x)

    @property
    def classes(self) -> int:
        return self.y.shape[-1]


@dataclass
class VAEData:
    """The splits of one dataset on one device, plus what the model needs to know about them.

    ``labelled``: in a semi-supervised run, the training images that keep their labels (then
    ``train`` holds the others, unlabelled); None otherwise (see
    :func:`~pyro_vae.data.labels.keep_labels`).

    ``kind``: what the evaluation splits hold and every training batch is, ``binary`` (0/1),
    ``levels`` (8-bit levels k / 255) or ``continuous`` (values in [0, 1]); with
    ``dynamic_binarization`` the training split holds grey levels drawn as binary pixels afresh
    per batch, with ``dequantized`` 8-bit levels dequantized afresh per batch (see
    :mod:`~pyro_vae.data.presentation`)."""

    name: str
    train: torch.Tensor  # (N, C H W) in [0, 1]: grey levels if dynamic_binarization or dequantized
    test: torch.Tensor  # (M, C H W) of the kind
    valid: Optional[torch.Tensor] = None
    train_labels: Optional[torch.Tensor] = None
    test_labels: Optional[torch.Tensor] = None
    dynamic_binarization: bool = False
    image_shape: tuple[int, int, int] = IMAGE_SHAPE
    valid_labels: Optional[torch.Tensor] = None
    labelled: Optional[LabelledSet] = None
    kind: str = "binary"
    dequantized: bool = False

    def train_batch(self, index: torch.Tensor) -> torch.Tensor:
        """The training examples at ``index``, on ``index``'s device (the training split may stay
        in host memory: :mod:`~pyro_vae.data.streaming`), binarized or dequantized afresh where
        the run does so."""
        if self.train.device != index.device:
            return self.presented(self.train[index.to(self.train.device)].to(index.device))
        return self.presented(self.train[index])

    def labelled_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``: the labelled training images at ``index`` (presented as the others) and
        their one-hot labels."""
        return self.presented(self.labelled.x[index]), self.labelled.y[index]

    def presented(self, x: torch.Tensor) -> torch.Tensor:
        """Training images as the model sees them: a fresh binarization or dequantization."""
        if self.dynamic_binarization:
            return torch.bernoulli(x)
        return dequantize(x) if self.dequantized else x

    def with_kind(self, kind: str) -> "VAEData":
        return dataclasses.replace(self, kind=kind)

    def split(self, name: str) -> torch.Tensor:
        """An evaluation split by name: ``test``, ``valid`` or ``train`` (presented once, with the
        fixed seed, where training presents it afresh)."""
        if name == "test":
            return self.test
        if name == "valid":
            if self.valid is None:
                raise DatasetNotFoundError(f"{self.name} has no validation split; use test or train")
            return self.valid
        if name == "train":
            if self.dynamic_binarization:
                return binarize_fixed(self.train)
            return dequantize_fixed(self.train) if self.dequantized else self.train
        raise ValueError(f"unknown split {name!r}; choose one of test, valid, train")

    def split_labels(self, name: str) -> Optional[torch.Tensor]:
        """The class labels of an evaluation split (None where the dataset has none)."""
        return {"test": self.test_labels, "valid": self.valid_labels, "train": self.train_labels}[name]

    @property
    def mean_pixel(self) -> torch.Tensor:
        """Per-pixel training mean (initialises the decoder's output bias)."""
        return self.train.mean(0)

    def mapped(self, fn: Callable[[str, torch.Tensor], torch.Tensor]) -> "VAEData":
        """A copy with ``fn(field name, tensor)`` applied to every split and label tensor (the
        labelled set's included): cutting to limits, moving to a device."""
        def apply(name: str, value):
            if value is None:
                return None
            if isinstance(value, LabelledSet):
                return LabelledSet(*(fn(f"labelled_{f.name}", getattr(value, f.name))
                                     for f in dataclasses.fields(value)))
            return fn(name, value) if isinstance(value, torch.Tensor) else value
        return dataclasses.replace(self, **{f.name: apply(f.name, getattr(self, f.name))
                                            for f in dataclasses.fields(self)
                                            if isinstance(getattr(self, f.name), (torch.Tensor, LabelledSet))})
