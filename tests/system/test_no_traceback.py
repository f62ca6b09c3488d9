"""Nothing a user or a shared file can cause ends in a raw traceback.

pyro-vae's own errors are one line (their message); anything else that escapes a script, a
user model that fails after its start-up probe above all, is one line too: what was raised,
where in the user's code, and what the run kept. ``PYRO_VAE_TRACEBACK=1`` shows the traceback.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_faults import one_line_error

from pyro_vae.cli.exits import run_command
from pyro_vae.core.console import describe_unexpected
from pyro_vae.runs.checkpoint import load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[2]
TINY = ["--limit-train", "256", "--limit-test", "32", "--batch-size", "32", "--latent-dim", "2",
        "--no-plots"]

FAILING_MODEL = textwrap.dedent("""
    import os
    from examples.custom_model import StyleContentVAE

    class FailsLater(StyleContentVAE):
        '''Trains normally until FAIL_NOW is set: then its guide raises on batches larger than the
        two images of pyro-vae's start-up probe, as a user's bug would that the probe misses.'''
        def guide(self, x):
            if os.environ.get("FAIL_NOW") and x.shape[-2] > 2:
                raise RuntimeError("boom in the guide")
            return super().guide(x)
""")


def script(tmp_path: Path, name: str, *args: str, fail: bool = False, **env) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]), **env}
    environ.pop("FAIL_NOW", None)
    if fail:
        environ["FAIL_NOW"] = "1"
    return subprocess.run([sys.executable, str(REPO / "scripts" / f"{name}.py"), *args],
                          capture_output=True, text=True, timeout=300, env=environ, cwd=tmp_path)


@pytest.fixture
def failing_run(tmp_path, data_dir) -> Path:
    """One epoch of a user model that can be made to fail."""
    (tmp_path / "fragile_model.py").write_text(FAILING_MODEL)
    out = tmp_path / "run"
    trained = script(tmp_path, "svi_train", "--model", "fragile_model:FailsLater", "--out", str(out),
                     "--epochs", "1", "--data-dir", data_dir, *TINY)
    assert trained.returncode == 0, trained.stderr
    return out


def test_a_user_model_failing_in_training_names_its_line_and_what_was_kept(failing_run, data_dir, tmp_path):
    saved = (failing_run / "checkpoint.pt").read_bytes()
    result = script(tmp_path, "svi_train", "--resume", str(failing_run), "--epochs", "2", "--model",
                    "fragile_model:FailsLater", "--data-dir", data_dir, fail=True)
    assert result.returncode == 2
    message = one_line_error(result)
    assert "your code raised RuntimeError: boom in the guide" in message
    assert "fragile_model.py:" in message and "in guide" in message
    assert f"The checkpoint of epoch 1 in {failing_run} is intact" in message
    assert (failing_run / "checkpoint.pt").read_bytes() == saved


def test_a_user_model_failing_in_evaluation_is_one_line(failing_run, data_dir, tmp_path):
    result = script(tmp_path, "evaluate", str(failing_run), "--num-samples", "5", "--limit", "4",
                    "--trust-import", "fragile_model:FailsLater", "--data-dir", data_dir, fail=True)
    assert result.returncode == 2
    assert "your code raised RuntimeError: boom in the guide" in one_line_error(result)
    assert not (failing_run / "eval.json").exists()


def test_the_traceback_is_there_when_asked_for(failing_run, data_dir, tmp_path):
    result = script(tmp_path, "evaluate", str(failing_run), "--num-samples", "5", "--limit", "4",
                    "--trust-import", "fragile_model:FailsLater", "--data-dir", data_dir, fail=True,
                    PYRO_VAE_TRACEBACK="1")
    assert result.returncode == 1 and "Traceback" in result.stderr and "boom in the guide" in result.stderr


def test_nan_weights_are_named_before_evaluating(failing_run, data_dir, tmp_path):
    state = load_checkpoint(failing_run / "checkpoint.pt")
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version", "checksum")},
                    failing_run / "checkpoint.pt")
    result = script(tmp_path, "evaluate", str(failing_run), "--num-samples", "5", "--limit", "4",
                    "--trust-import", "fragile_model:FailsLater", "--data-dir", data_dir)
    assert result.returncode == 2
    message = one_line_error(result)
    assert f"field 'model.{name}'" in message and "NaN or infinite" in message


def test_resume_on_a_file_is_one_line(tmp_path, data_dir):
    (tmp_path / "notes.txt").write_text("not a run\n")
    result = script(tmp_path, "svi_train", "--resume", str(tmp_path / "notes.txt"), "--data-dir", data_dir)
    assert result.returncode == 2
    assert "is a file: name a run directory" in one_line_error(result)


def test_other_errors_are_one_line_saying_whose_they_are(capsys):
    def users_work():
        return torch.zeros(2) @ torch.zeros(3)  # raised inside torch, called from this file
    assert run_command(users_work) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: your code raised RuntimeError")
    assert f"{Path(__file__).name}:" in err and "in users_work" in err
    # no frame outside pyro-vae and its libraries: a bug of pyro-vae's, to be reported
    message = describe_unexpected(ValueError("line one\nline two"))
    assert message.startswith("unexpected ValueError: line one line two") and "PYRO_VAE_TRACEBACK=1" in message


@pytest.mark.parametrize("content", [b"the user's own notes\n", b"", b"\x80\x02]q\x00.", bytes(range(256)) * 8])
def test_a_file_that_is_no_checkpoint_is_one_line(tmp_path, content):
    """Any bytes at a checkpoint's name (a planted best.pt, a copy gone wrong) are refused as such."""
    from pyro_vae.core.errors import CheckpointError
    (tmp_path / "checkpoint.pt").write_bytes(content)
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(tmp_path)
    assert "\n" not in str(refused.value) and str(tmp_path / "checkpoint.pt") in str(refused.value)


NO_PARAMETERS = textwrap.dedent("""
    import pyro, pyro.distributions as dist, torch
    from torch import nn

    class NoParams(nn.Module):
        # a model and guide with nothing to learn
        def __init__(self, x_dim, latent_dim):
            super().__init__()
        def model(self, x):
            with pyro.plate("data", x.shape[-2]):
                pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
                pyro.sample("x", dist.Bernoulli(logits=torch.zeros_like(x)).to_event(1), obs=x)
        def guide(self, x):
            with pyro.plate("data", x.shape[-2]):
                pyro.sample("z", dist.Normal(x.new_zeros(x.shape[:-1] + (2,)), 1.0).to_event(1))
""")


def test_a_user_model_without_parameters_is_one_line(tmp_path, data_dir):
    (tmp_path / "odd_models.py").write_text(NO_PARAMETERS)
    result = script(tmp_path, "svi_train", "--model", "odd_models:NoParams", "--out", str(tmp_path / "run"),
                    "--epochs", "1", "--data-dir", data_dir, *TINY)
    assert result.returncode == 2
    assert "model 'odd_models:NoParams' has no parameters to train" in one_line_error(result)
    assert not (tmp_path / "run").exists()


def test_advice_naming_a_shared_import_path_quotes_it():
    """The command a message suggests pastes as exactly what the checkpoint named, never more."""
    from pyro_vae.config import check_trusted_imports
    from pyro_vae.core.errors import UntrustedImportError
    from pyro_vae.core.options import flag_style
    evil = "evil:M; touch /tmp/owned\nmore"
    with pytest.raises(UntrustedImportError) as refused, flag_style():  # as a command says it
        check_trusted_imports({"model": evil}, [], "the checkpoint in run")
    message = str(refused.value)
    word = message.split("pass --trust-import ", 1)[1]
    assert "\n" not in message
    pasted = subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True, text=True)
    assert pasted.stdout == evil  # one shell word, exactly the path: nothing else runs
    with pytest.raises(UntrustedImportError) as refused:  # as Python says it: the list to pass
        check_trusted_imports({"model": evil}, [], "the checkpoint in run")
    assert f"pass trusted_imports={[evil]!r}" in str(refused.value) and "\n" not in str(refused.value)


def test_a_dollar_in_a_run_name_draws(tmp_path, data_dir, capsys):
    """matplotlib reads '$' as mathtext: a run's name in a title is drawn as text."""
    from support import run_script, train_tiny_run
    run = train_tiny_run(data_dir, tmp_path / "a $\\frac{x}$ run")
    status, stderr = run_script(capsys, "plot_run", run, "--num-points", "8", "--data-dir", data_dir)
    assert status == 0, stderr
    assert (run / "figures" / "learning_curves.png").is_file()
