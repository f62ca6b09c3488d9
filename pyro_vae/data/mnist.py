"""The shipped loaders: MNIST and Fashion-MNIST as grey levels (torchvision's files, checked by
:mod:`pyro_vae.data.idx`), and Larochelle & Murray's (2011) fixed binarization of MNIST,
50k/10k/10k, used by the IWAE and VampPrior papers ("static MNIST").

A loader is called as ``loader(root, download, valid_size, log)`` (see
:func:`~pyro_vae.data.register_dataset`)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from pyro_vae.core.errors import DatasetCorruptError
from pyro_vae.data import sources
from pyro_vae.data.idx import load_torchvision
from pyro_vae.data.vaedata import VAEData, hold_out

# Larochelle's static binarization: uncompressed .amat SHA-256 (as checked by TensorFlow Datasets).
BINARIZED_MNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
BINARIZED_MNIST_SHA256 = {
    "train": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "valid": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "test": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
}
BINARIZED_MNIST_SIZES = {"train": 50000, "valid": 10000, "test": 10000}


def grey_levels(name: str, cls, folder: str):
    """A loader of torchvision's MNIST layout: the 8-bit grey levels as floats k / 255 (kind
    ``levels``; :mod:`~pyro_vae.data.presentation` binarizes or dequantizes them as the run's
    likelihood needs). ``valid_size``: the last N training images."""
    def load(root: Path, download: bool, valid_size: Optional[int], log) -> VAEData:
        x_train, y_train, x_test, y_test = load_torchvision(cls, folder, root, download, log)
        train = x_train.reshape(len(x_train), -1).float().div_(255)
        test = x_test.reshape(len(x_test), -1).float().div_(255)
        train, valid, y_train, y_valid = hold_out(train, y_train, valid_size)
        return VAEData(name, train, test, valid, y_train, y_test, valid_labels=y_valid, kind="levels")
    return load


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
        expected = [folder / f"{name}[.gz]"]
        if not download:
            raise sources.missing("BinarizedMNIST", root, expected, sources.downloads_off())
        try:
            sources.download_url(BINARIZED_MNIST_URL + name, str(folder), name)
        except Exception as e:
            raise sources.missing("BinarizedMNIST", root, expected, f"{type(e).__name__}: {e}") from None
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




def binarized_mnist(root: Path, download: bool, valid_size: Optional[int], log) -> VAEData:
    """Larochelle's three fixed splits (its own validation split: valid_size is refused)."""
    if valid_size:
        raise ValueError("binarized-mnist has its own validation split (10,000 images); "
                         "drop valid_size")
    train, valid, test = (_load_binarized_split(root, s, download) for s in ("train", "valid", "test"))
    return VAEData("binarized-mnist", train, test, valid)
