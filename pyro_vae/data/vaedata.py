"""A dataset as whole tensors on the training device.

MNIST-sized data fits in memory many times over, so each split is one ``(N, 784)`` float tensor
in [0, 1] and minibatches are index slices of it: no per-item Python loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from pyro_vae.core.errors import DatasetNotFoundError
from pyro_vae.data.binarize import binarize_fixed

IMAGE_SHAPE = (1, 28, 28)


@dataclass
class VAEData:
    """The splits of one dataset on one device, plus what the model needs to know about them."""

    name: str
    train: torch.Tensor  # (N, 784) in [0, 1]: grey levels if dynamic_binarization, else {0, 1}
    test: torch.Tensor  # (M, 784) in {0, 1}
    valid: Optional[torch.Tensor] = None
    train_labels: Optional[torch.Tensor] = None
    test_labels: Optional[torch.Tensor] = None
    dynamic_binarization: bool = False
    image_shape: tuple[int, int, int] = IMAGE_SHAPE

    def train_batch(self, index: torch.Tensor) -> torch.Tensor:
        """The training examples at ``index``, binarized afresh if the data are grey levels."""
        x = self.train[index]
        return torch.bernoulli(x) if self.dynamic_binarization else x

    def split(self, name: str) -> torch.Tensor:
        """An evaluation split by name: ``test``, ``valid`` or ``train`` (binary, fixed)."""
        if name == "test":
            return self.test
        if name == "valid":
            if self.valid is None:
                raise DatasetNotFoundError(f"{self.name} has no validation split; use test or train")
            return self.valid
        if name == "train":
            return binarize_fixed(self.train) if self.dynamic_binarization else self.train
        raise ValueError(f"unknown split {name!r}; choose one of test, valid, train")

    @property
    def mean_pixel(self) -> torch.Tensor:
        """Per-pixel training mean (initialises the decoder's output bias)."""
        return self.train.mean(0)
