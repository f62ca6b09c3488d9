"""Data as the public API takes it: a registered dataset's name, a :class:`~pyro_vae.data.VAEData`,
or tensors of images.

Tensors become a VAEData as a dataset's loader would make one: images flattened to ``(N, D)``
floats in [0, 1] with their ``image_shape``, as they are (binary, 8-bit levels or other values);
the trainer presents them for the run's likelihood as it does a loaded dataset (grey levels
binarized afresh for every training batch and once, with the fixed evaluation seed, for the test
split, for a Bernoulli; see :mod:`~pyro_vae.data.presentation`). A validation split is held out
only where ``valid_size`` asks for one (the last N training images, as for MNIST).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np
import torch

from pyro_vae.config import shown
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.registry import instance_name
from pyro_vae.data import DATASETS, VAEData, binarize_fixed
from pyro_vae.data.arrays import flat_images, values_kind, widest_kind
from pyro_vae.data.dequantize import dequantize_fixed
from pyro_vae.data.registry import limited
from pyro_vae.data.vaedata import hold_out

TENSORS = "tensors"  # the name of a VAEData made from tensors


def images(value: Any, name: str = "x") -> tuple[torch.Tensor, tuple[int, int, int]]:
    """``value`` (a tensor or array of images: ``(N, D)``, ``(N, H, W)`` or ``(N, C, H, W)``) as
    ``(N, C*H*W)`` floats, and the image shape; pixel values must lie in [0, 1]. A one-line
    ConfigError naming parameter ``name`` otherwise."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise ConfigError(f"{name}= must be a tensor of images, (N, D), (N, H, W) or (N, C, H, W), "
                          f"with values in [0, 1]; got {type(value).__name__}")
    return flat_images(value, f"{name}=")


def is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def scored_images(value: Any, scores: str = "binary", name: str = "x") -> torch.Tensor:
    """:func:`images`, which must be what the model's likelihood scores (``scores``: its data
    kind): binary (0 or 1) for a Bernoulli, 8-bit levels for a discretized one, any values in
    [0, 1] for a density."""
    x, _ = images(value, name)
    kind = values_kind(x)
    if scores == "binary" and kind != "binary":
        raise ConfigError(f"{name}= holds grey levels; this model's log p(x) is of binary images (0 or 1): "
                          "pass data.test (binarized once), or binarize them, e.g. torch.bernoulli(x)")
    if scores == "levels" and kind == "continuous":
        raise ConfigError(f"{name}= holds values that are not 8-bit levels (k / 255), and this model's "
                          "likelihood is of 8-bit data: pass data.test, or round them, torch.round(x * 255) / 255")
    return x


def from_tensors(train: Any, test: Any = None) -> VAEData:
    """A VAEData of ``train`` (and ``test``; without one, the training images) as they are, its
    ``kind`` read off the values: the trainer presents them for the run's likelihood (binarized
    for a Bernoulli, as MNIST is; see :mod:`~pyro_vae.data.presentation`)."""
    x_train, shape = images(train, "data")
    x_test, test_shape = images(test, "data") if test is not None else (x_train, shape)
    if test_shape != shape:
        raise ConfigError(f"data=: the training images have shape {shape} and the test images "
                          f"{test_shape}; they must be the same")
    return VAEData(TENSORS, x_train, x_test, image_shape=shape, kind=widest_kind(x_train, x_test))


def _hold_out(data: VAEData, valid_size: int) -> VAEData:
    """The last ``valid_size`` training images as the validation split: as they are (presenting
    binarizes or dequantizes it once, like the test split), or, from data presented already (a
    loaded dataset), binarized or dequantized once with the evaluation seed."""
    train, valid, train_labels, valid_labels = hold_out(data.train, data.train_labels, valid_size,
                                                        where="the images passed as data=")
    if data.dynamic_binarization:  # presented already: held out as an evaluation split is, once
        valid = binarize_fixed(valid)
    elif data.dequantized:
        valid = dequantize_fixed(valid)
    return dataclasses.replace(data, train=train, valid=valid, train_labels=train_labels,
                               valid_labels=valid_labels)


def data_argument(data: Any, values: dict[str, Any]) -> Optional[VAEData]:
    """Record ``data`` in the config ``values`` and return it as a VAEData (None for a dataset's
    name, which the trainer loads). ``valid_size``, ``limit_train`` and ``limit_test`` in
    ``values`` apply to it as they would to the named data. A VAEData of a registered dataset
    (from :func:`~pyro_vae.data.load_dataset`) is recorded by that name and its sizes, which load
    the same images again; anything else by its class (no name can load it again)."""
    if data is None:
        return None
    if isinstance(data, str):
        values["dataset"] = data
        return None
    if isinstance(data, VAEData):
        if not isinstance(data.train, torch.Tensor) or not isinstance(data.test, torch.Tensor):
            raise ConfigError("data= is a VAEData whose train and test splits must be tensors")
    elif isinstance(data, (tuple, list)) and 1 <= len(data) <= 2:
        data = from_tensors(*data)
    elif isinstance(data, (torch.Tensor, np.ndarray)):
        data = from_tensors(data)
    else:
        raise ConfigError(f"data= must be a dataset name ({', '.join(DATASETS.names())}), a VAEData "
                          f"(pyro_vae.load_dataset), or tensors of images, train or (train, test); got "
                          f"{type(data).__name__}")
    named = data.name in DATASETS.names()
    values["dataset"] = data.name if named else instance_name(data)
    valid_size = values.get("valid_size")
    if valid_size is not None:
        if data.valid is not None:
            raise ConfigError(f"data= has a validation split already ({len(data.valid)} images): drop "
                              f"valid_size={shown(valid_size)}")
        data = _hold_out(data, valid_size)
    elif data.valid is not None and not (named and DATASETS.get(data.name).capabilities["validation"]):
        values["valid_size"] = len(data.valid)  # so that the saved config says there is one
    data = limited(data, values.get("limit_train"), values.get("limit_test"))
    if named:
        values.update(limit_train=len(data.train), limit_test=len(data.test))
    return data


def on_device(data: VAEData, device: torch.device) -> VAEData:
    """``data`` with every split on ``device``."""
    return data.mapped(lambda name, t: t.to(device))
