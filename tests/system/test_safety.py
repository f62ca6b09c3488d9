"""Opening a run never runs code its author put there: crafted checkpoints, import paths, pickles.

A run directory is data that people share. The checkpoint is read with ``weights_only=True``,
and import paths saved in its config are imported only when the person opening the run names
them (``--trust-import PATH``, or the same ``--prior PATH`` on resume).
"""

import os
import re
import sys
from pathlib import Path

import pytest
import torch
from support import quiet, run_script, train_tiny_run

from pyro_vae.core.errors import CheckpointError, UntrustedImportError
from pyro_vae.evaluation import evaluate_run
from pyro_vae.runs import load_checkpoint, save_checkpoint
from pyro_vae.studies import run_diagnostic
from pyro_vae.training.trainer import Trainer, train
from pyro_vae.viz import compare_runs, plot_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained_run(data_dir, tmp_path_factory):
    """One small trained run, copied by each test that tampers with it."""
    return train_tiny_run(data_dir, tmp_path_factory.mktemp("safety") / "run")


def copy_run(source: Path, target: Path) -> Path:
    target.mkdir()
    for name in ("checkpoint.pt", "config.yaml", "metrics.jsonl"):
        (target / name).write_bytes((source / name).read_bytes())
    return target


def craft(run: Path, prior: str, options: dict) -> None:
    """What an attacker can do: a valid checkpoint (checksum recomputed) naming code to import,
    with the same in config.yaml."""
    state = load_checkpoint(run / "checkpoint.pt")
    state["config"].update(prior=prior, prior_options=options)
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version", "checksum")},
                    run / "checkpoint.pt")
    text = (run / "config.yaml").read_text().replace("prior: normal", f"prior: '{prior}'")
    (run / "config.yaml").write_text(text)


def payloads(tmp_path: Path) -> dict[str, tuple[str, dict, Path]]:
    """The issue's two exploits and a module whose import leaves a mark: prior, options, and the
    file that appears if the code ran."""
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "hubconf.py").write_text(f"open({str(tmp_path / 'hub-ran')!r}, 'w').close()\n")
    (tmp_path / "evil_prior_module.py").write_text(
        f"open({str(tmp_path / 'module-ran')!r}, 'w').close()\nclass Prior: pass\n")
    return {
        "logging": ("logging:basicConfig", {"filename": str(tmp_path / "truncated"), "filemode": "w"},
                    tmp_path / "truncated"),
        "hub": ("torch.hub:load", {"repo_or_dir": str(hub), "model": "m", "source": "local"},
                tmp_path / "hub-ran"),
        "module": ("evil_prior_module:Prior", {}, tmp_path / "module-ran"),
    }


OPENERS = {
    "evaluate": lambda run, d: evaluate_run(run, num_samples=5, limit=4, data_dir=d, log=quiet, progress=False),
    "resume": lambda run, d: train({"resume": str(run), "epochs": 2, "data_dir": d}, log=quiet, progress=False),
    "plot": lambda run, d: plot_run(run, d, num_points=8),
    "grad_variance": lambda run, d: run_diagnostic(str(run), {"data_dir": d}, repeats=2, log=quiet),
}


@pytest.mark.parametrize("payload", ["logging", "hub", "module"])
@pytest.mark.parametrize("opener", list(OPENERS))
def test_crafted_checkpoint_imports_nothing(trained_run, data_dir, tmp_path, monkeypatch, opener, payload):
    prior, options, mark = payloads(tmp_path)[payload]
    monkeypatch.syspath_prepend(str(tmp_path))
    run = copy_run(trained_run, tmp_path / "shared-run")
    craft(run, prior, options)
    before = set(run.iterdir())
    advice = re.escape(f"trusted_imports={[prior]!r}")  # from Python: the argument to pass
    with pytest.raises(UntrustedImportError, match=f"names the prior '{prior}'.*{advice}"):
        OPENERS[opener](run, data_dir)
    assert not mark.exists()
    assert "evil_prior_module" not in sys.modules
    assert set(run.iterdir()) - before <= {run / ".lock"}  # nothing written but, at most, the lock


def test_compare_reads_a_crafted_run_as_data(trained_run, tmp_path, monkeypatch):
    prior, options, mark = payloads(tmp_path)["module"]
    monkeypatch.syspath_prepend(str(tmp_path))
    run = copy_run(trained_run, tmp_path / "shared-run")
    craft(run, prior, options)
    compare_runs([run], tmp_path / "comparison")
    assert not mark.exists() and "evil_prior_module" not in sys.modules
    assert "prior evil_prior_module:Prior" in (tmp_path / "comparison" / "compare.md").read_text()


def test_crafted_checkpoint_from_the_command_line(trained_run, data_dir, tmp_path, capsys):
    prior, options, mark = payloads(tmp_path)["logging"]
    run = copy_run(trained_run, tmp_path / "shared-run")
    craft(run, prior, options)
    for script, args in (("evaluate", [run, "--num-samples", "5"]),
                         ("svi_train", ["--resume", run, "--epochs", "2"]),
                         ("plot_run", [run]), ("grad_variance", [run])):
        status, stderr = run_script(capsys, script, *args, "--data-dir", data_dir)
        assert status == 2, (script, stderr)
        assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
        assert "pass --trust-import logging:basicConfig" in stderr
        assert not mark.exists()


def test_a_named_prior_is_trusted(data_dir, tmp_path, monkeypatch):
    """The docs' own prior: named when training, refused when reopened unnamed, accepted with
    --trust-import or (on resume) the same --prior."""
    monkeypatch.syspath_prepend(str(REPO / "examples"))
    prior = "custom_prior:LearnedLaplacePrior"
    out = tmp_path / "run"
    common = {"data_dir": data_dir, "limit_train": 64, "limit_test": 16, "batch_size": 32,
              "hidden": [16], "latent_dim": 2, "plots": False}
    train({**common, "prior": prior, "epochs": 1, "out": str(out)}, log=quiet, progress=False)
    with pytest.raises(UntrustedImportError):
        evaluate_run(out, num_samples=5, limit=4, log=quiet, progress=False)
    summary = evaluate_run(out, num_samples=5, limit=4, log=quiet, progress=False, trusted_imports=[prior])
    assert summary["num_points"] == 4
    with pytest.raises(UntrustedImportError):
        train({"resume": str(out), "epochs": 2}, log=quiet, progress=False)
    assert train({"resume": str(out), "epochs": 2, "prior": prior}, log=quiet, progress=False).epoch == 2
    assert train({"resume": str(out), "epochs": 3}, trusted_imports=[prior], log=quiet, progress=False).epoch == 3
    assert plot_run(out, trusted_imports=[prior])


def test_pickled_code_is_refused_without_suggesting_to_unblock_it(tmp_path):
    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'pwned'}",)

    torch.save({"format": "pyro-vae-checkpoint", "version": 2, "model": Payload()}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(tmp_path)
    message = str(error.value)
    assert "holds Python objects that a pyro-vae checkpoint never contains" in message
    assert "GLOBAL" in message and "was not loaded" in message
    assert "damaged after it was written" not in message
    assert "Re-running" not in message and "add_safe_globals" not in message
    assert not (tmp_path / "pwned").exists()


def test_checksum_detects_bytes_changed_in_place(trained_run, tmp_path):
    """The issue's case: 16 bytes overwritten in the middle loaded fine before checksums."""
    run = copy_run(trained_run, tmp_path / "run")
    path = run / "checkpoint.pt"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="do not match the SHA-256 checksum"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="checksum"):
        Trainer.resume(str(run), {"epochs": 2}, log=quiet, progress=False)


def test_checksum_covers_every_value(trained_run):
    """Any change to a tensor, a number or a string of the state is a different checksum."""
    from pyro_vae.runs.checkpoint import content_digest

    state = load_checkpoint(trained_run / "checkpoint.pt")
    digest = content_digest(state)
    assert state["checksum"] == digest
    for change in (lambda s: s["model"]["decoder.net.2.bias"].__setitem__(0, 0.5),
                   lambda s: s["metrics"][0].__setitem__("test_elbo", 0.0),
                   lambda s: s["config"].__setitem__("seed", 1),
                   lambda s: s["optimizer"]["param_groups"][0].__setitem__("lr", 0.5)):
        changed = load_checkpoint(trained_run / "checkpoint.pt")
        change(changed)
        assert content_digest(changed) != digest
