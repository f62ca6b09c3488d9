import gzip
import os
import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch

from pyro_vae.core.errors import DatasetCorruptError, DatasetNotFoundError
from pyro_vae.data import load_dataset, parse_amat, resolve_data_dir
from pyro_vae.data import sources as sources_module

REPO = Path(__file__).resolve().parents[2]


def test_data_dir_precedence(monkeypatch):
    monkeypatch.setenv("PYRO_VAE_DATA", "/from/env")
    assert resolve_data_dir("/from/flag") == Path("/from/flag")
    assert resolve_data_dir(None) == Path("/from/env")
    monkeypatch.delenv("PYRO_VAE_DATA")
    assert resolve_data_dir(None) == Path("data")


def _pytest_from(cwd: Path, test: str) -> subprocess.CompletedProcess:
    """This suite's ``test``, run as a newcomer runs it from ``cwd``: no $PYRO_VAE_DATA, no $CI,
    offline (downloads off, so nothing is fetched)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYRO_VAE_DATA", "CI")}
    env["PYRO_VAE_OFFLINE"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           str(Path(__file__).resolve().parent / test)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_tests_find_mnist_where_the_scripts_do(data_dir, tmp_path):
    """With no $PYRO_VAE_DATA the suite reads ./data, like svi_train.py: MNIST there is tested,
    not skipped; a dataset missing there and impossible to download skips with the reason."""
    shutil.copytree(Path(data_dir) / "MNIST", tmp_path / "data" / "MNIST")
    ran = _pytest_from(tmp_path, "test_data.py::test_archives_alone_are_enough")
    assert "1 passed" in ran.stdout, ran.stdout
    skipped = _pytest_from(tmp_path, "test_data.py::test_binarized_mnist")
    assert "1 skipped" in skipped.stdout, skipped.stdout
    assert f"BinarizedMNIST is not in the data directory {tmp_path / 'data'}" in skipped.stdout
    assert "downloads are off" in skipped.stdout


def test_parse_amat():
    raw = b"0 1 1 0\n1 1 1 1 \n\n"
    assert parse_amat(raw, dim=4).tolist() == [[0, 1, 1, 0], [1, 1, 1, 1]]
    with pytest.raises(ValueError, match="expected 4 values"):
        parse_amat(b"0 1 1\n", dim=4)
    with pytest.raises(ValueError, match="other than 0, 1"):
        parse_amat(b"0 1 2 0\n", dim=4)


def test_mnist_splits(data_dir):
    d = load_dataset("mnist", data_dir)
    assert d.train.shape == (60000, 784) and d.test.shape == (10000, 784)
    assert d.dynamic_binarization and d.train_labels.shape == (60000,)
    assert 0 <= d.train.min() and d.train.max() <= 1 and len(d.train.unique()) > 2  # grey levels
    assert set(d.test.unique().tolist()) == {0.0, 1.0}
    # the mean pixel of MNIST is 0.1307; a fixed binarization keeps it within sampling error
    assert abs(d.test.mean().item() - 0.1325) < 0.003


def test_evaluation_binarization_is_fixed_and_limit_takes_a_prefix(data_dir):
    prefix = load_dataset("mnist", data_dir, limit_test=50)
    torch.manual_seed(123)  # the global seed must not matter
    full = load_dataset("mnist", data_dir)
    assert torch.equal(prefix.test, full.test[:50])
    assert len(prefix.test) == 50


def test_training_batches_are_binarized_afresh(data_dir):
    d = load_dataset("mnist", data_dir, limit_train=100)
    index = torch.arange(100)
    a, b = d.train_batch(index), d.train_batch(index)
    assert set(a.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(a, b)
    # E[bernoulli(p)] = p: the mean over 100 images differs from the grey mean by ~ 1/sqrt(78400)
    assert abs(a.mean() - d.train.mean()) < 5 * 0.5 / 280


def test_binarized_mnist(binarized_data_dir):
    d = load_dataset("binarized-mnist", binarized_data_dir, limit_train=1000)
    assert d.train.shape == (1000, 784) and d.valid.shape == (10000, 784) and d.test.shape == (10000, 784)
    assert not d.dynamic_binarization
    assert set(d.train.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(d.split("test"), d.test) and torch.equal(d.split("train"), d.train)


def test_corrupt_binarized_file_is_reported(binarized_data_dir, tmp_path):
    folder = tmp_path / "BinarizedMNIST"
    shutil.copytree(Path(binarized_data_dir) / "BinarizedMNIST", folder)
    test_file = folder / "binarized_mnist_test.amat.gz"
    raw = bytearray(gzip.decompress(test_file.read_bytes()))
    raw[0] = ord("1") if raw[0] == ord("0") else ord("0")  # flip one pixel
    test_file.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DatasetCorruptError, match="binarized_mnist_test.amat.gz is corrupt.*SHA-256"):
        load_dataset("binarized-mnist", str(tmp_path))


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST/raw"), ("binarized-mnist", "BinarizedMNIST"),
                                          ("fashion-mnist", "FashionMNIST/raw")])
def test_missing_dataset_without_downloads(tmp_path, name, folder):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(name, str(tmp_path), download=False)
    message = str(err.value)
    assert str(tmp_path) in message and str(tmp_path / folder) in message
    assert "point data_dir or $PYRO_VAE_DATA at" in message  # Python's name (flags in a command)


def test_offline_environment_variable_disables_downloads(tmp_path, monkeypatch):
    def must_not_download(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(sources_module, "download_url", must_not_download)
    monkeypatch.setenv("PYRO_VAE_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError, match=r"downloads are off: \$PYRO_VAE_OFFLINE is set"):
        load_dataset("binarized-mnist", str(tmp_path))


def test_corrupt_mnist_archive_is_reported(data_dir, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (Path(data_dir) / "MNIST" / "raw").glob("*.gz"):
        shutil.copy(f, raw)
    damaged = raw / "t10k-labels-idx1-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:-10])
    with pytest.raises(DatasetCorruptError, match="t10k-labels-idx1-ubyte.gz failed the MD5 check"):
        load_dataset("mnist", str(tmp_path))


def test_missing_dataset_when_download_fails(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", offline)
    monkeypatch.setattr(sources_module, "download_url", offline)
    for name in ("mnist", "binarized-mnist"):
        with pytest.raises(DatasetNotFoundError, match="could not be downloaded"):
            load_dataset(name, str(tmp_path))


def test_archives_alone_are_enough(data_dir, tmp_path):
    """Only the .gz files, as in ../shared/datasets: torchvision extracts them offline."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (Path(data_dir) / "MNIST" / "raw").glob("*.gz"):
        shutil.copy(f, raw)
    assert load_dataset("mnist", str(tmp_path), limit_train=10, limit_test=10).train.shape == (10, 784)


def test_a_configs_data_section_loads_what_it_names(data_dir):
    from pyro_vae.config import make_config
    from pyro_vae.models.model_data import load_model_data

    data = load_model_data(make_config({"data_dir": data_dir, "limit_train": 100, "limit_test": 20,
                                        "valid_size": 1000}))
    again = load_dataset("mnist", data_dir, limit_train=100, limit_test=20, valid_size=1000)
    assert data.train.shape == (100, 784)
    assert torch.equal(data.test, again.test) and torch.equal(data.valid, again.valid)
