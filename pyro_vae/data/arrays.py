"""Your own data as arrays: ``--dataset path/to/file.npz``.

The file holds arrays ``train`` and ``test``, optionally ``valid`` and the labels ``train_labels``,
``test_labels``, ``valid_labels`` (integer classes). Images are ``uint8`` (8-bit levels) or floats
in [0, 1], shaped ``(N, H, W)``, ``(N, C, H, W)``, channel-last ``(N, H, W, C)`` with C of 1, 3
or 4 (as images usually are saved), or flat ``(N, D)`` (square when D is). What they hold (binary,
8-bit levels, other values) is read off the values, and the run presents them for its likelihood
(:mod:`~pyro_vae.data.presentation`). The file is read with ``allow_pickle=False``: opening it
runs no code, whoever made it.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from pyro_vae.core.errors import ConfigError, DatasetCorruptError, DatasetNotFoundError
from pyro_vae.data.vaedata import VAEData, hold_out

SPLITS = ("train", "test", "valid")


def is_file_dataset(name: str) -> bool:
    """Whether a ``dataset`` value names a file or folder of the user's rather than a registered
    dataset: a path ending in ``.npz``, or with a directory separator."""
    return isinstance(name, str) and (name.endswith(".npz") or "/" in name or "\\" in name)


def image_tensor(array: np.ndarray, what: str) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """``array`` of images as ``(N, C H W)`` floats in [0, 1] and its image shape; ``what`` names
    it in messages."""
    if array.dtype == np.uint8:
        x = torch.from_numpy(array.astype(np.float32) / 255)
    elif np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.bool_):
        x = torch.from_numpy(array.astype(np.float32))
    else:
        raise ConfigError(f"{what} holds {array.dtype} values; images must be uint8 (0-255) or floats "
                          "in [0, 1]")
    if x.dim() == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.permute(0, 3, 1, 2)  # channel-last, as images are usually saved
    return flat_images(x, what, hint="divide 8-bit images by 255, or save them as uint8")


def flat_images(x: torch.Tensor, what: str,
                hint: str = "divide 8-bit images by 255") -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Images ``x`` (``(N, D)``, ``(N, H, W)`` or ``(N, C, H, W)`` floats) as ``(N, C H W)`` and their
    image shape (a square ``D`` is read as one square channel, any other as a row); a one-line
    ConfigError naming ``what`` where they are not images with values in [0, 1]."""
    if x.dim() not in (2, 3, 4) or len(x) == 0 or x[0].numel() == 0:
        raise ConfigError(f"{what} must hold at least one image, as (N, D), (N, H, W), (N, C, H, W) "
                          f"or, in a file, (N, H, W, C); got shape {tuple(x.shape)}")
    if x.dim() == 4:
        shape = tuple(x.shape[1:])
    elif x.dim() == 3:
        shape = (1, *x.shape[1:])
    else:
        side = math.isqrt(x.shape[1])
        shape = (1, side, side) if side * side == x.shape[1] else (1, 1, x.shape[1])
    flat = x.reshape(len(x), -1).float().contiguous()
    low, high = flat.min().item(), flat.max().item()
    if not (math.isfinite(low) and math.isfinite(high) and low >= 0 and high <= 1):
        raise ConfigError(f"{what} must hold pixel values in [0, 1] (binary or grey levels); its values "
                          f"go from {low:g} to {high:g}" + (f" ({hint})" if high > 1 else ""))
    return flat, shape


def values_kind(x: torch.Tensor) -> str:
    """What ``x`` holds: ``binary`` (0/1), ``levels`` (8-bit levels k / 255) or ``continuous``."""
    if bool(((x == 0) | (x == 1)).all()):
        return "binary"
    return "levels" if bool(((x * 255 - torch.round(x * 255)).abs() < 1e-4).all()) else "continuous"


def widest_kind(*tensors: torch.Tensor) -> str:
    """The kind that describes all of ``tensors`` (levels if one is binary and one 8-bit, say)."""
    kinds = {values_kind(t) for t in tensors}
    return next(k for k in ("continuous", "levels", "binary") if k in kinds)


def _labels(array: np.ndarray, count: int, what: str) -> torch.Tensor:
    if not np.issubdtype(array.dtype, np.integer) or array.shape != (count,):
        raise ConfigError(f"{what} must be {count} integer classes (one per image), got "
                          f"{array.dtype} of shape {tuple(array.shape)}")
    labels = torch.from_numpy(array.astype(np.int64))
    if (labels < 0).any():
        raise ConfigError(f"{what} holds negative classes; classes are 0, 1, ...")
    return labels


def load_npz(path: Path, valid_size: Optional[int] = None) -> VAEData:
    """The VAEData of an ``.npz`` file (see the module docstring); ``valid_size``: hold out the
    last N training images where the file has no ``valid`` array."""
    if not path.is_file():
        raise DatasetNotFoundError(f"{path} does not exist; --dataset takes a registered name or a "
                                   ".npz file with arrays train and test")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DatasetCorruptError(f"{path} could not be read as an .npz file ({type(e).__name__}: "
                                  f"{str(e)[:200]}); save it with numpy.savez") from None
    missing = [name for name in ("train", "test") if name not in arrays]
    if missing:
        raise ConfigError(f"{path} has no array {' or '.join(missing)}; it holds {', '.join(sorted(arrays)) or 'none'} "
                          "(numpy.savez(path, train=..., test=..., [valid=..., train_labels=..., ...]))")
    splits, shapes = {}, {}
    for name in SPLITS:
        if name in arrays:
            splits[name], shapes[name] = image_tensor(arrays[name], f"{path.name}: {name}")
    if len(set(shapes.values())) > 1:
        raise ConfigError(f"{path.name}: the splits' images differ in shape "
                          f"({', '.join(f'{k} {v}' for k, v in shapes.items())})")
    labels = {name: _labels(arrays[f"{name}_labels"], len(splits[name]), f"{path.name}: {name}_labels")
              for name in SPLITS if f"{name}_labels" in arrays and name in splits}
    train, train_labels = splits["train"], labels.get("train")
    valid, valid_labels = splits.get("valid"), labels.get("valid")
    if valid_size:
        if valid is not None:
            raise ConfigError(f"{path.name} has its own valid array ({len(valid)} images); drop valid_size")
        train, valid, train_labels, valid_labels = hold_out(train, train_labels, valid_size, path.name)
    present_splits = [t for t in (train, splits["test"], valid) if t is not None]
    return VAEData(path.stem, train, splits["test"], valid, train_labels, labels.get("test"),
                   image_shape=shapes["train"], valid_labels=valid_labels, kind=widest_kind(*present_splits))
