"""``--dataset omniglot``: Omniglot characters at 28 x 28 as Burda et al. (2016) split them, 24,345
training and 8,070 test images (``chardata.mat`` of the IWAE code, yburda/iwae), used by the IWAE
and VampPrior papers; grey values in [0, 1], binarized dynamically for a Bernoulli, as there.

The MATLAB file stores each split as a (784, N) matrix of column-major 28 x 28 images; they are
turned into row-major rows, as the IWAE code does (``reshape((-1, 28, 28)).reshape((-1, 784),
order="F")``). Labels, where the file has them (``target`` / ``testtarget``, one-hot rows of the
alphabets), are the alphabet indices. ``scipy.io.loadmat`` reads numbers only: no code runs.
Each split is checked by its shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from pyro_vae.core.errors import DatasetCorruptError
from pyro_vae.data import sources
from pyro_vae.data.arrays import values_kind
from pyro_vae.data.vaedata import VAEData, hold_out

URL = "https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat"
FOLDER, FILE = "OMNIGLOT", "chardata.mat"
SIZES = {"data": 24345, "testdata": 8070}


def column_major_images(matrix: np.ndarray) -> torch.Tensor:
    """A (784, N) matrix of column-major 28 x 28 images as (N, 784) row-major rows."""
    images = matrix.T.astype(np.float32).reshape(-1, 28, 28).reshape(-1, 784, order="F")
    return torch.from_numpy(np.ascontiguousarray(images))


def _labels(raw: dict, key: str, count: int) -> Optional[torch.Tensor]:
    target = raw.get(key)
    if target is None or target.ndim != 2 or count not in target.shape:
        return None
    one_hot = target if target.shape[1] == count else target.T
    return torch.from_numpy(np.asarray(one_hot).argmax(0).astype(np.int64))


def load_omniglot(root: Path, download: bool, valid_size: Optional[int], log) -> VAEData:
    """Burda et al.'s Omniglot (see the module docstring); ``valid_size``: the last N training images."""
    from scipy.io import loadmat  # scipy comes with arviz; only this loader needs it

    folder = root / FOLDER
    path = folder / FILE
    if not path.is_file():
        if not download:
            raise sources.missing("Omniglot", root, [path], sources.downloads_off())
        try:
            sources.download_url(URL, str(folder), FILE)
        except Exception as e:
            raise sources.missing("Omniglot", root, [path], f"{type(e).__name__}: {e}") from None
    try:
        raw = loadmat(str(path))
    except Exception as e:  # scipy raises ValueError, MatReadError, OSError, ... for a bad file
        raise DatasetCorruptError(f"{path} could not be read as a MATLAB file ({type(e).__name__}: "
                                  f"{str(e)[:200]}); delete it and download it again") from None
    for key, count in SIZES.items():
        matrix = raw.get(key)
        if matrix is None or getattr(matrix, "shape", None) != (784, count):
            raise DatasetCorruptError(f"{path} has no {key} of shape (784, {count}) (found "
                                      f"{getattr(matrix, 'shape', None)}); delete it and download it again")
    train, test = column_major_images(raw["data"]), column_major_images(raw["testdata"])
    if train.min() < 0 or train.max() > 1 or test.min() < 0 or test.max() > 1:
        raise DatasetCorruptError(f"{path} holds values outside [0, 1]; delete it and download it again")
    train_labels = _labels(raw, "target", SIZES["data"])
    test_labels = _labels(raw, "testtarget", SIZES["testdata"])
    train, valid, train_labels, valid_labels = hold_out(train, train_labels, valid_size)
    kind = values_kind(torch.cat([train[:1000], test[:1000]]))
    return VAEData("omniglot", train, test, valid, train_labels, test_labels, valid_labels=valid_labels,
                   kind=kind)
