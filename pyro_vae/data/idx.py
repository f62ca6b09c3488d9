"""MNIST's file layout (torchvision's: ``DIR/<Folder>/raw``), checked on every load.

``raw`` holds, for each of the four files, the archive ``NAME.gz`` (its MD5 is the one
torchvision lists in ``MNIST.resources``), the extracted IDX file ``NAME``, or both. Every load
checks each extracted file, from the bytes it then reads, by its IDX header, its size and its
content:

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
from pathlib import Path
from typing import Callable, Optional

import torch

from pyro_vae.core.atomic import atomic_write, make_directory, read_regular_file, write_failure
from pyro_vae.core.errors import DatasetCorruptError, WriteError
from pyro_vae.data import sources

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
                sources.download_url(mirror + name, str(raw), part, md5)
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
            raise sources.missing(cls.__name__, root, expected, f"{type(e).__name__}: {e}")


def load_torchvision(cls, folder: str, root: Path, download: bool, log: Callable[[str], None]):
    """(train images, train labels, test images, test labels) as uint8/int64 tensors."""
    raw = root / folder / "raw"
    absent = [(name, md5) for name, md5 in cls.resources
              if not os.path.lexists(raw / name) and not os.path.lexists(raw / Path(name).stem)]
    if absent:
        expected = [raw / f"{Path(name).stem}[.gz]" for name, _ in absent]
        if not download:
            raise sources.missing(cls.__name__, root, expected, sources.downloads_off())
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

