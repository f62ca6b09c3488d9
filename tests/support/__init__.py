"""What the tests share besides fixtures (those are in tests/conftest.py): a silent log, the
smallest real run, running a command in-process, reading a refusal. The modules beside this one
are test models with known answers (:mod:`.linear_gaussian`, :mod:`.two_layer_gaussian`) and
torchrun's ranks spawned in-process (:mod:`.spawn_ranks`)."""

import importlib.util
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


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
