"""MNIST offline, from real files: archives alone train, and damaged extracted files are never
trained on (extracted again from an intact archive beside them, else refused in one line).

Each test copies the MNIST archives of ``data_dir`` into a fresh directory laid out as
torchvision's ``MNIST/raw``, damages something, and loads or trains from it.
"""

import errno
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support import run_script

from pyro_vae.core.errors import DatasetCorruptError, DatasetNotFoundError, WriteError
from pyro_vae.data import binarize_fixed, load_dataset
from pyro_vae.data import idx as idx_module
from pyro_vae.data import sources as sources_module

REPO = Path(__file__).resolve().parents[2]
NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")
SMALL_RUN = ["--limit-train", "64", "--limit-test", "16", "--batch-size", "32", "--hidden", "16",
             "--latent-dim", "2", "--epochs", "1", "--no-plots"]


@pytest.fixture(scope="module")
def originals(data_dir) -> dict[str, bytes]:
    """The uncompressed bytes of each MNIST file, from the archives of the test data."""
    raw = Path(data_dir) / "MNIST" / "raw"
    return {name: gzip.decompress((raw / f"{name}.gz").read_bytes()) for name in NAMES}


def archives_only(data_dir, tmp_path: Path) -> Path:
    """A data directory holding only the four MNIST archives; returns its MNIST/raw folder."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in NAMES:
        shutil.copy(Path(data_dir) / "MNIST" / "raw" / f"{name}.gz", raw)
    return raw


def extracted_too(data_dir, tmp_path: Path, originals) -> Path:
    """Archives and extracted files, as a first load leaves them."""
    raw = archives_only(data_dir, tmp_path)
    for name in NAMES:
        (raw / name).write_bytes(originals[name])
    return raw


def load(raw: Path, lines: list[str]):
    return load_dataset("mnist", str(raw.parents[1]), limit_train=8, limit_test=8, log=lines.append)


def same_as_the_originals(loaded, originals) -> bool:
    """``loaded`` (8 images of each split) holds the images and labels of the original files."""
    def values(name, header):
        return torch.frombuffer(bytearray(originals[name][header:]), dtype=torch.uint8)

    train = values("train-images-idx3-ubyte", 16).reshape(-1, 784).float() / 255
    test = binarize_fixed(values("t10k-images-idx3-ubyte", 16).reshape(-1, 784).float() / 255)
    return (torch.equal(loaded.train, train[:8]) and torch.equal(loaded.test, test[:8])
            and torch.equal(loaded.train_labels, values("train-labels-idx1-ubyte", 8)[:8].long())
            and torch.equal(loaded.test_labels, values("t10k-labels-idx1-ubyte", 8)[:8].long()))


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# The archives alone -----------------------------------------------------------------------------

def test_archives_alone_train_offline(data_dir, tmp_path, originals):
    """The documented offline setup, as a user runs it: a subprocess with $PYRO_VAE_OFFLINE=1."""
    raw = archives_only(data_dir, tmp_path)
    env = {**os.environ, "PYRO_VAE_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "scripts/svi_train.py", *SMALL_RUN, "--data-dir",
                             str(raw.parents[1]), "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr
    assert f"extracted {', '.join(NAMES)} from the archives in {raw}" in result.stdout
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    for name in NAMES:  # extracted once, atomically: no temporary files left
        assert (raw / name).read_bytes() == originals[name]
    assert sorted(p.name for p in raw.iterdir()) == sorted([*NAMES, *(f"{n}.gz" for n in NAMES)])
    lines = []  # the next load reads the checked extracted files and has nothing to say
    assert same_as_the_originals(load(raw, lines), originals) and lines == []


def test_unwritable_directory_reads_the_archives_in_memory(data_dir, tmp_path, originals, monkeypatch):
    """A read-only shared copy of the archives still trains (root ignores chmod, so the failed
    write is injected where pyro_vae.data.idx writes)."""
    raw = archives_only(data_dir, tmp_path)

    def read_only(path, content):
        raise WriteError(f"could not write {path}: the file system is read-only", errno.EROFS)

    monkeypatch.setattr(idx_module, "atomic_write", read_only)
    lines = []
    assert same_as_the_originals(load(raw, lines), originals)
    assert len(lines) == 1 and "the file system is read-only; read train-images-idx3-ubyte," in lines[0]
    assert not any((raw / name).exists() for name in NAMES)


def test_only_the_missing_files_are_listed(data_dir, tmp_path, capsys, monkeypatch):
    raw = archives_only(data_dir, tmp_path)
    (raw / "train-labels-idx1-ubyte.gz").rename(raw / "train-labels-idx1-ubyte")  # wrong, not missing
    (raw / "t10k-images-idx3-ubyte.gz").unlink()
    monkeypatch.setenv("PYRO_VAE_OFFLINE", "1")
    status, stderr = run_script(capsys, "svi_train", *SMALL_RUN, "--data-dir", raw.parents[1],
                                "--out", tmp_path / "run")
    message = one_line(stderr)
    assert status == 2 and "downloads are off: $PYRO_VAE_OFFLINE is set" in message
    assert f"missing: {raw / 't10k-images-idx3-ubyte'}[.gz]. Copy them there" in message
    assert message.count("-ubyte") == 1  # the three files that are there are not listed
    assert not (tmp_path / "run").exists()


def test_a_download_is_renamed_into_place_only_once_checked(data_dir, tmp_path, originals, monkeypatch):
    """Downloads go to a temporary name: a failed one leaves nothing that looks like an archive."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    served = {"": b"not an archive"}

    def download_url(url, root, filename, md5):
        name = url.rsplit("/", 1)[1]
        content = served.get("") or (Path(data_dir) / "MNIST" / "raw" / name).read_bytes()
        (Path(root) / filename).write_bytes(content)
        if md5 is not None and hashlib.md5(content).hexdigest() != md5:
            raise RuntimeError("File not found or corrupted.")

    monkeypatch.setattr(sources_module, "download_url", download_url)
    monkeypatch.delenv("PYRO_VAE_OFFLINE", raising=False)
    with pytest.raises(DatasetNotFoundError, match="could not be downloaded .RuntimeError: File not found"):
        load_dataset("mnist", str(raw.parents[1]))
    assert list(raw.iterdir()) == []
    served.clear()
    lines = []
    assert same_as_the_originals(load(raw, lines), originals)
    assert sorted(p.name for p in raw.iterdir()) == sorted([*NAMES, *(f"{n}.gz" for n in NAMES)])


# Damaged extracted files ------------------------------------------------------------------------

def flip_one_pixel(path: Path) -> None:
    content = bytearray(path.read_bytes())
    content[1000] ^= 0xFF  # header and size stay right: only the content check can see this
    path.write_bytes(bytes(content))


def link_elsewhere(path: Path) -> None:
    """The extracted file is a symlink to someone else's file (of the right size and header)."""
    outside = path.parents[3] / "outside"
    outside.write_bytes(path.read_bytes()[:-1] + b"\x01")
    path.unlink()
    path.symlink_to(outside)


DAMAGE = [
    (lambda p: p.write_bytes(b"garbage header" + p.read_bytes()[14:]),
     "its header is not that of an IDX file of bytes"),
    (lambda p: p.write_bytes(p.read_bytes()[:-100]), "it has 7839916 bytes, expected 7840016"),
    (lambda p: p.write_bytes(p.read_bytes() + b"\x00"), "it has 7840017 bytes, expected 7840016"),
    (flip_one_pixel, "its content differs from the published file's (SHA-256)"),
    (link_elsewhere, "its content differs from the published file's (SHA-256)"),
    (lambda p: (p.unlink(), p.symlink_to(p.parent / "nowhere")),
     "it cannot be read: No such file or directory"),
    (lambda p: (p.unlink(), os.mkfifo(p)), "it is not a regular file"),  # read naively, it would block
]


@pytest.mark.parametrize("damage, problem", DAMAGE)
def test_damaged_file_beside_an_intact_archive_is_extracted_again(data_dir, tmp_path, originals,
                                                                  damage, problem):
    raw = extracted_too(data_dir, tmp_path, originals)
    extracted = raw / "t10k-images-idx3-ubyte"
    damage(extracted)
    outside = tmp_path / "outside"
    before = outside.read_bytes() if outside.exists() else None
    lines = []
    loaded = load(raw, lines)
    assert same_as_the_originals(loaded, originals)
    assert lines == [f"{extracted} was damaged ({problem}): extracted it again from the intact "
                     "t10k-images-idx3-ubyte.gz"]
    assert not extracted.is_symlink() and extracted.read_bytes() == originals["t10k-images-idx3-ubyte"]
    if before is not None:  # a symlink is replaced, never written through
        assert outside.read_bytes() == before


def test_a_directory_in_place_of_a_file_is_left_alone(data_dir, tmp_path, originals):
    raw = extracted_too(data_dir, tmp_path, originals)
    extracted = raw / "train-labels-idx1-ubyte"
    extracted.unlink()
    (extracted / "mine").mkdir(parents=True)
    lines = []
    assert same_as_the_originals(load(raw, lines), originals)
    assert lines == [f"{extracted} is damaged (it is a directory), and could not write {extracted}: "
                     "Is a directory; read the intact train-labels-idx1-ubyte.gz instead"]
    assert (extracted / "mine").is_dir()


def test_without_a_published_digest_the_archive_is_the_reference(data_dir, tmp_path, originals, monkeypatch):
    """FashionMNIST's case (no SHA-256 of its extracted files here): compared with the archive."""
    monkeypatch.setattr(idx_module, "EXTRACTED_SHA256", {})
    raw = extracted_too(data_dir, tmp_path, originals)
    flip_one_pixel(raw / "train-images-idx3-ubyte")
    lines = []
    assert same_as_the_originals(load(raw, lines), originals)
    assert lines == [f"{raw / 'train-images-idx3-ubyte'} was damaged (its bytes differ from those "
                     "in train-images-idx3-ubyte.gz): extracted it again from the intact "
                     "train-images-idx3-ubyte.gz"]
    assert (raw / "train-images-idx3-ubyte").read_bytes() == originals["train-images-idx3-ubyte"]


def test_a_checked_file_needs_no_archive(data_dir, tmp_path, originals):
    raw = extracted_too(data_dir, tmp_path, originals)
    for name in NAMES:
        (raw / f"{name}.gz").unlink()
    lines = []
    assert same_as_the_originals(load(raw, lines), originals) and lines == []


@pytest.mark.parametrize("damage, problem", DAMAGE[:4])
def test_damaged_file_without_its_archive_is_refused_in_one_line(data_dir, tmp_path, originals, capsys,
                                                                 damage, problem):
    raw = extracted_too(data_dir, tmp_path, originals)
    extracted = raw / "t10k-images-idx3-ubyte"
    (raw / "t10k-images-idx3-ubyte.gz").unlink()
    damage(extracted)
    damaged = extracted.read_bytes()
    status, stderr = run_script(capsys, "svi_train", *SMALL_RUN, "--data-dir", raw.parents[1],
                                "--out", tmp_path / "run")
    assert status == 2
    assert one_line(stderr) == (f"error: {extracted} is damaged ({problem}). Delete it and download it "
                                "again, or copy a good one (or its archive t10k-images-idx3-ubyte.gz) there.")
    assert extracted.read_bytes() == damaged and not (tmp_path / "run").exists()


def test_truncated_archive_is_refused_in_one_line(data_dir, tmp_path, capsys, monkeypatch):
    raw = archives_only(data_dir, tmp_path)
    archive = raw / "train-labels-idx1-ubyte.gz"
    archive.write_bytes(archive.read_bytes()[:-10])
    monkeypatch.setenv("PYRO_VAE_OFFLINE", "1")
    status, stderr = run_script(capsys, "svi_train", *SMALL_RUN, "--data-dir", raw.parents[1],
                                "--out", tmp_path / "run")
    assert status == 2
    assert one_line(stderr) == (f"error: {archive} failed the MD5 check. Delete it and download it again, "
                                "or copy a good one there.")
    assert not (raw / "train-labels-idx1-ubyte").exists() and not (tmp_path / "run").exists()


def test_a_damaged_archive_beside_a_damaged_file_is_named(data_dir, tmp_path, originals):
    raw = extracted_too(data_dir, tmp_path, originals)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01")
    archive = raw / "t10k-labels-idx1-ubyte.gz"
    archive.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 10004))  # a gzip, not MNIST's
    with pytest.raises(DatasetCorruptError, match=f"^{archive} failed the MD5 check"):
        load(raw, [])
    assert (raw / "t10k-labels-idx1-ubyte").read_bytes() == b"\x00\x00\x08\x01"
