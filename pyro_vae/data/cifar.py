"""``--dataset cifar10``: CIFAR-10 (Krizhevsky 2009), 50,000 training and 10,000 test colour images of
32 x 32, ten classes, as 8-bit levels.

Read from the *binary* version of the dataset (``cifar-10-batches-bin/``: ``data_batch_1.bin`` ...
``data_batch_5.bin`` and ``test_batch.bin``, records of one label byte and 3,072 pixel bytes, red
then green then blue planes, row-major), not the Python version torchvision reads, whose batches
are pickles: unpickling a file runs whatever code it names, and a data directory may come from
anyone. Missing files are downloaded as ``cifar-10-binary.tar.gz`` (when online) and extracted
(only the expected regular files, never a path outside the folder); each file is checked by its
size, every label by its range.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from pyro_vae.core.atomic import atomic_write, make_directory, read_regular_file
from pyro_vae.core.errors import DatasetCorruptError
from pyro_vae.data import sources
from pyro_vae.data.vaedata import VAEData, hold_out

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
ARCHIVE = "cifar-10-binary.tar.gz"
FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
RECORD = 1 + 3 * 32 * 32
PER_FILE = 10000
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def parse_batch(raw: bytes, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One binary batch as ``(N, 3072)`` floats k / 255 (channel-major: the red plane, the green,
    the blue) and ``(N,)`` labels."""
    if len(raw) % RECORD or not raw:
        raise DatasetCorruptError(f"{name} holds {len(raw)} bytes, not a whole number of {RECORD}-byte "
                                  "records (a label byte and 3,072 pixel bytes)")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= len(CLASSES):
        raise DatasetCorruptError(f"{name} has a label {labels.max()}; CIFAR-10's are 0-9")
    pixels = torch.from_numpy(records[:, 1:].astype(np.float32) / 255)
    return pixels, torch.from_numpy(labels)


def _extract(archive: Path, folder: Path) -> None:
    """The batches of ``archive`` into ``folder``: only regular files named as expected, written
    atomically."""
    wanted = {f"{FOLDER}/{name}" for name in (*TRAIN_FILES, TEST_FILE)}
    make_directory(folder)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            if member.name in wanted and member.isreg():
                atomic_write(folder / Path(member.name).name, tar.extractfile(member).read())


def _files(root: Path, download: bool, log) -> Path:
    folder = root / FOLDER
    names = (*TRAIN_FILES, TEST_FILE)
    if all((folder / name).is_file() for name in names):
        return folder
    archive = root / ARCHIVE
    if not archive.is_file():
        expected = [folder / name for name in names]
        if not download:
            raise sources.missing("CIFAR-10", root, [archive, *expected], sources.downloads_off())
        try:
            sources.download_url(URL, str(root), ARCHIVE)
        except Exception as e:
            raise sources.missing("CIFAR-10", root, [archive], f"{type(e).__name__}: {e}") from None
    try:
        _extract(archive, folder)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DatasetCorruptError(f"{archive} could not be extracted ({e}); delete it and download it "
                                  "again") from None
    log(f"extracted CIFAR-10's binary batches from {archive} into {folder}")
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DatasetCorruptError(f"{archive} lacks {', '.join(missing)}; delete it and download it again")
    return folder


def load_cifar10(root: Path, download: bool, valid_size: Optional[int], log) -> VAEData:
    """CIFAR-10 as 8-bit levels (see the module docstring); ``valid_size``: the last N training
    images."""
    folder = _files(root, download, log)
    parts = []
    for name in (*TRAIN_FILES, TEST_FILE):
        try:
            raw = read_regular_file(folder / name, PER_FILE * RECORD + 1)
        except (OSError, ValueError) as e:
            raise DatasetCorruptError(f"{folder / name} could not be read ({e}); delete it and download it "
                                      "again") from None
        if len(raw) != PER_FILE * RECORD:
            raise DatasetCorruptError(f"{folder / name} holds {len(raw)} bytes, not {PER_FILE * RECORD}; "
                                      f"delete it (and {ARCHIVE} beside {FOLDER}) and download it again")
        parts.append(parse_batch(raw, str(folder / name)))
    train = torch.cat([p[0] for p in parts[:-1]])
    train_labels = torch.cat([p[1] for p in parts[:-1]])
    test, test_labels = parts[-1]
    train, valid, train_labels, valid_labels = hold_out(train, train_labels, valid_size)
    return VAEData("cifar10", train, test, valid, train_labels, test_labels, image_shape=(3, 32, 32),
                   valid_labels=valid_labels, kind="levels")
