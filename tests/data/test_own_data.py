"""Data beyond MNIST, from small files the tests make in the real formats (no network): a .npz of
arrays, an image folder, CIFAR-10's binary batches (a .tar.gz, extracted safely), Omniglot's
chardata.mat; what each refuses in one line."""

import io
import os
import tarfile

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from pyro_vae.config import make_config
from pyro_vae.core.errors import ConfigError, DatasetCorruptError, DatasetNotFoundError
from pyro_vae.data import cifar, load_dataset, omniglot
from pyro_vae.models.model_data import load_model_data


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_an_npz_of_uint8_images_in_any_layout(tmp_path, rng):
    train = rng.integers(0, 256, (30, 8, 6, 3), dtype=np.uint8)  # channel-last, as images are saved
    test = rng.integers(0, 256, (5, 8, 6, 3), dtype=np.uint8)
    path = tmp_path / "mine.npz"
    np.savez(path, train=train, test=test, train_labels=rng.integers(0, 4, 30), test_labels=np.arange(5))
    data = load_model_data(make_config({"dataset": str(path), "likelihood": "logistic", "valid_size": 10}))
    assert data.kind == "levels" and data.image_shape == (3, 8, 6)
    assert data.train.shape == (20, 144) and data.valid.shape == (10, 144) and data.test.shape == (5, 144)
    # channel-major rows: the red plane first, as a conv network reads (C, H, W)
    assert torch.equal(data.test[0, :48] * 255, torch.from_numpy(test[0, :, :, 0].reshape(-1)).float())
    assert torch.equal(data.valid_labels, torch.from_numpy(np.load(path)["train_labels"][20:]))
    binary = load_model_data(make_config({"dataset": str(path)}))  # bernoulli: binarized as MNIST is
    assert binary.dynamic_binarization and set(binary.test.unique().tolist()) <= {0.0, 1.0}


def test_an_npz_of_floats_keeps_what_they_are(tmp_path, rng):
    path = tmp_path / "floats.npz"
    np.savez(path, train=rng.random((20, 4, 4)).astype(np.float32), test=rng.random((4, 16)))
    data = load_dataset(str(path), binarize="none")
    assert data.kind == "continuous" and data.image_shape == (1, 4, 4)
    with pytest.raises(ConfigError, match="not 8-bit levels"):
        load_model_data(make_config({"dataset": str(path), "likelihood": "logistic"}))
    assert load_model_data(make_config({"dataset": str(path), "likelihood": "gaussian"})).kind == "continuous"


@pytest.mark.parametrize("arrays, phrase", [
    ({"train": np.zeros((3, 4, 4))}, "has no array test"),
    ({"train": np.zeros((3, 4, 4)), "test": np.full((2, 4, 4), 2.0)}, "must hold pixel values in [0, 1]"),
    ({"train": np.zeros((3, 4, 4)), "test": np.zeros((2, 5, 5))}, "differ in shape"),
    ({"train": np.zeros((3, 4, 4)), "test": np.zeros((2, 4, 4)), "train_labels": np.zeros(2, int)}, "3 integer classes"),
    ({"train": np.zeros((3, 4, 4), dtype=np.int32), "test": np.zeros((2, 4, 4))}, "images must be uint8"),
])
def test_an_npz_that_cannot_serve_is_refused_in_one_line(tmp_path, arrays, phrase):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ConfigError) as error:
        load_dataset(str(path), binarize="none")
    assert phrase in str(error.value) and "\n" not in str(error.value)


def test_an_npz_is_read_without_pickles(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, train=np.array([{"a": 1}], dtype=object), test=np.zeros((1, 2, 2)))
    with pytest.raises(DatasetCorruptError, match="could not be read as an .npz file"):
        load_dataset(str(path))
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset(str(tmp_path / "none.npz"))


def _image_folder(root, rng, sizes=((12, 10),)):
    for split, count in (("train", 4), ("test", 2)):
        for label in ("ants", "bees"):
            os.makedirs(root / split / label)
            for i in range(count):
                h, w = sizes[i % len(sizes)]
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / split / label / f"{i}.png")


def test_an_image_folder_with_resizing_and_grey(tmp_path, rng):
    _image_folder(tmp_path / "imgs", rng, sizes=((12, 10), (9, 14)))
    with pytest.raises(ConfigError, match="give --image-size H W"):
        load_dataset(str(tmp_path / "imgs"))
    data = load_model_data(make_config({"dataset": str(tmp_path / "imgs"), "image_size": [8], "likelihood": "logistic"}))
    assert data.kind == "levels" and data.image_shape == (3, 8, 8) and data.train.shape == (8, 192)
    assert sorted(data.train_labels.tolist()) == [0, 0, 0, 0, 1, 1, 1, 1] and data.test_labels.tolist() == [0, 0, 1, 1]
    grey = load_model_data(make_config({"dataset": str(tmp_path / "imgs"), "image_size": [6, 8], "channels": 1,
                                        "likelihood": "logistic"}))
    assert grey.image_shape == (1, 6, 8)
    with pytest.raises(ConfigError, match="image_size applies to a folder of images"):
        make_config({"image_size": [8]})
    with pytest.raises(ConfigError, match="has no train/ or test/ folder"):
        load_dataset(str(tmp_path / "imgs" / "train"))


def _cifar_archive(root, rng, per_file):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in (*cifar.TRAIN_FILES, cifar.TEST_FILE, "../escape.bin"):
            records = np.concatenate([rng.integers(0, 10, (per_file, 1), dtype=np.uint8),
                                      rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)], 1).tobytes()
            info = tarfile.TarInfo(name if name.startswith("..") else f"{cifar.FOLDER}/{name}")
            info.size = len(records)
            tar.addfile(info, io.BytesIO(records))
    (root / cifar.ARCHIVE).write_bytes(buf.getvalue())


def test_cifar10_from_its_binary_archive(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(cifar, "PER_FILE", 4)
    _cifar_archive(tmp_path, rng, 4)
    data = load_model_data(make_config({"dataset": "cifar10", "data_dir": str(tmp_path), "likelihood": "logistic"}))
    assert data.image_shape == (3, 32, 32) and data.train.shape == (20, 3072) and data.test.shape == (4, 3072)
    assert data.kind == "levels" and data.train_labels.max() < 10
    assert not (tmp_path.parent / "escape.bin").exists() and not (tmp_path / "escape.bin").exists()
    raw = (tmp_path / cifar.FOLDER / cifar.TEST_FILE).read_bytes()
    assert torch.equal(data.test[0] * 255, torch.tensor(list(raw[1:3073]), dtype=torch.float32))
    (tmp_path / cifar.FOLDER / cifar.TEST_FILE).write_bytes(raw[:-5])
    with pytest.raises(DatasetCorruptError, match="not 12292"):
        load_dataset("cifar10", str(tmp_path), binarize="none")


def test_cifar10_offline_says_what_is_missing(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="cifar-10-binary.tar.gz"):
        load_dataset("cifar10", str(tmp_path), download=False, binarize="none")


def test_omniglot_from_chardata_mat(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(omniglot, "SIZES", {"data": 12, "testdata": 5})
    os.makedirs(tmp_path / "OMNIGLOT")
    train = rng.random((784, 12))
    scipy.io.savemat(tmp_path / "OMNIGLOT" / "chardata.mat", {
        "data": train, "testdata": rng.random((784, 5)),
        "target": np.eye(50)[:, rng.integers(0, 50, 12)], "testtarget": np.eye(50)[:, rng.integers(0, 50, 5)]})
    data = load_dataset("omniglot", str(tmp_path))
    assert data.dynamic_binarization and data.train.shape == (12, 784) and data.test_labels.shape == (5,)
    # column-major images become row-major rows: pixel (row 0, column 1) is the matrix's entry 28
    assert data.train[0, 1].item() == pytest.approx(train[28, 0], abs=1e-7)
    scipy.io.savemat(tmp_path / "OMNIGLOT" / "chardata.mat", {"data": train})
    with pytest.raises(DatasetCorruptError, match="has no testdata of shape"):
        load_dataset("omniglot", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="chardata.mat"):
        load_dataset("omniglot", str(tmp_path / "elsewhere"), download=False)
