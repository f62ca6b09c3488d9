"""A checkpoint is validated as data (pyro_vae/runs/checkpoint_schema.py), not only checksummed.

Each crafted checkpoint below is a valid one with one field changed and its SHA-256 recomputed,
as an author who shares a run directory can do (``craft``). Every field is checked on load and
refused with one line that names the file and the field; the real openers (evaluate.py,
svi_train.py --resume, plot_run.py, grad_variance.py) exit 2 without a traceback. Also here:
sizes the machine cannot hold are refused before anything is allocated; config.yaml and
metrics.jsonl agree with the checkpoint after a kill between the writes; commands printed to
continue a run paste; a damaged best.pt points to ``--checkpoint last``.
"""

import math
import os
import shlex
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from support import poison_losses, quiet, run_script

from pyro_vae.config import Config, make_config, merge_values
from pyro_vae.core import workload
from pyro_vae.core.commands import quote, resume_command
from pyro_vae.core.errors import CheckpointError, ConfigError, InterruptedRunError, TrainingDivergedError
from pyro_vae.core.workload import check_model_size, parameter_estimate
from pyro_vae.models import build_model
from pyro_vae.runs import RunDir, load_checkpoint, save_checkpoint
from pyro_vae.training.callbacks import Callback
from pyro_vae.training.trainer import Trainer, train
from pyro_vae.viz import compare_runs

REPO = Path(__file__).resolve().parents[2]
FILES = ("checkpoint.pt", "best.pt", "config.yaml", "metrics.jsonl")


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """A small run of two epochs with a validation split (so best.pt and ``best`` exist)."""
    out = tmp_path_factory.mktemp("schema") / "run"
    train({"data_dir": data_dir, "limit_train": 64, "limit_test": 16, "valid_size": 1000,
           "batch_size": 32, "hidden": [16], "latent_dim": 2, "epochs": 2, "plots": False,
           "device": "cpu", "out": str(out)}, log=quiet, progress=False)
    return out


def copy_run(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for name in FILES:
        (target / name).write_bytes((source / name).read_bytes())
    return target


def craft(path: Path, change) -> None:
    """An author's edit: load, ``change(state)``, save with the checksum recomputed."""
    state = load_checkpoint(path)
    change(state)
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version", "checksum")}, path)


def setter(*keys, value):
    """A change that sets ``state[k1][k2]... = value`` (a callable value gets the old one)."""
    def change(state):
        target = state
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value(target[keys[-1]]) if callable(value) else value
    return change


def remover(*keys):
    def change(state):
        target = state
        for k in keys[:-1]:
            target = target[k]
        del target[keys[-1]]
    return change


def first_weight(state) -> str:
    return next(iter(state["model"]))


# (change, the field named, a phrase of the message)
CASES = {
    "epoch-str": (setter("epoch", value="2"), "epoch", "must be a non-negative integer, found str '2'"),
    "epoch-tensor": (setter("epoch", value=torch.tensor(2)), "epoch", "found an int64 tensor of shape ()"),
    "epoch-bool": (setter("epoch", value=True), "epoch", "found bool True"),
    "epoch-missing": (remover("epoch"), "epoch", "is missing"),
    "step-negative": (setter("step", value=-1), "step", "found int -1"),
    "step-float": (setter("step", value=4.0), "step", "found float 4.0"),
    "best-nan": (setter("best", value={"epoch": 1, "valid_elbo": math.nan}), "best.valid_elbo", "finite number"),
    "best-future": (setter("best", value={"epoch": 7, "valid_elbo": -100.0}), "best.epoch", "a finished epoch"),
    "best-list": (setter("best", value=[1, -100.0]), "best", "found a list of 2 items"),
    "wall-inf": (setter("wall_seconds", value=math.inf), "wall_seconds", "finite number >= 0"),
    "wall-negative": (setter("wall_seconds", value=-5.0), "wall_seconds", "found float -5.0"),
    "metrics-dict": (setter("metrics", value={"epoch": 1}), "metrics", "must be a list"),
    "metrics-lists": (setter("metrics", value=[[1, 2], [3, 4]]), "metrics[0]", "found a list of 2 items"),
    "metrics-str-value": (setter("metrics", 0, "test_elbo", value="-90"), "metrics[0].test_elbo", "found str"),
    "metrics-missing-key": (remover("metrics", 1, "train_loss"), "metrics[1].train_loss", "is missing"),
    "metrics-order": (setter("metrics", 1, "epoch", value=5), "metrics[1].epoch", "2 (epochs in order)"),
    "metrics-length": (setter("metrics", value=lambda m: m[:1]), "metrics", "2 records (one per finished epoch)"),
    "metrics-steps-back": (setter("metrics", 1, "step", value=0), "metrics[1].step", "steps never go back"),
    "rng-short": (setter("rng", "torch", value=lambda t: t[:100]), "rng.torch", "torch refuses"),
    "rng-float": (setter("rng", "torch", value=lambda t: t.float()), "rng.torch", "found a float32 tensor"),
    "rng-mt-words": (setter("rng", "torch", value=lambda t: torch.full_like(t, 255)), "rng.torch", "Invalid mt19937 state"),
    "rng-cuda-str": (setter("rng", "cuda", value="none"), "rng.cuda", "must be None, a 1-dimensional uint8 tensor"),
    "rng-cuda-float": (setter("rng", "cuda", value=torch.zeros(16)), "rng.cuda", "found a float32 tensor"),
    "rng-cuda-list": (setter("rng", "cuda", value=[torch.zeros(16, dtype=torch.uint8), 3]), "rng.cuda[1]",
                      "found int 3"),
    "optimizer-list": (setter("optimizer", value=[]), "optimizer", "must be an optimizer state"),
    "optimizer-no-state": (remover("optimizer", "state"), "optimizer.state", "is missing"),
    "optimizer-lr-str": (setter("optimizer", "param_groups", 0, "lr", value="0.001"),
                         "optimizer.param_groups[0].lr", "found str"),
    "optimizer-betas": (setter("optimizer", "param_groups", 0, "betas", value=(0.9, 1.5)),
                        "optimizer.param_groups[0].betas[1]", "< 1"),
    "optimizer-maximize": (setter("optimizer", "param_groups", 0, "maximize", value=True),
                           "optimizer.param_groups[0].maximize", "must be False"),
    "optimizer-weight-decay": (setter("optimizer", "param_groups", 0, "weight_decay", value=0.1),
                               "optimizer.param_groups[0].weight_decay", "found float 0.1"),
    "optimizer-negative-moment": (setter("optimizer", "state", 0, "exp_avg_sq", value=lambda t: -t - 1),
                                  "optimizer.state[0].exp_avg_sq", "holding negative values"),
    "optimizer-nan-moment": (setter("optimizer", "state", 0, "exp_avg", value=lambda t: t * math.nan),
                             "optimizer.state[0].exp_avg", "NaN or infinite"),
    "optimizer-step-str": (setter("optimizer", "state", 0, "step", value="3"), "optimizer.state[0].step", "whole number"),
    "optimizer-step-negative": (setter("optimizer", "state", 0, "step", value=torch.tensor(-4.0)),
                                "optimizer.state[0].step", "whole number >= 0"),
    "optimizer-unknown-id": (lambda s: s["optimizer"]["state"].__setitem__(99, s["optimizer"]["state"][0]),
                             "optimizer.state[99]", "no group lists"),
    "optimizer-duplicate-id": (setter("optimizer", "param_groups", 0, "params", value=lambda p: [0, *p]),
                               "optimizer.param_groups[0].params[1]", "an id not listed before"),
    "model-nan": (lambda s: s["model"][first_weight(s)].fill_(math.nan), "model.encoder.body.0.weight", "NaN or infinite"),
    "model-str": (lambda s: s["model"].__setitem__(first_weight(s), "weights"), "model.encoder.body.0.weight", "found str"),
    "model-complex": (lambda s: s["model"].__setitem__(first_weight(s), torch.zeros(2, dtype=torch.complex64)),
                      "model.encoder.body.0.weight", "numeric tensor"),
    "pyro-params": (setter("pyro_params", value={"baseline": 3.0}), "pyro_params.baseline", "floating-point tensor"),
    "config-list": (setter("config", value=[1, 2]), "config", "mapping of config keys"),
    "config-hidden-str": (setter("config", "hidden", value="16"), "config.hidden", "found str '16'"),
    "config-hidden-float": (setter("config", "hidden", value=[16.5]), "config.hidden[0]", "an integer, found float 16.5"),
    "config-lr-inf": (setter("config", "lr", value=math.inf), "config.lr", "finite number"),
    "config-unknown-key": (setter("config", "evil", value=1), "config.evil", "is not a config key"),
    "unknown-field": (setter("surprise", value=1), "surprise", "is not a field of a checkpoint"),
}


def one_line(message: str) -> str:
    assert "\n" not in message and "Traceback" not in message, message
    return message


@pytest.mark.parametrize("case", list(CASES))
def test_every_field_is_checked_on_load(trained, tmp_path, case):
    change, field, phrase = CASES[case]
    run = copy_run(trained, tmp_path / "run")
    path = run / "checkpoint.pt"
    craft(path, change)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = one_line(str(error.value))
    assert message.startswith(f"{path}: field {field!r} "), message
    assert phrase in message, message
    assert "checksum" not in message  # the checksum matched: the schema refused it


def test_an_intact_checkpoint_passes_and_version_1_is_checked_too(trained, tmp_path):
    state = load_checkpoint(trained / "checkpoint.pt")
    assert state["epoch"] == 2 and state["best"]["epoch"] in (1, 2)
    old = {k: v for k, v in state.items() if k != "checksum"}
    old.update(version=1, epoch="2")  # format 1 carries no checksum: the schema is all there is
    torch.save(old, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=r"field 'epoch' must be a non-negative integer"):
        load_checkpoint(tmp_path)


# The real openers: one line, exit 2, no traceback ------------------------------------------------

OPENER_CASES = ["epoch-str", "rng-short", "optimizer-maximize", "metrics-lists", "config-hidden-str"]


@pytest.mark.parametrize("case", OPENER_CASES)
def test_openers_refuse_a_crafted_field_in_one_line(trained, data_dir, tmp_path, capsys, case):
    change, field, phrase = CASES[case]
    run = copy_run(trained, tmp_path / "run")
    for name in ("checkpoint.pt", "best.pt"):
        craft(run / name, change)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    for script, args in (("evaluate", [run, "--num-samples", "5", "--limit", "4"]),
                         ("svi_train", ["--resume", run, "--epochs", "3"]),
                         ("plot_run", [run]), ("grad_variance", [run, "--repeats", "2"])):
        status, stderr = run_script(capsys, script, *args, "--data-dir", data_dir)
        assert status == 2, (script, stderr)
        line = one_line(stderr.strip())
        assert f"field {field!r}" in line and phrase in line, (script, line)
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.name != ".lock"}
    assert after == before


def test_a_real_process_prints_one_line(trained, data_dir, tmp_path):
    run = copy_run(trained, tmp_path / "run")
    for name in ("checkpoint.pt", "best.pt"):
        craft(run / name, setter("rng", "torch", value=lambda t: t[:100]))
    for args in (["scripts/evaluate.py", str(run), "--num-samples", "5"],
                 ["scripts/svi_train.py", "--resume", str(run), "--epochs", "3"]):
        result = subprocess.run([sys.executable, *args, "--data-dir", data_dir], capture_output=True,
                                text=True, timeout=300, cwd=REPO)
        assert result.returncode == 2, result.stderr
        line = one_line(result.stderr.strip())
        assert "field 'rng.torch' must be a 1-dimensional uint8 tensor that torch.set_rng_state accepts" in line


def test_moments_of_the_wrong_shape_are_refused_against_the_model(trained, data_dir, tmp_path, capsys):
    """Shapes can only be checked against the built model: load_weights does, in one line."""
    run = copy_run(trained, tmp_path / "run")
    craft(run / "checkpoint.pt", setter("optimizer", "state", 0, "exp_avg", value=lambda t: t[:1]))
    status, stderr = run_script(capsys, "svi_train", "--resume", run, "--epochs", "3", "--data-dir", data_dir)
    assert status == 2
    line = one_line(stderr.strip())
    assert "field 'optimizer' does not fit the model" in line and "state[0].exp_avg has shape" in line


def test_weights_that_do_not_fit_the_model_are_one_line(trained, data_dir, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run")
    craft(run / "best.pt", lambda s: s["model"].pop(first_weight(s)))
    status, stderr = run_script(capsys, "evaluate", run, "--num-samples", "5", "--data-dir", data_dir)
    assert status == 2
    line = one_line(stderr.strip())
    assert "field 'model' does not fit the model its config describes" in line and "Missing key" in line


def test_a_config_value_out_of_range_names_the_checkpoint(trained, data_dir, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run")
    for name in ("checkpoint.pt", "best.pt"):
        craft(run / name, setter("config", "lr", value=-1.0))
    for script, args in (("evaluate", [run, "--num-samples", "5"]), ("svi_train", ["--resume", run, "--epochs", "3"])):
        status, stderr = run_script(capsys, script, *args, "--data-dir", data_dir)
        assert status == 2
        line = one_line(stderr.strip())
        assert str(run) in line and "field 'config' holds a configuration that pyro-vae refuses: " \
                                     "lr must be positive, got -1.0" in line, line


# Sizes the machine cannot hold ------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [
    {}, {"model": "hvae"}, {"arch": "conv", "hidden": [64]}, {"activation": "gated"},
    {"prior": "vamp", "prior_components": 50}, {"prior": "flow", "latent_dim": 6}, {"prior": "mog"},
    {"model": "hvae", "latent_dim": [20, 10, 5], "activation": "gated"},
    {"estimator": "score", "elbo": "tracegraph", "baseline": "nn"}, {"likelihood": "logistic"},
    {"likelihood": "logistic-mixture", "mixtures": 3, "arch": "conv", "hidden": [64]},
    {"likelihood": "gaussian", "likelihood_options": {"variance": "shared"}}, {"arch": "resnet", "hidden": [64]}])
def test_the_parameter_estimate_is_an_upper_bound(overrides):
    cfg = make_config({"hidden": [64, 32], **overrides})
    model = build_model(cfg, train_data=torch.rand(100, 784))
    actual = sum(t.numel() for t in model.state_dict().values())
    assert actual <= parameter_estimate(cfg) <= 1.3 * actual


def test_memory_rule_compares_with_the_machine(monkeypatch):
    cfg = make_config({})  # about a million parameters: 16 MB with gradients and Adam's moments
    monkeypatch.setattr(workload, "machine_memory", lambda: 10**8)
    check_model_size(cfg)
    monkeypatch.setattr(workload, "machine_memory", lambda: 10**7)
    with pytest.raises(ConfigError, match=r"about 1,0\d\d,\d{3} parameters .* needs at least 15.4 MiB "
                                          r"of memory at once, more than this machine's 9.54 MiB"):
        check_model_size(cfg)
    monkeypatch.undo()
    calls = []
    monkeypatch.setattr(torch.nn.Linear, "__init__", lambda *a, **k: calls.append(a))
    for sizes in ({"hidden": [10**12]}, {"latent_dim": [10**12]},
                  {"prior": "vamp", "prior_components": 10**12}, {"model": "hvae", "upper_hidden": [10**12]}):
        with pytest.raises(ConfigError, match="a model with about .* more than this machine's"):
            build_model(Config.from_flat(**merge_values(sizes, None)))  # not validated: build_model checks too
    assert calls == []  # refused before any layer was made


def test_huge_layers_are_refused_fresh_and_from_a_checkpoint(trained, data_dir, tmp_path, capsys):
    out = tmp_path / "fresh"
    status, stderr = run_script(capsys, "svi_train", "--hidden", str(10**12), "--out", out,
                                "--data-dir", data_dir, "--limit-train", "64", "--batch-size", "32", "--no-plots")
    assert status == 2
    line = one_line(stderr.strip())
    assert "a model with about 1.7e15 parameters (hidden [1000000000000], latent_dim [50])" in line
    assert "more than this machine's" in line
    assert not out.exists()
    run = copy_run(trained, tmp_path / "run")
    for name in ("checkpoint.pt", "best.pt"):
        craft(run / name, setter("config", "hidden", value=[10**12]))
    for script, args in (("evaluate", [run]), ("svi_train", ["--resume", run, "--epochs", "3"]),
                         ("plot_run", [run])):
        status, stderr = run_script(capsys, script, *args, "--data-dir", data_dir)
        assert status == 2, stderr
        line = one_line(stderr.strip())
        assert "field 'config' holds a configuration that pyro-vae refuses: a model with about " in line
        assert "parameters (hidden [1000000000000]" in line and "more than this machine's" in line


# config.yaml and metrics.jsonl agree with the checkpoint ----------------------------------------

KILL_AT_CONFIG = textwrap.dedent("""
    import os, signal, pyro_vae.runs.rundir as rundir
    def killed(self, config):
        os.kill(os.getpid(), signal.SIGKILL)  # after the checkpoint, before config.yaml
    rundir.RunDir.write_config = killed
""")


def test_a_kill_between_checkpoint_and_config_yaml_is_repaired(data_dir, tmp_path):
    out = tmp_path / "run"
    train({"data_dir": data_dir, "limit_train": 64, "limit_test": 16, "batch_size": 32, "hidden": [16],
           "latent_dim": 2, "epochs": 1, "plots": False, "device": "cpu", "out": str(out)}, log=quiet,
          progress=False)
    launch = (f"import runpy, sys\n{KILL_AT_CONFIG}\nsys.argv = ['svi_train.py'] + sys.argv[1:]\n"
              f"runpy.run_path({str(REPO / 'scripts' / 'svi_train.py')!r}, run_name='__main__')\n")
    killed = subprocess.run([sys.executable, "-c", launch, "--resume", str(out), "--epochs", "2",
                             "--lr", "0.0005", "--data-dir", data_dir], capture_output=True, text=True,
                            timeout=300, cwd=REPO)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = RunDir(out)
    state = load_checkpoint(run.checkpoint_path)
    assert state["epoch"] == 2 and state["config"]["lr"] == 0.0005
    assert yaml.safe_load(run.config_path.read_text())["lr"] == 0.001  # the kill left it behind
    assert len(run.metrics_path.read_text().splitlines()) == 1
    # Readers take the checkpoint's config, not the stale copy.
    assert run.read_config()["lr"] == 0.0005
    compare_runs([out], tmp_path / "comparison")
    # Opening the run for writing repairs both files from the checkpoint, even if it then stops
    # before its first epoch, and with the checkpoint's lr, not the new flag's (no epoch used it).
    class Stop(Callback):  # Ctrl-C once the run is open, before its first epoch
        def on_fit_start(self, trainer):
            raise KeyboardInterrupt

    trainer = Trainer.resume(str(out), {"epochs": 3, "lr": 0.0001}, log=quiet, progress=False, callbacks=[Stop()])
    with pytest.raises(InterruptedRunError):
        trainer.fit()
    assert yaml.safe_load(run.config_path.read_text()) == state["config"]
    assert run.read_metrics() == state["metrics"]
    # Files that agree are left alone (not rewritten) when the run is opened again.
    inode = os.stat(run.config_path).st_ino, os.stat(run.metrics_path).st_ino
    trainer = Trainer.resume(str(out), {"epochs": 3}, log=quiet, progress=False, callbacks=[Stop()])
    with pytest.raises(InterruptedRunError):
        trainer.fit()
    assert (os.stat(run.config_path).st_ino, os.stat(run.metrics_path).st_ino) == inode


# Commands that continue a run paste -------------------------------------------------------------

def test_the_printed_command_names_a_directory_with_a_space_and_unicode(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "my runs" / "vae é 'quoted' $HOME"
    train({"data_dir": data_dir, "limit_train": 64, "limit_test": 16, "batch_size": 32, "hidden": [16],
           "latent_dim": 2, "epochs": 1, "plots": False, "device": "cpu", "out": str(out)}, log=quiet,
          progress=False)
    trainer = Trainer.resume(str(out), {"epochs": 2}, log=quiet, progress=False)
    poison_losses(monkeypatch, trainer, float("nan"))
    with pytest.raises(TrainingDivergedError) as error:
        trainer.fit()
    command = one_line(str(error.value)).split("continue with ", 1)[1]
    assert shlex.split(command) == ["python", "scripts/svi_train.py", "--resume", str(out), "--lr", "0.0001"]


@pytest.mark.parametrize("name", ["a b", "é ü", "it's", "$HOME `x`", "new\nline", "tab\there", "x\x85y"])
def test_quoted_arguments_reach_the_shell_unchanged(name):
    """What bash makes of the printed word is the word itself, and the command stays one line."""
    printed = subprocess.run(["bash", "-c", f"printf %s {quote(name)}"], capture_output=True,
                             env={**os.environ, "LC_ALL": "C.UTF-8"}).stdout
    assert printed.decode() == name
    assert "\n" not in resume_command(name, "--lr", "0.0001")


# A damaged best.pt ------------------------------------------------------------------------------

def test_a_damaged_best_pt_says_that_checkpoint_last_works(trained, data_dir, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run")
    data = bytearray((run / "best.pt").read_bytes())
    data[len(data) // 2:len(data) // 2 + 16] = b"\xff" * 16
    (run / "best.pt").write_bytes(bytes(data))
    status, stderr = run_script(capsys, "evaluate", run, "--num-samples", "5", "--limit", "4",
                                "--data-dir", data_dir)
    assert status == 2
    line = one_line(stderr.strip())
    assert f"checkpoint {run}/best.pt is corrupt" in line
    assert line.endswith("checkpoint.pt beside it (epoch 2) is intact: --checkpoint last uses it")
    status, stderr = run_script(capsys, "evaluate", run, "--num-samples", "5", "--limit", "4",
                                "--checkpoint", "last", "--data-dir", data_dir)
    assert status == 0, stderr
    (run / "checkpoint.pt").write_bytes(b"damaged too")  # then nothing is suggested
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(run / "best.pt")
    assert "--checkpoint last" not in str(error.value)


# CUDA generator states: the run's own GPU's, read on any machine ----------------------------------

CUDA_STATE = torch.arange(16, dtype=torch.uint8)  # what torch.cuda.get_rng_state returns: 16 bytes


@pytest.fixture
def fake_gpu(monkeypatch):
    """torch.cuda's generator functions on a machine without a GPU: the states set, by device."""
    restored = []
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": CUDA_STATE.clone())
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("every GPU's state saved"))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": restored.append((state, device)))
    return restored


def test_a_cuda_run_saves_its_own_gpu_generator_only(fake_gpu):
    from pyro_vae.training.rng import rng_state

    assert torch.equal(rng_state(torch.device("cuda"))["cuda"], CUDA_STATE)
    assert rng_state(torch.device("cpu"))["cuda"] is None


@pytest.mark.parametrize("saved, device, restored, note", [
    (CUDA_STATE, "cuda", CUDA_STATE, None),  # this pyro-vae: the run's GPU's state
    ([CUDA_STATE + 1, CUDA_STATE], "cuda:1", CUDA_STATE, None),  # earlier: one per GPU, take ours
    ([CUDA_STATE], "cuda", CUDA_STATE, None),
    ([CUDA_STATE], "cuda:1", None, "no CUDA generator state for cuda:1 (it has 1)"),  # fewer GPUs
    (None, "cuda", None, "written on the cpu"),
    ([], "cuda", None, "written on the cpu"),
    (CUDA_STATE, "cpu", None, "not restored on the cpu"),  # a GPU run continued on a CPU
    ([CUDA_STATE, CUDA_STATE], "cpu", None, "not restored on the cpu"),
    (None, "cpu", None, None),
    ([], "cpu", None, None),
])
def test_a_cuda_generator_state_is_restored_where_it_fits(fake_gpu, saved, device, restored, note):
    from pyro_vae.training.rng import set_rng_state

    said = set_rng_state({"torch": torch.get_rng_state(), "cuda": saved}, torch.device(device), "x.pt")
    assert (said is None) if note is None else (note in said and "\n" not in said)
    if restored is None:
        assert fake_gpu == []
    else:
        assert len(fake_gpu) == 1 and torch.equal(fake_gpu[0][0], restored)
        assert fake_gpu[0][1] == torch.device(device)


def test_a_state_torch_refuses_names_the_field(fake_gpu, monkeypatch):
    from pyro_vae.training.rng import set_rng_state

    def refuse(state, device="cuda"):
        raise RuntimeError("RNG state is wrong size")
    monkeypatch.setattr(torch.cuda, "set_rng_state", refuse)
    with pytest.raises(CheckpointError, match=r"x.pt: field 'rng.cuda\[1\]' is not a CUDA generator state"):
        set_rng_state({"torch": torch.get_rng_state(), "cuda": [CUDA_STATE] * 2}, torch.device("cuda:1"), "x.pt")


@pytest.mark.parametrize("saved", [CUDA_STATE, [CUDA_STATE, CUDA_STATE]], ids=["this", "earlier"])
def test_a_checkpoint_written_on_a_gpu_resumes_on_the_cpu(trained, tmp_path, saved):
    """What a GPU run's checkpoint holds in its generator field (only the weights' device
    differs, and they are saved on the CPU): it resumes on the CPU with one note."""
    run = copy_run(trained, tmp_path / "run")
    craft(run / "checkpoint.pt", setter("rng", "cuda", value=saved))
    lines = []
    trainer = Trainer.resume(str(run), {"epochs": 3, "device": "cpu"}, log=lines.append, progress=False)
    trainer.fit()
    assert trainer.epoch == 3 and trainer.device == torch.device("cpu")
    notes = [line for line in lines if "note:" in line]
    assert len(notes) == 1 and "CUDA generator state is not restored on the cpu" in notes[0], lines
    assert load_checkpoint(run / "checkpoint.pt")["rng"]["cuda"] is None  # a CPU run's, from now on


def test_every_torch_load_maps_to_the_cpu_and_reads_plain_data_only():
    """A file or payload written on a GPU opens on a machine without one (and on another GPU index):
    every ``torch.load`` of the package names ``map_location`` (the CPU; the weights are then copied
    onto the run's device by ``load_state_dict``, which puts Adam's moments beside their
    parameters) and ``weights_only=True``."""
    import ast

    calls = []
    for path in sorted((REPO / "pyro_vae").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
                calls.append((path.name, node.lineno, keywords.get("map_location"), keywords.get("weights_only")))
    assert {name for name, *_ in calls} >= {"checkpoint.py", "collectives.py"}  # core/distributed/
    for name, line, map_location, weights_only in calls:
        assert map_location == "'cpu'" and weights_only == "True", (name, line)


def test_adam_state_saved_on_one_device_lands_beside_the_parameters():
    """What a resume relies on when a run moves between devices (here CPU float64 parameters stand
    in for another device: load_state_dict casts the moments to each parameter's dtype and device)."""
    from pyro_vae.training.graphed import portable_state

    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=1e-3)
    p.grad = torch.ones(3)
    opt.step()
    q = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    moved = torch.optim.Adam([q], lr=1.0)
    moved.load_state_dict(portable_state(opt))
    state = moved.state[q]
    assert state["exp_avg"].dtype == torch.float64 and state["exp_avg"].device == q.device
    assert state["step"].device.type == "cpu"  # not capturable: the step count stays on the CPU
