"""Datasets as whole tensors on the training device: the registry of datasets, :class:`VAEData`,
the shipped loaders and their file checks, binarization and the data directory.

- :mod:`~pyro_vae.data.registry`: ``DATASETS``, :func:`register_dataset`, :func:`load_dataset`;
- :mod:`~pyro_vae.data.presentation`: binary, 8-bit or dequantized values, as the likelihood needs;
- :mod:`~pyro_vae.data.vaedata`: :class:`VAEData`, the splits of one dataset on one device;
- :mod:`~pyro_vae.data.binarize`: grey levels binarized afresh for training, once (fixed seed)
  for evaluation;
- :mod:`~pyro_vae.data.sources`: the data directory (``data_dir``, else ``$PYRO_VAE_DATA``, else
  ``./data``), downloads (unless ``$PYRO_VAE_OFFLINE`` is set) and what is missing;
- :mod:`~pyro_vae.data.idx`: MNIST's file layout, checked on every load;
- :mod:`~pyro_vae.data.mnist`: the shipped loaders: ``mnist``, ``fashion-mnist`` (grey levels)
  and ``binarized-mnist`` (Larochelle & Murray's fixed binarization, 50k/10k/10k).

Files already in the data directory are used without network access (MNIST's archives alone
are enough: they are extracted there); missing files are downloaded, and if that fails the
error names the directory, the missing files and how to provide them.
"""

from pyro_vae.data.binarize import EVAL_BINARIZATION_SEED, binarize_fixed
from pyro_vae.data.idx import EXTRACTED_SHA256, idx_problem
from pyro_vae.data.mnist import BINARIZED_MNIST_SHA256, BINARIZED_MNIST_SIZES, BINARIZED_MNIST_URL, parse_amat
from pyro_vae.data.presentation import present
from pyro_vae.data.registry import DATASETS, load_dataset, register_dataset
from pyro_vae.data.sources import DATA_DIR_ENV, OFFLINE_ENV, downloads_allowed, resolve_data_dir
from pyro_vae.data.vaedata import IMAGE_SHAPE, VAEData

__all__ = ["BINARIZED_MNIST_SHA256", "BINARIZED_MNIST_SIZES", "BINARIZED_MNIST_URL", "DATASETS",
           "DATA_DIR_ENV", "EVAL_BINARIZATION_SEED", "EXTRACTED_SHA256", "IMAGE_SHAPE", "OFFLINE_ENV",
           "VAEData", "binarize_fixed", "downloads_allowed", "idx_problem", "load_dataset",
           "parse_amat", "present", "register_dataset", "resolve_data_dir"]
