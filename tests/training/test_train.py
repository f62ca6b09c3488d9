import math

import pytest
import torch
from support import poison_losses, quiet

from pyro_vae.config import Config
from pyro_vae.core.errors import CheckpointError, ConfigError, PyroVAEError, TrainingDivergedError
from pyro_vae.infer.importance import elbo_per_datapoint
from pyro_vae.runs.checkpoint import load_checkpoint, save_checkpoint
from pyro_vae.runs.rundir import RunDir
from pyro_vae.training.trainer import Trainer, train

TIMES = ("train_seconds", "epoch_seconds", "wall_seconds")


def without_times(history):
    return [{k: v for k, v in r.items() if k not in TIMES} for r in history]


def run(overrides, **extra):
    return train({**overrides, **extra}, log=quiet, progress=False)


def test_a_few_hundred_steps_improve_the_test_elbo(data_dir, tmp_path):
    cfg = Config.from_flat(data_dir=data_dir, limit_train=1000, limit_test=500, hidden=[200], latent_dim=20,
                 batch_size=50, epochs=15, out=str(tmp_path / "run"))
    trainer = Trainer(cfg, log=quiet, progress=False)
    before = trainer.evaluate()
    trainer.fit()
    assert trainer.global_step == 300
    with trainer.param_scope():
        per_image = elbo_per_datapoint(trainer.model.model, trainer.model.guide, trainer.data.test)
    stderr = per_image.std().item() / math.sqrt(len(per_image))
    after = trainer.history[-1]["test_elbo"]
    assert after - before > 10 * stderr, (before, after, stderr)  # measured: ~55 nats, stderr ~2


def test_run_directory_contents(small_run):
    trainer = run(small_run)
    rundir = RunDir(small_run["out"])
    records = rundir.read_metrics()
    assert [r["epoch"] for r in records] == [1, 2]
    assert set(records[0]) == {"epoch", "step", "train_loss", "test_elbo", *TIMES}
    assert records[1]["step"] == 2 * (256 // 32)
    assert all(r["train_loss"] > 0 and r["test_elbo"] < 0 for r in records)
    state = load_checkpoint(rundir.checkpoint_path)
    assert state["epoch"] == 2 and state["config"] == trainer.cfg.to_flat()
    assert state["metrics"] == records
    assert "latent_dim:\n- 8\n" in rundir.config_path.read_text()


def test_epoch_seconds_count_the_checkpoint_write(small_run, monkeypatch):
    """An epoch's seconds run from the previous record, so a slow checkpoint write (a network
    disk, fsync under load) shows in the training time instead of disappearing from it."""
    import time

    import pyro_vae.training.callbacks.checkpoint as checkpointing
    pause = 0.3

    def slow_save(state, path):
        time.sleep(pause)
        save_checkpoint(state, path)

    monkeypatch.setattr(checkpointing, "save_checkpoint", slow_save)
    records = run({**small_run, "epochs": 3}).history
    for previous, record in zip(records, records[1:]):
        assert record["epoch_seconds"] >= record["train_seconds"] + pause
    assert records[-1]["wall_seconds"] == pytest.approx(sum(r["epoch_seconds"] for r in records))


def test_same_seed_same_metrics(small_run, tmp_path):
    a = run(small_run).history
    b = run(small_run, out=str(tmp_path / "again")).history
    assert without_times(a) == without_times(b)
    c = run(small_run, out=str(tmp_path / "other-seed"), seed=1).history
    assert without_times(a) != without_times(c)


@pytest.mark.parametrize("options", [
    {"elbo": "trace"}, {"elbo": "trace", "compile": False}, {"elbo": "meanfield"},
    {"estimator": "score", "baseline": "avg"},  # the average lives in Pyro's param store
    {"estimator": "score", "baseline": "nn"}, {"elbo": "dreg", "num_particles": 3},
    {"prior": "mog", "prior_components": 4}, {"prior": "vamp", "prior_components": 8},
    {"prior": "flow", "flow_depth": 2, "flow_hidden": 16, "elbo": "meanfield"},
    {"model": "hvae", "latent_dim": [6, 3], "elbo": "dreg", "num_particles": 3},
    {"model": "hvae", "latent_dim": [6, 3], "elbo": "dreg", "num_particles": 3, "compile": False},
    {"model": "hvae", "latent_dim": [6, 3], "estimator": "score", "baseline": "nn"},
    {"model": "sbn", "sbn_mapping": "nonlinear", "latent_dim": [6], "estimator": "relax"},  # the control variate is the model's
    {"model": "sbn", "sbn_mapping": "nonlinear", "latent_dim": [6], "estimator": "score", "baseline": "nn-only",
     "baseline_lr_scale": 10.0},  # two Adam groups, compiled
    {"model": "sbn", "sbn_mapping": "nonlinear", "latent_dim": [6], "relax": "concrete-mass", "relax_shift": True,
     "temperature": 0.5},
], ids=lambda o: "+".join(f"{v}" for v in o.values()))
def test_resume_equals_an_uninterrupted_run(small_run, tmp_path, options):
    small_run.update(options, epochs=3)
    whole = run(small_run)
    part = str(tmp_path / "part")
    run(small_run, out=part, epochs=1)
    resumed = run({"resume": part, "epochs": 3})
    # compiled unless turned off, or refused (decaying averages; the spline flow's boolean masks)
    compiled = (options.get("compile", True) and options.get("baseline") not in ("avg", "nn")
                and "flow" not in options.values())
    assert (whole.step.lowered is not None) == (resumed.step.lowered is not None) == compiled
    if compiled:  # traced once, not once per step
        assert len(whole.step.lowered.graphs) == len(resumed.step.lowered.graphs) == 1
    assert without_times(resumed.history) == without_times(whole.history)
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert without_times(RunDir(part).read_metrics()) == without_times(whole.history)


def test_the_baseline_network_trains_at_its_own_learning_rate():
    """``baseline_lr_scale`` puts the NVIL baseline networks, and only them, in a second Adam group
    at that multiple of the learning rate, and a schedule's new rate keeps the ratio; at 1 (the
    default) the optimizer is one group, as before the setting existed."""
    from pyro_vae.config import make_config
    from pyro_vae.models import build_model
    from pyro_vae.models.estimators import BaselineNet
    from pyro_vae.training.graphed import set_learning_rate
    from pyro_vae.training.step import make_optimizer

    cfg = make_config({"model": "sbn", "latent_dim": [6, 4], "estimator": "score", "baseline": "nn",
                       "baseline_lr_scale": 10.0, "lr": 2e-3})
    model = build_model(cfg)
    optimizer = make_optimizer(cfg, model)
    rest, baselines = optimizer.param_groups
    networks = [m for m in model.modules() if isinstance(m, BaselineNet)]
    assert len(networks) == 2  # one per layer
    assert {id(p) for p in baselines["params"]} == {id(p) for m in networks for p in m.parameters()}
    assert len(rest["params"]) + len(baselines["params"]) == len(list(model.parameters()))
    assert (rest["lr"], baselines["lr"]) == (2e-3, pytest.approx(2e-2))
    set_learning_rate(optimizer, 1e-4)
    assert (rest["lr"], baselines["lr"]) == (1e-4, pytest.approx(1e-3))
    plain = make_config({**cfg.to_flat(), "baseline_lr_scale": 1.0})
    assert len(make_optimizer(plain, build_model(plain)).param_groups) == 1
    with pytest.raises(ConfigError, match="baseline_lr_scale applies only with baseline='nn' or baseline='nn-only'"):
        make_config({"estimator": "score", "baseline": "avg", "baseline_lr_scale": 10.0})


ESTIMATORS = [
    {"elbo": "trace"}, {"elbo": "tracegraph"}, {"elbo": "meanfield", "num_particles": 3},
    {"elbo": "iwae", "num_particles": 3}, {"elbo": "renyi", "alpha": 0.5, "num_particles": 3},
    {"elbo": "dreg", "num_particles": 3}, {"elbo": "stl", "num_particles": 2},
    {"estimator": "score", "elbo": "trace"}, {"estimator": "score"},
    {"estimator": "score", "baseline": "avg"}, {"estimator": "score", "baseline": "nn"},
    {"estimator": "score", "compile": False}, {"elbo": "dreg", "num_particles": 3, "compile": False},
]


@pytest.mark.parametrize("options", ESTIMATORS, ids=lambda o: "+".join(f"{v}" for v in o.values()))
def test_every_estimator_trains(small_run, options):
    history = run(small_run, epochs=3, **options).history
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["test_elbo"]) for r in history)
    if options.get("estimator") != "score":  # 24 steps: enough for the low-variance estimators
        assert history[-1]["test_elbo"] > history[0]["test_elbo"]


def test_conv_vae_trains(small_run):
    trainer = run(small_run, arch="conv", hidden=[32], epochs=3)
    first, last = trainer.history[0]["test_elbo"], trainer.history[-1]["test_elbo"]
    assert math.isfinite(first) and last > first


def test_resume_refuses_a_different_experiment(small_run):
    run(small_run, epochs=1)
    with pytest.raises(ConfigError, match="cannot change latent_dim"):
        run({"resume": small_run["out"], "latent_dim": 3})


def test_a_finished_run_is_not_overwritten(small_run, monkeypatch):
    run(small_run, epochs=1)
    monkeypatch.setattr("pyro_vae.training.trainer.load_model_data", None)  # refused before loading any data
    with pytest.raises(ConfigError, match="already holds a run.*--resume"):
        run(small_run)


def test_out_that_is_a_file_is_refused(small_run, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file"):
        run(small_run, out=str(tmp_path / "file"))


def test_nan_loss_stops_training_and_keeps_the_last_checkpoint(small_run, monkeypatch):
    run(small_run, epochs=1)
    rundir = RunDir(small_run["out"])
    saved = rundir.checkpoint_path.read_bytes()
    metrics = rundir.metrics_path.read_text()
    trainer = Trainer.resume(small_run["out"], {"epochs": 3}, log=quiet, progress=False)
    poison_losses(monkeypatch, trainer, float("nan"))
    with pytest.raises(TrainingDivergedError, match=r"epoch 2, batch 0: the training loss became nan.*"
                                                    r"checkpoint of epoch 1 .* is intact.*--lr 0.0001"):
        trainer.fit()
    assert rundir.checkpoint_path.read_bytes() == saved
    assert rundir.metrics_path.read_text() == metrics


def test_a_gpu_out_of_memory_says_what_to_do_in_one_line(small_run, monkeypatch):
    """torch.cuda.OutOfMemoryError in a step is the batch's size, not a bug to report."""
    from pyro_vae.infer.lowering import LoweredStep

    run(small_run, epochs=1)
    trainer = Trainer.resume(small_run["out"], {"epochs": 2}, log=quiet, progress=False)

    def out_of_memory(*_args, **_kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
                                          "total capacity of 139.8 GiB of which 1.2 GiB is free.\nmore")
    monkeypatch.setattr(LoweredStep, "__call__", out_of_memory)
    trainer.step.elbo.loss_and_grads = out_of_memory
    with pytest.raises(PyroVAEError) as error:
        trainer.fit()
    message = str(error.value)
    assert "\n" not in message and "bug" not in message, message
    assert message.startswith("the GPU ran out of memory during epoch 2 (CUDA out of memory. Tried to "
                              "allocate 2.00 GiB): lower batch_size (now 32)"), message
    assert "checkpoint of epoch 1" in message


def test_nan_parameters_are_caught_before_saving(small_run):
    """An update that makes a parameter NaN on the last step of an epoch leaves a finite loss."""
    trainer = Trainer(Config.from_flat(**small_run), log=quiet, progress=False)
    optimizer_step, calls = trainer.optimizer.step, []

    def poisoned_step():
        optimizer_step()
        calls.append(1)
        if len(calls) == 256 // 32:
            with torch.no_grad():
                trainer.model.encoder.head.weight[0, 0] = float("nan")

    trainer.optimizer.step = poisoned_step
    with pytest.raises(TrainingDivergedError, match="epoch 1: a parameter became NaN.*No epoch had finished"):
        trainer.fit()
    assert not RunDir(small_run["out"]).checkpoint_path.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_checkpoint_is_reported(small_run, damage):
    run(small_run, epochs=1)
    path = RunDir(small_run["out"]).checkpoint_path
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint" * 100,
                      "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        run({"resume": small_run["out"], "epochs": 2})


def test_missing_checkpoint_is_reported(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        run({"resume": str(tmp_path)})


def test_checkpoint_of_another_kind_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="not a pyro-vae checkpoint"):
        load_checkpoint(tmp_path)
