"""The command line, end to end, in a subprocess as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def svi_train(*args, data_dir=None, env=None):
    cmd = [sys.executable, str(REPO / "scripts" / "svi_train.py"), *args]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, **(env or {})})


SMALL = ["--limit-train", "512", "--limit-test", "256", "--batch-size", "64", "--hidden", "64",
         "--latent-dim", "8", "--epochs", "2"]


@pytest.mark.parametrize("elbo", ["trace", "meanfield"])
def test_train_end_to_end(data_dir, tmp_path, elbo):
    out = tmp_path / "run"
    result = svi_train(*SMALL, "--elbo", elbo, "--out", str(out), data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    assert "nats per image" in result.stdout and f"objective: {elbo}" in result.stdout
    assert "epoch   2/2" in result.stdout
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[-1]["test_elbo"] > records[0]["test_elbo"] - 5  # no collapse of the estimate
    assert (out / "checkpoint.pt").is_file() and (out / "config.yaml").is_file()

    resumed = svi_train("--resume", str(out), "--epochs", "3", data_dir=data_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at epoch 3" in resumed.stdout
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("flags", [["--estimator", "score", "--baseline", "nn"],
                                   ["--elbo", "renyi", "--alpha", "0.5", "--num-particles", "3"]],
                         ids=["score+nn", "renyi"])
def test_estimator_flags_end_to_end(data_dir, tmp_path, flags):
    result = svi_train(*SMALL, "--epochs", "1", *flags, "--out", str(tmp_path / "run"), data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    saved = (tmp_path / "run" / "config.yaml").read_text()
    for key, value in zip(flags[::2], flags[1::2]):
        assert f"{key[2:].replace('-', '_')}: {value}" in saved


def test_incompatible_flags_are_refused_before_loading_data(tmp_path):
    result = svi_train("--estimator", "score", "--elbo", "meanfield", data_dir=str(tmp_path / "none"))
    assert result.returncode == 2
    assert "needs a reparameterized guide" in result.stderr and "not in the data directory" not in result.stderr


def test_config_file_and_flags(data_dir, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("hidden: [32]\nlatent_dim: 4\nepochs: 5\n")
    out = tmp_path / "run"
    result = svi_train("--config", str(config), "--epochs", "1", "--limit-train", "128",
                       "--limit-test", "64", "--out", str(out), data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    assert "784-32-4" in result.stdout
    assert "epochs: 1" in (out / "config.yaml").read_text()


@pytest.mark.parametrize("args, message", [
    (["--elbo", "nope"], "error: unknown elbo 'nope'; choose one of: trace, tracegraph, meanfield"),
    (["--dataset", "cifar"], "error: unknown dataset 'cifar'"),
    (["--resume", "/nonexistent/run"], "error: --resume /nonexistent/run is missing: name a run directory"),
])
def test_user_errors_exit_with_a_message_not_a_traceback(args, message):
    result = svi_train(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_missing_dataset_message(tmp_path):
    empty = tmp_path / "empty"
    result = svi_train("--dataset", "binarized-mnist", data_dir=str(empty),
                       env={"PYRO_VAE_OFFLINE": "1"})  # no download attempt from a test
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "downloads are off: $PYRO_VAE_OFFLINE is set" in result.stderr
    assert f"not in the data directory {empty}" in result.stderr
    assert "binarized_mnist_train.amat" in result.stderr


def test_corrupt_checkpoint_message(data_dir, tmp_path):
    out = tmp_path / "run"
    assert svi_train(*SMALL, "--epochs", "1", "--out", str(out), data_dir=data_dir).returncode == 0
    (out / "checkpoint.pt").write_bytes(b"\x00" * 64)
    result = svi_train("--resume", str(out), "--epochs", "2", data_dir=data_dir)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "corrupt or truncated" in result.stderr


def test_output_lines_are_flushed_as_they_happen(monkeypatch):
    """Piped to a file, block-buffered stdout would show nothing until the run ends: inside a
    command the run's log lines are written to stdout one by one, each flushed."""
    import io

    from pyro_vae.core import console

    class Recorder(io.StringIO):
        flushes = 0

        def flush(self):
            Recorder.flushes += 1

    out = Recorder()
    monkeypatch.setattr(sys, "stdout", out)
    with console.lines_shown():
        console.log_line("epoch   1/10  ...")
    console.log_line("outside a command: nothing on stdout")
    assert out.getvalue() == "epoch   1/10  ...\n" and Recorder.flushes == 1


# --- pyro-vae COMMAND: the console entry point of [project.scripts] ---

def test_pyro_vae_without_a_command_lists_the_commands(capsys):
    from pyro_vae.cli.main import COMMANDS, main

    assert main([]) == 2
    err = capsys.readouterr().err
    assert all(f"  {name}" in err for name in COMMANDS)
    assert main(["nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown command 'nope'" in err and "grad-variance" in err


def test_every_command_and_its_script_run_the_same_main():
    import importlib.util

    from pyro_vae.cli.main import COMMANDS

    for module, script, _ in COMMANDS.values():
        spec = importlib.util.spec_from_file_location("shim", REPO / "scripts" / script)
        shim = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(shim)
        assert shim.main is importlib.import_module(f"pyro_vae.cli.{module}").main
    assert {p.name for p in (REPO / "scripts").glob("*.py")} == {s for _, s, _ in COMMANDS.values()}


def test_the_installed_pyro_vae_command_trains(data_dir, tmp_path):
    """As a user types it after pip install: the console script next to this Python."""
    import shutil

    command = shutil.which("pyro-vae", path=str(Path(sys.executable).parent))
    if command is None:
        pytest.skip("pyro-vae is not installed next to this Python (pip install -e . installs it)")
    shown = subprocess.run([command, "evaluate", "--help"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and shown.stdout.startswith("usage: pyro-vae evaluate")
    out = tmp_path / "run"
    done = subprocess.run([command, "train", *SMALL, "--epochs", "1", "--no-plots", "--out", str(out),
                           "--data-dir", data_dir], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (out / "checkpoint.pt").is_file()
