"""Shared fixtures. The data directory is the scripts' own: ``$PYRO_VAE_DATA``, else ``./data``
(relative to where pytest runs). A dataset missing there is downloaded once, as
``svi_train.py`` would, unless downloads are off (``$PYRO_VAE_OFFLINE``) or impossible; then the
tests that need it skip with one line saying where the files should go (under ``$CI`` they fail
instead: CI points ``$PYRO_VAE_DATA`` at a copy of ../shared/datasets). Helpers that tests import
are in :mod:`support`; the tests are laid out as the package is (``tests/<layer>/``, and
``tests/system/`` for whole commands, faults, safety and torchrun)."""

import os
from pathlib import Path

import pyro
import pytest
import torch


def _dataset_in(name: str, root: Path) -> str:
    """``root`` once ``name`` loads from it (downloading it there if it is missing and downloads
    are allowed); a one-line skip (a failure under ``$CI``) when it cannot."""
    from pyro_vae.core.errors import DatasetNotFoundError
    from pyro_vae.data import load_dataset

    try:
        load_dataset(name, str(root), limit_train=1, limit_test=1)
    except DatasetNotFoundError as e:
        message = f"{name} is not available for the tests: {e}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return str(root)


@pytest.fixture(scope="session")
def data_dir() -> str:
    """The data directory holding MNIST (downloaded there on first use when possible)."""
    from pyro_vae.data import resolve_data_dir

    return _dataset_in("mnist", resolve_data_dir().resolve())


@pytest.fixture(scope="session")
def binarized_data_dir(data_dir) -> str:
    """:func:`data_dir`, also holding Larochelle's binarized MNIST (downloaded when possible)."""
    return _dataset_in("binarized-mnist", Path(data_dir))


@pytest.fixture(autouse=True)
def cpu_unless_marked_cuda(request, monkeypatch):
    """The suite runs on the CPU on any machine: a test not marked ``cuda`` sees no GPU, so a run's
    default device "auto" (and every "auto" a script resolves, the process group's backend, the
    workload estimates) means the CPU, as on the CPU-only machines the suite was written on. Exact
    comparisons between runs, and CPU-only paths such as the uncaptured device loop, stay what
    they test. The GPU's own paths are tests/training/test_cuda.py and tests/evaluation/test_cuda_evaluate.py, marked ``cuda`` (pinning device cuda).
    Module- and session-scoped fixtures run before this one: they pin their device themselves."""
    if request.node.get_closest_marker("cuda") is None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture(autouse=True)
def fresh_pyro_state():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture
def small_run(data_dir, tmp_path):
    """Overrides for a run that trains in about a second."""
    return {"data_dir": data_dir, "limit_train": 256, "limit_test": 128, "batch_size": 32,
            "hidden": [64], "latent_dim": 8, "epochs": 2, "plots": False, "device": "cpu",
            "out": str(tmp_path / "run")}
