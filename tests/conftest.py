"""Shared fixtures. The data directory is the scripts' own: ``$PYRO_VAE_DATA``, else ``./data``
(relative to where pytest runs). A dataset missing there is downloaded once, as
``svi_train.py`` would, unless downloads are off (``$PYRO_VAE_OFFLINE``) or impossible; then the
tests that need it skip with one line saying where the files should go (under ``$CI`` they fail
instead: CI points ``$PYRO_VAE_DATA`` at a copy of ../shared/datasets)."""

import importlib.util
import os
from pathlib import Path

import pyro
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


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
    they test. The GPU's own paths are tests/test_cuda*.py, marked ``cuda`` (pinning device cuda).
    Module- and session-scoped fixtures run before this one: they pin their device themselves."""
    if request.node.get_closest_marker("cuda") is None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture(autouse=True)
def fresh_pyro_state():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


def quiet(*_args, **_kwargs):
    """A ``log`` callable for Trainer that prints nothing."""


# The smallest run that is still a real one: a second to train, for tests that open, copy or
# tamper with a run directory.
TINY_RUN = {"limit_train": 64, "limit_test": 16, "batch_size": 32, "hidden": [16], "latent_dim": 2,
            "epochs": 1, "plots": False, "device": "cpu"}


def train_tiny_run(data_dir: str, out: Path, **overrides) -> Path:
    """:data:`TINY_RUN` (with ``overrides``) trained into ``out``."""
    from pyro_vae.training.trainer import train

    train({"data_dir": data_dir, **TINY_RUN, **overrides, "out": str(out)}, log=quiet, progress=False)
    return out


def assert_one_line_error(status: int, stderr: str, *phrases: str) -> str:
    """A script's refusal as the docs promise it: status 2 and one line on stderr, no
    traceback, holding each of ``phrases``; returns the line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert status == 2 and "Traceback" not in stderr and len(lines) == 1, stderr
    for phrase in phrases:
        assert phrase in lines[0], stderr
    return lines[0]


@pytest.fixture
def small_run(data_dir, tmp_path):
    """Overrides for a run that trains in about a second."""
    return {"data_dir": data_dir, "limit_train": 256, "limit_test": 128, "batch_size": 32,
            "hidden": [64], "latent_dim": 8, "epochs": 2, "plots": False, "device": "cpu",
            "out": str(tmp_path / "run")}


def load_command(script: str):
    """The command behind ``scripts/<script>.py`` (its module of pyro_vae/cli), executed afresh
    as a new module, so it binds the library functions a test has patched, as a new process
    would."""
    from pyro_vae.cli.main import COMMANDS

    module_name = {s: m for m, s, _ in COMMANDS.values()}[f"{script}.py"]
    spec = importlib.util.spec_from_file_location(f"command_{module_name}",
                                                  REPO / "pyro_vae" / "cli" / f"{module_name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(capsys, name: str, *args) -> tuple[int, str]:
    """Exit status and stderr of ``python scripts/<name>.py args``, run in this process through
    the command's ``main(argv)`` (seconds faster than a subprocess; argparse's exit included)."""
    module = load_command(name)
    try:
        status = module.main([str(a) for a in args])
    except SystemExit as e:
        status = e.code
    return status, capsys.readouterr().err


def poison_losses(monkeypatch, trainer, value: float) -> None:
    """Every training step of ``trainer`` reports the loss ``value`` (nan, inf) and updates nothing,
    whether the step is compiled or eager."""
    from pyro_vae.infer.lowering import LoweredStep

    trainer.step.elbo.loss_and_grads = lambda *args, **kwargs: value
    monkeypatch.setattr(LoweredStep, "__call__",
                        lambda self, x: (torch.tensor(value), [None] * len(self.params)))
