"""Every error a user can cause is one line that says what to do: never a traceback.

The scripts' ``main(argv)`` runs in this process (as ``python scripts/X.py`` would, minus the
interpreter start), so the whole table takes seconds. Exit status 2 is an error the user can
fix; argparse's own errors (a usage line, then the message) exit 2 too, on one line as well.
"""

import gzip
import math
import shutil
from pathlib import Path

import pytest
import torch
from support import assert_one_line_error, poison_losses, quiet, run_script, train_tiny_run

from pyro_vae.config import make_config
from pyro_vae.core.errors import ConfigError, DatasetCorruptError, TrainingDivergedError
from pyro_vae.data import load_dataset
from pyro_vae.runs.rundir import RunDir
from pyro_vae.training.trainer import Trainer, train


def cli(capsys, name: str, *args) -> tuple[int, str]:
    return run_script(capsys, name, *args)


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory) -> Path:
    return train_tiny_run(data_dir, tmp_path_factory.mktemp("user-errors") / "run")


def config_file(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("args, message", [
    (["--seed", "-1"], "seed must be in [0, 2^32 - 1]"),
    (["--seed", str(2**32)], "seed must be in [0, 2^32 - 1]"),
    (["--lr", "inf"], "lr must be a finite number, got inf"),
    (["--adam-eps", "inf"], "adam_eps must be a finite number, got inf"),
    (["--prior", "student-t", "--prior-df", "inf"], "prior_df must be a finite number"),
    (["--baseline-beta", "nan"], "baseline_beta must be a finite number"),
    (["--elbo", "renyi", "--alpha", "nan", "--num-particles", "2"], "alpha must be a finite number"),
    (["--elbo", "renyi", "--alpha", "2", "--num-particles", "2"], "--alpha 2.0 > 1 gives a bound looser"),
])
def test_bad_numbers_are_refused_before_anything_loads(capsys, tmp_path, args, message):
    status, stderr = cli(capsys, "svi_train", *args, "--data-dir", tmp_path / "no-data")
    assert_one_line_error(status, stderr, message)


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe\x00lr: 1\n", "is not UTF-8 text (byte 0); save it as UTF-8"),
    (b"lr: 0.1\nepochs: 3\nlr: 0.2\n", "key 'lr' appears twice (lines 1 and 3)"),
    (b"hidden: [1, 2\n", "is not valid YAML at line 2"),
    (b"- lr\n", "must hold a mapping of keys to values"),
])
def test_bad_config_files(capsys, tmp_path, content, message):
    status, stderr = cli(capsys, "svi_train", "--config", config_file(tmp_path, content))
    assert_one_line_error(status, stderr, message)


def test_unreadable_config_file(capsys, tmp_path):
    unreadable = tmp_path / "config.yaml"
    unreadable.mkdir()  # root can read any file; a directory cannot be read as one
    status, stderr = cli(capsys, "svi_train", "--config", unreadable)
    assert_one_line_error(status, stderr, f"cannot read config file {unreadable}: Is a directory")


def test_batch_larger_than_the_data_is_refused(capsys, data_dir, tmp_path):
    status, stderr = cli(capsys, "svi_train", "--limit-train", "100", "--batch-size", "128",
                         "--data-dir", data_dir, "--out", tmp_path / "run")
    assert_one_line_error(status, stderr, "batch_size 128 is larger than the 100 training images; use "
                                      "--batch-size 100 or less")
    assert not (tmp_path / "run").exists()


def test_out_never_overwrites_a_users_file(capsys, data_dir, tmp_path):
    mine = tmp_path / "experiment"
    mine.mkdir()
    (mine / "config.yaml").write_text("my own notes\n")
    status, stderr = cli(capsys, "svi_train", "--limit-train", "64", "--data-dir", data_dir, "--out", mine)
    assert_one_line_error(status, stderr, f"--out {mine} is not empty (it holds config.yaml)")
    assert (mine / "config.yaml").read_text() == "my own notes\n"


@pytest.mark.parametrize("args, message", [
    (["--num-points", "0"], "--num-points must be at least 1"),
    (["--num-points", "-5"], "--num-points must be at least 1"),
])
def test_plot_run_arguments(capsys, trained, args, message):
    assert_one_line_error(*cli(capsys, "plot_run", trained, *args), message)


@pytest.mark.parametrize("args, message", [
    (["--max-memory", "inf"], "'inf' is not a size"),
    (["--max-memory", "nan"], "'nan' is not a size"),
    (["--seed", "-1"], "--seed must be in [0, 2^32 - 1]"),
    (["--seed", str(2**32)], "--seed must be in [0, 2^32 - 1]"),
])
def test_evaluate_arguments(capsys, trained, args, message):
    assert_one_line_error(*cli(capsys, "evaluate", trained, *args), message)


def test_grad_variance_warmup_must_not_be_negative(capsys):
    assert_one_line_error(*cli(capsys, "grad_variance", "--init", "--baseline-warmup", "-3"),
                      "--baseline-warmup must be at least 0")


@pytest.mark.parametrize("content, message", [
    (None, "sweep file {path} does not exist"),
    (b"name: x\nruns: [a, b\n", "sweep file {path} is not valid YAML"),
    (b"name: x\nruns: [a, b]\n", "'runs' must be a non-empty mapping from run names"),
    (b"name: x\nbase: 3\nruns: {a: {}}\n", "'base' must be a mapping"),
    (b"runs: {a: [1]}\n", "run 'a' must map config keys to values"),
    (b"runs: {../escape: {}}\n", "run name '../escape' must be a plain folder name"),
    (b"runs: {a: {}}\nruns: {b: {}}\n", "key 'runs' appears twice"),
    (b"runs: {a: {latent_dimm: 2}}\n", "unknown config key 'latent_dimm'"),
])
def test_bad_sweep_files(capsys, tmp_path, content, message):
    path = tmp_path / "sweep.yaml"
    if content is not None:
        path.write_bytes(content)
    assert_one_line_error(*cli(capsys, "compare", "--sweep", path), message.format(path=path))


@pytest.mark.parametrize("damage, message", [
    ('{"epoch": 1, "step": 2, "train_loss": 1.0, "test_elbo": -1.0, "wall_seconds": 1.0}\n{not json\n',
     "metrics.jsonl, line 2: not JSON"),
    ('{"epoch": 1}\n', "metrics.jsonl, line 1: step, train_loss, test_elbo, wall_seconds missing or not a number"),
    ('{"epoch": 1, "step": 2, "train_loss": "high", "test_elbo": -1, "wall_seconds": 1}\n',
     "train_loss missing or not a number"),
])
def test_compare_on_a_malformed_run(capsys, trained, tmp_path, damage, message):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "metrics.jsonl").write_text(damage)
    assert_one_line_error(*cli(capsys, "compare", run, "--out", tmp_path / "cmp"), message)


def test_compare_on_a_malformed_evaluation(capsys, trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "eval.json").write_text("{")
    assert_one_line_error(*cli(capsys, "compare", run, "--out", tmp_path / "cmp"),
                      "eval.json is not readable JSON")


# Damaged data files -------------------------------------------------------------------------------

@pytest.fixture
def mnist_copy(data_dir, tmp_path) -> Path:
    """MNIST archives in a fresh data directory, extracted once (as torchvision leaves them)."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for archive in (Path(data_dir) / "MNIST" / "raw").glob("*.gz"):
        shutil.copy(archive, raw)
        (raw / archive.stem).write_bytes(gzip.decompress(archive.read_bytes()))
    return tmp_path


@pytest.mark.parametrize("damage, problem", [
    (lambda p: p.write_bytes(b"garbage header" + p.read_bytes()[14:]), "its header is not that of an IDX file"),
    (lambda p: p.write_bytes(p.read_bytes()[:-100]), "it has 7839916 bytes, expected 7840016"),
    (lambda p: (p.unlink(), p.mkdir()), "it is a directory"),
])
def test_damaged_extracted_mnist_file_is_named(mnist_copy, damage, problem):
    """Without its archive (with one, tests/data/test_offline_data.py: it is extracted again)."""
    extracted = mnist_copy / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    (mnist_copy / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").unlink()
    damage(extracted)
    with pytest.raises(DatasetCorruptError) as error:
        load_dataset("mnist", str(mnist_copy))
    message = str(error.value)
    assert message.startswith(f"{extracted} is damaged ({problem}")
    assert ("Delete it and download it again, or copy a good one (or its archive "
            "t10k-images-idx3-ubyte.gz)") in message
    assert "could not be downloaded" not in message  # not reported as missing


def test_a_damaged_file_beside_its_archive_is_extracted_again(mnist_copy, capsys):
    raw = mnist_copy / "MNIST" / "raw"
    extracted = raw / "train-labels-idx1-ubyte"
    extracted.write_bytes(b"\x00" * 10)
    status, stderr = cli(capsys, "svi_train", "--data-dir", mnist_copy, "--epochs", "1",
                         "--limit-train", "64", "--limit-test", "16", "--batch-size", "32",
                         "--hidden", "16", "--latent-dim", "2", "--no-plots", "--out", mnist_copy / "run")
    assert status == 0 and "Traceback" not in stderr, stderr
    assert extracted.read_bytes() == gzip.decompress((raw / "train-labels-idx1-ubyte.gz").read_bytes())


def test_damaged_file_without_a_good_archive(mnist_copy):
    raw = mnist_copy / "MNIST" / "raw"
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01")
    with pytest.raises(DatasetCorruptError, match="is damaged .*Delete it and download it again"):
        load_dataset("mnist", str(mnist_copy))


# Training: config.yaml agrees with the checkpoint; divergence advice names the cause ------------

def test_no_op_and_failed_resumes_leave_config_yaml_alone(small_run, monkeypatch):
    train(small_run, log=quiet, progress=False)
    run = RunDir(small_run["out"])
    saved = run.config_path.read_bytes()
    train({"resume": small_run["out"], "epochs": 1, "lr": 0.5}, log=quiet, progress=False)  # no-op
    assert run.config_path.read_bytes() == saved
    trainer = Trainer.resume(small_run["out"], {"epochs": 3, "lr": 1e-4}, log=quiet, progress=False)
    poison_losses(monkeypatch, trainer, float("nan"))
    with pytest.raises(TrainingDivergedError):
        trainer.fit()
    assert run.config_path.read_bytes() == saved
    assert make_config(run.read_config()) == make_config(
        {k: v for k, v in torch.load(run.checkpoint_path, weights_only=True)["config"].items()})


def test_divergence_before_the_first_epoch_leaves_no_directory(small_run, monkeypatch):
    trainer = Trainer(make_config(small_run), log=quiet, progress=False)
    poison_losses(monkeypatch, trainer, float("inf"))
    with pytest.raises(TrainingDivergedError, match="No epoch had finished, so no run directory was kept"):
        trainer.fit()
    assert not Path(small_run["out"]).exists()


def test_divergence_advice_names_a_prior_that_returns_nan(small_run):
    import pyro.distributions as dist

    trainer = Trainer(make_config({**small_run, "prior": "student-t"}), log=quiet, progress=False)
    df = trainer.model.prior.df
    trainer.model.prior.forward = lambda: dist.StudentT(df, torch.full_like(df, math.nan), torch.ones_like(df)).to_event(1)
    with pytest.raises(TrainingDivergedError) as error:
        trainer.fit()
    message = str(error.value)
    assert "Likely cause: the prior 'student-t' gave a NaN or infinite log-density" in message
    assert "Check the prior's settings" in message and "learning rate" not in message


def test_divergence_advice_names_the_decoder_and_the_learning_rate(small_run):
    trainer = Trainer(make_config({**small_run, "lr": 0.5}), log=quiet, progress=False)
    with torch.no_grad():
        for p in trainer.model.decoder.parameters():
            p.mul_(1e30)  # logits overflow: log p(x | z) is -inf
    with pytest.raises(TrainingDivergedError) as error:
        trainer.fit()
    message = str(error.value)
    assert "Likely cause: the model's log-density of site 'x' is not finite" in message
    assert "Lower the learning rate (now 0.5), e.g. to 0.05" in message


def test_config_errors_name_the_key_in_the_python_api():
    with pytest.raises(ConfigError, match="lr must be a finite number"):
        make_config({"lr": math.inf})
