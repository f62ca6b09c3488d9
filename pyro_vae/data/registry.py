"""The dataset registry (``dataset`` names -> loaders) and loading a dataset onto a device."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torchvision import datasets as tv_datasets

from pyro_vae.core.choices import publish
from pyro_vae.core.console import log_line
from pyro_vae.core.distributed import log_on_main
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.registry import Registry
from pyro_vae.data.arrays import is_file_dataset, load_npz
from pyro_vae.data.cifar import load_cifar10
from pyro_vae.data.folders import load_folder
from pyro_vae.data.mnist import binarized_mnist, grey_levels
from pyro_vae.data.omniglot import load_omniglot
from pyro_vae.data.presentation import present
from pyro_vae.data.sources import downloads_allowed, resolve_data_dir
from pyro_vae.data.vaedata import VAEData

# name -> ``loader(root, download, valid_size, log) -> VAEData`` (see register_dataset).
DATASETS = Registry(
    "dataset",
    validation=None,  # the size of the dataset's own validation split (None: valid_size makes one)
    train_size=None,  # training images before a valid_size split (None: unknown until loaded)
    values=None,  # what its loader returns: binary | levels | continuous (None: known once loaded)
)
publish("dataset", DATASETS)


def register_dataset(name: str, *, description: str = "", replace: bool = False,
                     **capabilities) -> Callable[[Callable], Callable]:
    """A decorator registering a loader as the dataset ``name`` (``--dataset name``).

    The loader is called as ``loader(root, download, valid_size, log)``: ``root`` the resolved
    data directory (a Path), ``download`` whether it may download (False offline), ``valid_size``
    the number of training images to hold out as a validation split (or None), ``log`` a
    function taking one line. It returns a :class:`VAEData` on the CPU with whole splits, its
    values as they are (``kind``: binary, levels or continuous): :func:`load_dataset` presents
    them for the likelihood, applies the limits and moves it to the device. A dataset that
    registers its ``values`` (kind) has a mismatched likelihood refused with the config, before loading. A dataset with its own
    validation split registers ``validation=N`` (its size), so that valid_size is refused; one
    that knows its size registers ``train_size=N``, so that a valid_size leaving no training
    images is refused before anything loads.
    """
    return DATASETS.register(name, description=description, replace=replace, **capabilities)


register_dataset("mnist", train_size=60000, values="levels",
                 description="MNIST digits, 60k/10k, 8-bit grey levels (binarized dynamically for bernoulli)")(
    grey_levels("mnist", tv_datasets.MNIST, "MNIST"))
register_dataset("binarized-mnist", validation=10000, train_size=50000, values="binary",
                 description="Larochelle & Murray's static binarization of MNIST, 50k/10k/10k")(
    binarized_mnist)
register_dataset("fashion-mnist", train_size=60000, values="levels",
                 description="Fashion-MNIST clothing, 60k/10k, 8-bit grey levels (binarized dynamically for bernoulli)")(
    grey_levels("fashion-mnist", tv_datasets.FashionMNIST, "FashionMNIST"))
register_dataset("cifar10", train_size=50000, values="levels",
                 description="CIFAR-10, 50k/10k colour images of 32 x 32, 8-bit levels (the binary version)")(
    load_cifar10)
register_dataset("omniglot", train_size=24345,
                 description="Omniglot 28 x 28, Burda et al.'s 24,345/8,070 split (chardata.mat), grey "
                             "values binarized dynamically for bernoulli")(load_omniglot)


def load_dataset(name: str, data_dir: Optional[str] = None, device: str | torch.device = "cpu",
                 limit_train: Optional[int] = None, limit_test: Optional[int] = None,
                 download: bool = True, valid_size: Optional[int] = None,
                 log: Optional[Callable[[str], None]] = None, binarize: Optional[str] = None,
                 likelihood_data: Optional[str] = None, likelihood: str = "the likelihood",
                 image_size: Optional[Sequence[int]] = None, channels: Optional[int] = None) -> VAEData:
    """Load ``name`` (a registered dataset) from the resolved data directory onto ``device``, its
    values presented as a likelihood of data kind ``likelihood_data`` (binary, levels or
    continuous; named ``likelihood`` in messages) scores them, following ``binarize``
    (:func:`~pyro_vae.data.presentation.present`). Without ``likelihood_data``, ``binarize``
    alone decides: grey levels are binarized afresh per batch (the default, as MNIST is in the
    IWAE protocol) or once (``fixed``), or kept as they are (``none``: a run presents them for
    its likelihood).

    ``limit_train``/``limit_test`` keep the first N examples of each split (evaluation splits are
    binarized or dequantized before they are cut, so the first N images are the same whatever N
    is). ``valid_size`` holds out the last N training images as the validation split (grey-level
    datasets only; binarized-mnist has its own): presented once, like the test split, as in the
    VampPrior code, and cut before ``limit_train``, so it is the same whatever that is.
    ``log`` (default: print on rank 0) hears of files extracted or repaired from their archives.
    ``name`` may also be the path of a ``.npz`` file (:mod:`~pyro_vae.data.arrays`) or of an image
    folder (:mod:`~pyro_vae.data.folders`, resized and cropped by ``image_size``, converted by
    ``channels``).
    """
    if is_file_dataset(name):  # the user's own file or folder
        path = Path(name).expanduser()
        data = load_npz(path, valid_size) if name.endswith(".npz") else \
            load_folder(path, valid_size, image_size, channels)
    else:
        loader = DATASETS.get(name).factory
        data = loader(resolve_data_dir(data_dir), downloads_allowed(download), valid_size,
                      log_on_main(log or log_line))
    if not isinstance(data, VAEData):
        raise ConfigError(f"dataset {name!r}: its loader returned {type(data).__name__}, not VAEData")
    if likelihood_data is None:
        likelihood_data = data.kind if binarize == "none" else "binary"
    data = present(data, binarize, likelihood_data, likelihood)
    return _limit_and_move(data, limit_train, limit_test, torch.device(device))


def _limit_and_move(data: VAEData, limit_train, limit_test, device) -> VAEData:
    return limited(data, limit_train, limit_test).mapped(lambda name, t: t.contiguous().to(device))


def limited(data: VAEData, limit_train: Optional[int], limit_test: Optional[int]) -> VAEData:
    """``data`` with its first ``limit_train`` training images (and labels) and its first
    ``limit_test`` test and validation images (None: all)."""
    def cut(name: str, t: torch.Tensor) -> torch.Tensor:
        limit = limit_train if name.startswith("train") else limit_test
        return t if name.startswith("labelled") else t[:limit]
    return data.mapped(cut)
