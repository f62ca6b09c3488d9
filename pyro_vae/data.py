"""Datasets as whole tensors on the training device.

MNIST-sized data fits in memory many times over, so each split is one ``(N, 784)`` float tensor
in [0, 1] and minibatches are index slices of it: no per-item Python loading.

Binarization:

- ``mnist`` and ``fashion-mnist`` hold grey levels. Training batches are binarized *dynamically*
  (a fresh Bernoulli draw per batch, :meth:`VAEData.train_batch`); evaluation splits are
  binarized *once*, with the fixed seed :data:`EVAL_BINARIZATION_SEED`, so every run, whatever its
  seed or ``--limit-test``, is evaluated on the same binary images.
- ``binarized-mnist`` is the fixed binarization of Larochelle & Murray (2011), 50k/10k/10k,
  used by the IWAE and VampPrior papers ("static MNIST").

The data directory is ``--data-dir``, else ``$PYRO_VAE_DATA``, else ``./data``. Files already
there are used without network access; missing files are downloaded (unless
``$PYRO_VAE_OFFLINE`` is set), and if that fails the error names the directory, the expected
files and how to provide them.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torchvision import datasets as tv_datasets
from torchvision.datasets.utils import check_integrity, download_url

from .atomic import write_failure
from .errors import DatasetCorruptError, DatasetNotFoundError

DATASETS = ("mnist", "binarized-mnist", "fashion-mnist")
IMAGE_SHAPE = (1, 28, 28)
EVAL_BINARIZATION_SEED = 0
DATA_DIR_ENV = "PYRO_VAE_DATA"
OFFLINE_ENV = "PYRO_VAE_OFFLINE"  # set (to anything but "" or "0") to never try a download

# Larochelle's static binarization: uncompressed .amat SHA-256 (as checked by TensorFlow Datasets).
BINARIZED_MNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
BINARIZED_MNIST_SHA256 = {
    "train": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "valid": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "test": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
}
BINARIZED_MNIST_SIZES = {"train": 50000, "valid": 10000, "test": 10000}


def resolve_data_dir(data_dir: Optional[str] = None) -> Path:
    """``data_dir``, else ``$PYRO_VAE_DATA``, else ``./data``."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or "data").expanduser()


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
            return _binarize_fixed(self.train) if self.dynamic_binarization else self.train
        raise ValueError(f"unknown split {name!r}; choose one of test, valid, train")

    @property
    def mean_pixel(self) -> torch.Tensor:
        """Per-pixel training mean (initialises the decoder's output bias)."""
        return self.train.mean(0)


def _binarize_fixed(x: torch.Tensor) -> torch.Tensor:
    """One Bernoulli draw with the fixed evaluation seed, on CPU so every device agrees."""
    g = torch.Generator().manual_seed(EVAL_BINARIZATION_SEED)
    return torch.bernoulli(x.cpu(), generator=g).to(x.device)


def _offline_by_env() -> bool:
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")


def downloads_allowed(download: bool = True) -> bool:
    return download and not _offline_by_env()


def _downloads_off() -> str:
    return f"downloads are off: ${OFFLINE_ENV} is set" if _offline_by_env() else "downloads are off"


def _missing(name: str, root: Path, expected: list[Path], reason: str) -> DatasetNotFoundError:
    files = "\n".join(f"  {p}" for p in expected)
    return DatasetNotFoundError(
        f"{name} is not in the data directory {root} and could not be downloaded ({reason}).\n"
        f"Expected files:\n{files}\n"
        f"Copy them there (the .gz archives are enough), or point --data-dir or ${DATA_DIR_ENV} "
        "at a directory that holds them, or run once with internet access to download them.")


def _idx_shape(name: str) -> tuple[int, ...]:
    """The shape an (uncompressed) MNIST-layout IDX file of this name holds."""
    n = 60000 if name.startswith("train") else 10000
    return (n, 28, 28) if "images" in name else (n,)


def idx_problem(path: Path, shape: tuple[int, ...]) -> Optional[str]:
    """None if ``path`` is an IDX file of unsigned bytes with ``shape`` (magic 0x0000 08 ndim,
    big-endian dimensions, then the bytes), else what is wrong with it."""
    header_size = 4 + 4 * len(shape)
    try:
        with open(path, "rb") as f:
            header, size = f.read(header_size), os.fstat(f.fileno()).st_size
    except OSError as e:
        return f"it cannot be read: {e.strerror}"
    if len(header) < header_size or header[:4] != bytes([0, 0, 8, len(shape)]):
        return "its header is not that of an IDX file of bytes"
    dims = struct.unpack(f">{len(shape)}I", header[4:])
    if dims != shape:
        return f"its header gives the shape {dims}, expected {shape}"
    if size != header_size + math.prod(shape):
        return f"it has {size} bytes, expected {header_size + math.prod(shape)}"
    return None


def _check_extracted(cls, raw: Path) -> None:
    """Refuse damaged extracted files, naming them. torchvision reads the extracted files when
    they exist and would report a damaged one as missing archives."""
    for archive_name, md5 in cls.resources:
        archive, extracted = raw / archive_name, raw / Path(archive_name).stem
        if not extracted.exists():
            continue
        problem = idx_problem(extracted, _idx_shape(extracted.name))
        if problem is None:
            continue
        if archive.is_file() and check_integrity(str(archive), md5):
            hint = f"Delete it: the intact archive {archive.name} beside it is then extracted again."
        else:
            hint = "Delete it and download it again, or copy a good one there."
        raise DatasetCorruptError(f"{extracted} is damaged ({problem}). {hint}")


def _load_torchvision(cls, folder: str, root: Path, download: bool):
    """(train images, train labels, test images, test labels) as uint8/int64 tensors."""
    _check_extracted(cls, root / folder / "raw")
    splits = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=False)
        except (RuntimeError, OSError):
            expected = [root / folder / "raw" / filename for filename, _ in cls.resources]
            damaged = [p for p, (_, md5) in zip(expected, cls.resources)
                       if p.exists() and not check_integrity(str(p), md5)]
            if damaged:
                raise DatasetCorruptError(
                    f"{', '.join(map(str, damaged))} failed the MD5 check. Delete the damaged "
                    "file(s) and download them again, or copy good ones there.")
            if not download:
                raise _missing(cls.__name__, root, expected, _downloads_off()) from None
            try:
                root.mkdir(parents=True, exist_ok=True)
                # Extracts archives already present (MD5-checked) without touching the network.
                ds = cls(str(root), train=train, download=True)
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
                    raise write_failure(e.filename or root / folder / "raw", e) from None
                raise _missing(cls.__name__, root, expected, f"{type(e).__name__}: {e}") from None
            except Exception as e:  # torchvision raises RuntimeError/URLError/OSError variously
                raise _missing(cls.__name__, root, expected, f"{type(e).__name__}: {e}") from None
        splits += [ds.data, ds.targets]
    return splits


def parse_amat(raw: bytes, rows: Optional[int] = None, dim: int = 784) -> torch.Tensor:
    """Rows of space-separated 0/1 digits (Larochelle's .amat) as a float tensor ``(N, dim)``.

    Vectorised over bytes rather than ``np.loadtxt``: the 50,000-line training file parses in
    well under a second instead of half a minute.
    """
    if raw.strip(b"01 \t\r\n"):
        raise ValueError("found characters other than 0, 1 and whitespace")
    lines = [line for line in raw.split(b"\n") if line.strip()]
    buf = np.frombuffer(raw, dtype=np.uint8)
    bits = buf[(buf == ord("0")) | (buf == ord("1"))] - ord("0")
    if bits.size != len(lines) * dim:
        raise ValueError(f"expected {dim} values on each of {len(lines)} lines, found {bits.size}")
    if rows is not None and len(lines) != rows:
        raise ValueError(f"expected {rows} lines, found {len(lines)}")
    return torch.from_numpy(bits.reshape(len(lines), dim).astype(np.float32))


def _load_binarized_split(root: Path, split: str, download: bool) -> torch.Tensor:
    folder = root / "BinarizedMNIST"
    name = f"binarized_mnist_{split}.amat"
    plain, packed = folder / name, folder / f"{name}.gz"
    if not plain.exists() and not packed.exists():
        expected = [folder / f"binarized_mnist_{s}.amat[.gz]" for s in BINARIZED_MNIST_SIZES]
        if not download:
            raise _missing("BinarizedMNIST", root, expected, _downloads_off())
        try:
            download_url(BINARIZED_MNIST_URL + name, str(folder), name)
        except Exception as e:
            raise _missing("BinarizedMNIST", root, expected, f"{type(e).__name__}: {e}") from None
    path = plain if plain.exists() else packed
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        if hashlib.sha256(raw).hexdigest() != BINARIZED_MNIST_SHA256[split]:
            raise ValueError("SHA-256 of the uncompressed file differs from the published one")
        return parse_amat(raw, rows=BINARIZED_MNIST_SIZES[split])
    except (OSError, EOFError, ValueError) as e:
        hint = (f"Delete it: {packed.name} beside it is then used instead." if path == plain and
                packed.exists() else "Delete it and download it again, or copy a good one there.")
        raise DatasetCorruptError(f"{path} is corrupt ({e}). {hint}") from None


def load_dataset(name: str, data_dir: Optional[str] = None, device: str | torch.device = "cpu",
                 limit_train: Optional[int] = None, limit_test: Optional[int] = None,
                 download: bool = True, valid_size: Optional[int] = None) -> VAEData:
    """Load ``name`` from the resolved data directory onto ``device``.

    ``limit_train``/``limit_test`` keep the first N examples of each split (the test split is
    binarized before it is cut, so the first N images are the same whatever N is).
    ``valid_size`` holds out the last N training images as the validation split (grey-level
    datasets only; binarized-mnist has its own): binarized once, like the test split, as in the
    VampPrior code, and cut before ``limit_train``, so it is the same whatever that is.
    """
    root = resolve_data_dir(data_dir)
    download = downloads_allowed(download)
    if name in ("mnist", "fashion-mnist"):
        cls, folder = ((tv_datasets.MNIST, "MNIST") if name == "mnist"
                       else (tv_datasets.FashionMNIST, "FashionMNIST"))
        x_train, y_train, x_test, y_test = _load_torchvision(cls, folder, root, download)
        train = x_train.reshape(len(x_train), -1).float().div_(255)
        test = _binarize_fixed(x_test.reshape(len(x_test), -1).float().div_(255))
        valid = None
        if valid_size:
            if not valid_size < len(train):
                raise ValueError(f"valid_size {valid_size} leaves no training images "
                                 f"({len(train)} in all)")
            cut = len(train) - valid_size
            train, valid, y_train = train[:cut], _binarize_fixed(train[cut:]), y_train[:cut]
        data = VAEData(name, train, test, valid, y_train, y_test, dynamic_binarization=True)
    elif name == "binarized-mnist":
        if valid_size:
            raise ValueError("binarized-mnist has its own validation split (10,000 images); "
                             "drop valid_size")
        train, valid, test = (_load_binarized_split(root, s, download)
                              for s in ("train", "valid", "test"))
        data = VAEData(name, train, test, valid)
    else:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return _limit_and_move(data, limit_train, limit_test, torch.device(device))


def _limit_and_move(data: VAEData, limit_train, limit_test, device) -> VAEData:
    def cut(t, n):
        return None if t is None else t[:n].contiguous().to(device)

    return VAEData(data.name, cut(data.train, limit_train), cut(data.test, limit_test),
                   cut(data.valid, limit_test), cut(data.train_labels, limit_train),
                   cut(data.test_labels, limit_test), data.dynamic_binarization, data.image_shape)
