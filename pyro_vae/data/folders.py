"""Your own images in folders: ``--dataset path/to/folder`` (torchvision's ``ImageFolder``).

The folder holds ``train/`` and ``test/`` (optionally ``valid/``), each an ``ImageFolder``: one
sub-folder per class, image files inside (PNG, JPEG, ...); the class folders' sorted names are
the labels 0, 1, .... ``--image-size H W`` (or one number for a square) resizes every image
(its shorter side to fit) and centre-crops it to H x W; without it the images must all have the
first one's size. ``--channels 1`` converts to grey, 3 to RGB (default: the first image's mode).
Pixels become 8-bit levels k / 255, every split decoded once into memory. The training images
are put in a fixed random order (seed 0) as they load: ``ImageFolder`` lists them class by class,
and ``valid_size`` holds out the last N.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from pyro_vae.core.errors import ConfigError, DatasetNotFoundError
from pyro_vae.data.vaedata import VAEData, hold_out


def _transform(image_size: Optional[Sequence[int]], channels: Optional[int]):
    from torchvision import transforms

    steps = []
    if channels is not None:
        steps.append(transforms.Grayscale(1) if channels == 1 else transforms.Lambda(lambda im: im.convert("RGB")))
    if image_size:
        size = tuple(image_size) if len(image_size) == 2 else (image_size[0], image_size[0])
        steps += [transforms.Resize(min(size)), transforms.CenterCrop(size)]
    steps.append(transforms.PILToTensor())
    return transforms.Compose(steps)


def _split(folder: Path, transform, what: str,
           classes: Optional[list[str]]) -> tuple[torch.Tensor, torch.Tensor, list[str], tuple]:
    """(images ``(N, C H W)``, labels, the class names, the image shape) of one ImageFolder."""
    from torchvision.datasets import ImageFolder

    try:
        images = ImageFolder(str(folder), transform=transform)
    except (FileNotFoundError, OSError) as e:
        raise ConfigError(f"{what}: {e}") from None
    if classes is not None and images.classes != classes:
        raise ConfigError(f"{what} has the classes {images.classes}, the training split {classes}; "
                          "each split needs the same class folders")
    pixels, labels, shape = [], [], None
    for index in range(len(images)):
        try:
            x, label = images[index]
        except OSError as e:
            raise ConfigError(f"{images.samples[index][0]} could not be read as an image ({e})") from None
        if shape is None:
            shape = tuple(x.shape)
        elif tuple(x.shape) != shape:
            raise ConfigError(f"{images.samples[index][0]} is {tuple(x.shape)} (C, H, W), the first image "
                              f"{shape}; give --image-size H W to resize and crop them all alike")
        pixels.append(x.numpy())
        labels.append(label)
    stacked = torch.from_numpy(np.stack(pixels).astype(np.float32) / 255)
    return stacked.reshape(len(stacked), -1), torch.tensor(labels), images.classes, shape


def load_folder(path: Path, valid_size: Optional[int] = None, image_size: Optional[Sequence[int]] = None,
                channels: Optional[int] = None) -> VAEData:
    """The VAEData of an image folder (see the module docstring)."""
    if not path.is_dir():
        raise DatasetNotFoundError(f"{path} is not a folder; --dataset takes a registered name, a .npz "
                                   "file, or a folder with train/ and test/ image folders")
    missing = [name for name in ("train", "test") if not (path / name).is_dir()]
    if missing:
        raise ConfigError(f"{path} has no {' or '.join(f'{m}/' for m in missing)} folder; an image dataset "
                          "is a folder with train/ and test/ (and optionally valid/), one sub-folder per class")
    transform = _transform(image_size, channels)
    train, train_labels, classes, shape = _split(path / "train", transform, f"{path}/train", None)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    train, train_labels = train[order], train_labels[order]
    test, test_labels, _, test_shape = _split(path / "test", transform, f"{path}/test", classes)
    valid = valid_labels = None
    if (path / "valid").is_dir():
        if valid_size:
            raise ConfigError(f"{path} has its own valid/ folder; drop valid_size")
        valid, valid_labels, _, valid_shape = _split(path / "valid", transform, f"{path}/valid", classes)
        test_shape = test_shape if valid_shape == test_shape else valid_shape
    else:
        train, valid, train_labels, valid_labels = hold_out(train, train_labels, valid_size, f"{path}/train")
    if test_shape != shape:
        raise ConfigError(f"{path}: the test images are {test_shape} (C, H, W), the training images {shape}; "
                          "give --image-size H W to resize and crop them alike")
    return VAEData(path.name, train, test, valid, train_labels, test_labels, image_shape=shape,
                   valid_labels=valid_labels, kind="levels")
