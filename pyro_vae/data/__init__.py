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
there are used without network access (MNIST's archives alone are enough: they are extracted
here); missing files are downloaded (unless ``$PYRO_VAE_OFFLINE`` is set), and if that fails
the error names the directory, the missing files and how to provide them.

Checking MNIST and FashionMNIST (torchvision's layout):

``DIR/MNIST/raw`` holds, for each of the four files, the archive ``NAME.gz`` (its MD5 is the
one torchvision lists in ``MNIST.resources``), the extracted IDX file ``NAME``, or both.
Every load checks each extracted file, from the bytes it then reads, by its IDX header, its
size and its content:

- MNIST: the SHA-256 of the whole file against the published file's
  (:data:`EXTRACTED_SHA256`). This costs about 30 ms for the 55 MB (less than decompressing the
  archives, about 0.3 s) and needs nothing beside the file, so there is no "verified" marker to
  trust or forge: a file damaged after any earlier check is caught on the next load, with or
  without its archive.
- FashionMNIST (no published digest here): its bytes against those of the archive beside it,
  decompressed on every load (under a second); without an archive, header and size are all
  that can be checked.

An archive is used only after its MD5 matches (so it is the published file, and decompressing
it cannot be a bomb). A missing or damaged extracted file beside an intact archive is written
again from it, atomically (a temporary file renamed over it, which replaces a symlink rather
than following it), with one log line naming the file and the damage; if the directory cannot
be written, the archive's bytes are used from memory. A damaged extracted file without an
intact archive is refused, naming it. torchvision's own loader is not used: it reads the
extracted files only, and reports a damaged one as missing archives.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import math
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torchvision import datasets as tv_datasets
from torchvision.datasets.utils import download_url

from pyro_vae.core.atomic import atomic_write, make_directory, read_regular_file, write_failure
from pyro_vae.core.console import log_line
from pyro_vae.core.distributed import log_on_main
from pyro_vae.core.errors import ConfigError, DatasetCorruptError, DatasetNotFoundError, WriteError
from pyro_vae.core.registry import Registry

# name -> ``loader(root, download, valid_size, log) -> VAEData`` (see register_dataset).
DATASETS = Registry(
    "dataset",
    validation=None,  # the size of the dataset's own validation split (None: valid_size makes one)
)
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
    """One line: what is missing where, why it was not downloaded, and how to provide it."""
    return DatasetNotFoundError(
        f"{name} is not in the data directory {root} and could not be downloaded ({reason}); "
        f"missing: {', '.join(map(str, expected))}. Copy them there (the .gz archives are enough), "
        f"or point --data-dir or ${DATA_DIR_ENV} at a directory that holds them, or run once with "
        "internet access to download them.")


# SHA-256 of each extracted IDX file, keyed by the MD5 of its archive (torchvision's resources):
# computed from the published archives with those MD5s.
EXTRACTED_SHA256 = {
    "f68b3c2dcbeaaa9fbdd348bbdeb94873":  # MNIST train-images-idx3-ubyte
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "d53e105ee54ea40749a09fcbcd1e9432":  # MNIST train-labels-idx1-ubyte
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "9fb629c4189551a2d022fa330f9573f3":  # MNIST t10k-images-idx3-ubyte
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "ec29112dd5afa0611ce80d1b7f02629c":  # MNIST t10k-labels-idx1-ubyte
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
ARCHIVE_MAX_BYTES = 64 * 2**20  # FashionMNIST's largest archive has 26 MB


def _idx_shape(name: str) -> tuple[int, ...]:
    """The shape an (uncompressed) MNIST-layout IDX file of this name holds."""
    n = 60000 if name.startswith("train") else 10000
    return (n, 28, 28) if "images" in name else (n,)


def _idx_size(shape: tuple[int, ...]) -> int:
    return 4 + 4 * len(shape) + math.prod(shape)


def idx_problem(content: bytes, shape: tuple[int, ...], sha256: Optional[str] = None) -> Optional[str]:
    """None if ``content`` is an IDX file of unsigned bytes with ``shape`` (magic 0x0000 08 ndim,
    big-endian dimensions, then the bytes) and, if ``sha256`` is given, that digest; else what is
    wrong with it."""
    header_size = 4 + 4 * len(shape)
    header = content[:header_size]
    if len(header) < header_size or header[:4] != bytes([0, 0, 8, len(shape)]):
        return "its header is not that of an IDX file of bytes"
    dims = struct.unpack(f">{len(shape)}I", header[4:])
    if dims != shape:
        return f"its header gives the shape {dims}, expected {shape}"
    if len(content) != _idx_size(shape):
        return f"it has {len(content)} bytes, expected {_idx_size(shape)}"
    if sha256 is not None and hashlib.sha256(content).hexdigest() != sha256:
        return "its content differs from the published file's (SHA-256)"
    return None


def _read_extracted(path: Path, shape: tuple[int, ...], sha256: Optional[str]):
    """(content, None) for an extracted file that passes :func:`idx_problem`, (None, problem) for
    one that does not, (None, None) for none at all."""
    if not os.path.lexists(path):
        return None, None
    try:
        content = read_regular_file(path, _idx_size(shape))
    except OSError as e:
        return None, f"it cannot be read: {e.strerror}"
    except ValueError as e:
        return None, str(e)
    problem = idx_problem(content, shape, sha256)
    return (None, problem) if problem else (content, None)


def _archive_content(archive: Path, md5: str, shape: tuple[int, ...], sha256: Optional[str]) -> bytes:
    """The decompressed bytes of an archive whose MD5 is ``md5`` (checked before decompressing),
    or a DatasetCorruptError naming it."""
    try:
        packed = read_regular_file(archive, ARCHIVE_MAX_BYTES)
    except OSError as e:
        what = f"cannot be read ({e.strerror})"
    except ValueError as e:
        what = f"is not an archive of this dataset ({e})"
    else:
        if hashlib.md5(packed, usedforsecurity=False).hexdigest() != md5:
            what = "failed the MD5 check"
        else:
            content = gzip.decompress(packed)  # the published archive: it decompresses
            problem = idx_problem(content, shape, sha256)
            if problem is None:
                return content
            what = f"passed the MD5 check but {problem}"
    raise DatasetCorruptError(f"{archive} {what}. Delete it and download it again, or copy a good one there.")


def _verified_idx(archive: Path, md5: str, extracted: Path, log: Callable[[str], None]):
    """(content, how) of the extracted file ``extracted``, checked as the module docstring says.
    ``how`` is "extracted" when there was none and it was written from the archive, the
    WriteError when it could not be (the archive's bytes are used), else "ok"; damage is logged
    here, one line per file."""
    shape = _idx_shape(extracted.name)
    published = EXTRACTED_SHA256.get(md5)
    content, problem = _read_extracted(extracted, shape, published)
    if content is not None and published is not None:
        return content, "ok"
    if not os.path.lexists(archive):
        if problem:
            raise DatasetCorruptError(
                f"{extracted} is damaged ({problem}). Delete it and download it again, or copy a "
                f"good one (or its archive {archive.name}) there.")
        return content, "ok"  # header and size only: no digest, no archive to compare with
    fresh = _archive_content(archive, md5, shape, published)
    if content == fresh:
        return content, "ok"
    if content is not None:
        problem = f"its bytes differ from those in {archive.name}"
    try:
        atomic_write(extracted, fresh)
    except WriteError as e:
        if not problem:
            return fresh, e
        log(f"{extracted} is damaged ({problem}), and {e}; read the intact {archive.name} instead")
        return fresh, "ok"
    if not problem:
        return fresh, "extracted"
    log(f"{extracted} was damaged ({problem}): extracted it again from the intact {archive.name}")
    return fresh, "ok"


def _download_archives(cls, raw: Path, archives: list[tuple[str, str]], root: Path,
                       expected: list[Path]) -> None:
    """Download ``archives`` (name, MD5) into ``raw``, each to a temporary name renamed into place
    once its MD5 matches (a killed download leaves no half archive), or raise naming the cause."""
    make_directory(raw)
    for name, md5 in archives:
        errors = []
        for mirror in cls.mirrors:
            part = f".{name}.{os.getpid()}-{secrets.token_hex(4)}.part"
            try:
                download_url(mirror + name, str(raw), part, md5)
                os.replace(raw / part, raw / name)
                break
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
                    raise write_failure(e.filename or raw, e) from None
                errors.append(e)
            except Exception as e:  # torchvision raises RuntimeError/URLError variously
                errors.append(e)
            finally:
                (raw / part).unlink(missing_ok=True)
        else:
            e = errors[-1]
            raise _missing(cls.__name__, root, expected, f"{type(e).__name__}: {e}")


def _load_torchvision(cls, folder: str, root: Path, download: bool, log: Callable[[str], None]):
    """(train images, train labels, test images, test labels) as uint8/int64 tensors."""
    raw = root / folder / "raw"
    absent = [(name, md5) for name, md5 in cls.resources
              if not os.path.lexists(raw / name) and not os.path.lexists(raw / Path(name).stem)]
    if absent:
        expected = [raw / f"{Path(name).stem}[.gz]" for name, _ in absent]
        if not download:
            raise _missing(cls.__name__, root, expected, _downloads_off())
        _download_archives(cls, raw, absent, root, expected)
    tensors, extracted, unwritten = {}, [], []
    for name, md5 in cls.resources:
        stem = Path(name).stem
        content, how = _verified_idx(raw / name, md5, raw / stem, log)
        if how == "extracted":
            extracted.append(stem)
        elif isinstance(how, WriteError):
            unwritten.append((stem, how))
        shape = _idx_shape(stem)
        values = torch.frombuffer(bytearray(content), dtype=torch.uint8, offset=4 + 4 * len(shape))
        tensors[stem] = values.reshape(shape) if len(shape) == 3 else values.long()
    if extracted:
        log(f"extracted {', '.join(extracted)} from the archives in {raw}")
    if unwritten:
        log(f"{unwritten[0][1]}; read {', '.join(stem for stem, _ in unwritten)} from the archives "
            "in memory (again on every start until they can be extracted)")
    return [tensors[f"{split}-{kind}"] for split in ("train", "t10k")
            for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]


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


def register_dataset(name: str, *, description: str = "", replace: bool = False,
                     **capabilities) -> Callable[[Callable], Callable]:
    """A decorator registering a loader as ``--dataset name``.

    The loader is called as ``loader(root, download, valid_size, log)``: ``root`` the resolved
    data directory (a Path), ``download`` whether it may download (False offline), ``valid_size``
    the number of training images to hold out as a validation split (or None), ``log`` a
    function taking one line. It returns a :class:`VAEData` on the CPU with whole splits:
    :func:`load_dataset` applies the limits and moves it to the device. A dataset with its own
    validation split registers ``validation=N`` (its size), so that valid_size is refused.
    """
    return DATASETS.register(name, description=description, replace=replace, **capabilities)


def _grey_levels(name: str, cls, folder: str):
    """A loader of torchvision's MNIST layout: grey levels, binarized dynamically (see above)."""
    def load(root: Path, download: bool, valid_size: Optional[int], log) -> VAEData:
        x_train, y_train, x_test, y_test = _load_torchvision(cls, folder, root, download, log)
        train = x_train.reshape(len(x_train), -1).float().div_(255)
        test = _binarize_fixed(x_test.reshape(len(x_test), -1).float().div_(255))
        valid = None
        if valid_size:
            if not valid_size < len(train):
                raise ValueError(f"valid_size {valid_size} leaves no training images "
                                 f"({len(train)} in all)")
            cut = len(train) - valid_size
            train, valid, y_train = train[:cut], _binarize_fixed(train[cut:]), y_train[:cut]
        return VAEData(name, train, test, valid, y_train, y_test, dynamic_binarization=True)
    return load


register_dataset("mnist", description="MNIST digits, 60k/10k, grey levels binarized dynamically")(
    _grey_levels("mnist", tv_datasets.MNIST, "MNIST"))


@register_dataset("binarized-mnist", validation=10000,
                  description="Larochelle & Murray's static binarization of MNIST, 50k/10k/10k")
def _binarized_mnist(root: Path, download: bool, valid_size: Optional[int], log) -> VAEData:
    if valid_size:
        raise ValueError("binarized-mnist has its own validation split (10,000 images); "
                         "drop valid_size")
    train, valid, test = (_load_binarized_split(root, s, download) for s in ("train", "valid", "test"))
    return VAEData("binarized-mnist", train, test, valid)


register_dataset("fashion-mnist", description="Fashion-MNIST clothing, 60k/10k, grey levels binarized "
                                              "dynamically")(
    _grey_levels("fashion-mnist", tv_datasets.FashionMNIST, "FashionMNIST"))


def load_dataset(name: str, data_dir: Optional[str] = None, device: str | torch.device = "cpu",
                 limit_train: Optional[int] = None, limit_test: Optional[int] = None,
                 download: bool = True, valid_size: Optional[int] = None,
                 log: Optional[Callable[[str], None]] = None) -> VAEData:
    """Load ``name`` (a registered dataset) from the resolved data directory onto ``device``.

    ``limit_train``/``limit_test`` keep the first N examples of each split (the test split is
    binarized before it is cut, so the first N images are the same whatever N is).
    ``valid_size`` holds out the last N training images as the validation split (grey-level
    datasets only; binarized-mnist has its own): binarized once, like the test split, as in the
    VampPrior code, and cut before ``limit_train``, so it is the same whatever that is.
    ``log`` (default: print on rank 0) hears of files extracted or repaired from their archives.
    """
    loader = DATASETS.get(name).factory
    data = loader(resolve_data_dir(data_dir), downloads_allowed(download), valid_size,
                  log_on_main(log or log_line))
    if not isinstance(data, VAEData):
        raise ConfigError(f"dataset {name!r}: its loader returned {type(data).__name__}, not VAEData")
    return _limit_and_move(data, limit_train, limit_test, torch.device(device))


def _limit_and_move(data: VAEData, limit_train, limit_test, device) -> VAEData:
    def cut(t, n):
        return None if t is None else t[:n].contiguous().to(device)

    return VAEData(data.name, cut(data.train, limit_train), cut(data.test, limit_test),
                   cut(data.valid, limit_test), cut(data.train_labels, limit_train),
                   cut(data.test_labels, limit_test), data.dynamic_binarization, data.image_shape)
