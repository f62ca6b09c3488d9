"""The Trainer made of parts: callbacks see the fit's hooks in order and the run's invariants
from outside (best.pt before checkpoint.pt, nothing on disk before the first checkpoint, the
lock held for the whole fit); a run in memory writes nothing; given parts (model, prior,
objective, data) are used; the seed is the run's own, not the caller's."""

import fcntl
import math
import os
import random

import numpy as np
import pytest
import torch
from pyro.infer import RenyiELBO, Trace_ELBO
from support import quiet

from pyro_vae.config import Config
from pyro_vae.core.errors import ConfigError, PyroVAEError
from pyro_vae.data import load_dataset
from pyro_vae.models import build_model
from pyro_vae.models.priors import build_prior
from pyro_vae.runs.checkpoint import load_checkpoint
from pyro_vae.runs.rundir import RunDir
from pyro_vae.training.callbacks import Callback
from pyro_vae.training.state import TrainingState
from pyro_vae.training.trainer import Trainer, train

TIMES = ("train_seconds", "epoch_seconds", "wall_seconds")


def without_times(history):
    return [{k: v for k, v in r.items() if k not in TIMES} for r in history]


class Recorder(Callback):
    """Every hook it sees, by name (and epoch)."""

    def __init__(self):
        self.seen = []

    def on_fit_start(self, trainer):
        self.seen.append("fit_start")

    def on_train_start(self, trainer):
        self.seen.append("train_start")

    def on_epoch_start(self, trainer, epoch):
        self.seen.append(f"epoch_start {epoch}")

    def on_steps(self, trainer, done, total, loss):
        assert 1 <= done <= total and math.isfinite(loss)
        self.seen.append("steps")

    def on_epoch_end(self, trainer, record):
        self.seen.append(f"epoch_end {record['epoch']}")

    def on_fit_end(self, trainer):
        self.seen.append("fit_end")

    def on_exception(self, trainer, error):
        self.seen.append(f"exception {type(error).__name__}")

    def on_fit_exit(self, trainer):
        self.seen.append("fit_exit")


def test_the_hooks_come_in_order(small_run):
    recorder = Recorder()
    trainer = train(small_run, log=quiet, progress=False, callbacks=[recorder])
    steps = ["steps"] * (256 // 32)
    assert recorder.seen == ["fit_start", "train_start", "epoch_start 1", *steps, "epoch_end 1",
                             "epoch_start 2", *steps, "epoch_end 2", "fit_end", "fit_exit"]
    assert isinstance(trainer.state, TrainingState) and trainer.state.epoch == 2 and trainer.state.step == 16
    assert trainer.history is trainer.state.history and trainer.run.path == RunDir(small_run["out"]).path


def lock_is_held(directory) -> bool:
    """Whether some open file holds the run's lock (flock locks belong to an open file, so a
    second open in this process is refused while the trainer holds it)."""
    fd = os.open(os.path.join(directory, ".lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_the_runs_invariants_seen_by_a_callback(small_run, monkeypatch):
    import pyro_vae.training.callbacks.checkpoint as checkpointing

    out, saved, seen = small_run["out"], [], []
    real = checkpointing.save_checkpoint
    monkeypatch.setattr(checkpointing, "save_checkpoint", lambda state, path: saved.append(path.name) or real(state, path))

    class Invariants(Callback):
        def on_fit_start(self, trainer):
            assert sorted(os.listdir(out)) == [".lock"] and lock_is_held(out)  # nothing else on disk yet

        def on_epoch_start(self, trainer, epoch):
            if epoch == 1:
                assert sorted(os.listdir(out)) == [".lock"]

        def on_epoch_end(self, trainer, record):  # after the built-in checkpointing
            state = load_checkpoint(RunDir(out).checkpoint_path)
            assert state["epoch"] == record["epoch"] and state["metrics"] == trainer.history
            assert lock_is_held(out)
            seen.append(trainer.state.is_best(record["epoch"]))

        def on_fit_end(self, trainer):
            assert lock_is_held(out)

    train({**small_run, "valid_size": 64, "epochs": 3}, log=quiet, progress=False, callbacks=[Invariants()])
    expected = [name for best in seen for name in (["best.pt"] if best else []) + ["checkpoint.pt"]]
    assert seen[0] and saved == expected  # best.pt, when there is one, always before checkpoint.pt
    assert not lock_is_held(out)


def test_an_error_in_a_callback_is_reported_with_what_was_kept(small_run):
    recorder = Recorder()

    class Fails(Callback):
        def on_epoch_end(self, trainer, record):
            if record["epoch"] == 2:
                raise RuntimeError("my tracker is down")

    with pytest.raises(PyroVAEError, match="my tracker is down.*checkpoint of epoch 2 .* is intact") as error:
        train(small_run, log=quiet, progress=False, callbacks=[Fails(), recorder])
    assert isinstance(error.value.__cause__, RuntimeError)
    assert "epoch_end 1" in recorder.seen and "epoch_end 2" not in recorder.seen  # Fails came first
    assert recorder.seen[-2:] == ["exception RuntimeError", "fit_exit"]


def test_a_callback_may_stop_the_run(small_run):
    lines = []

    class Enough(Callback):
        def should_stop(self, trainer):
            return "two epochs are enough" if trainer.state.epoch == 2 else None

    trainer = train({**small_run, "epochs": 5}, log=lines.append, progress=False, callbacks=[Enough()])
    assert trainer.state.epoch == 2 and trainer.state.stop_reason == "two epochs are enough"
    assert "stopped: two epochs are enough" in lines


def test_callbacks_must_be_callbacks(small_run):
    with pytest.raises(ConfigError, match="Callback instances, got builtin_function_or_method"):
        Trainer(Config.from_flat(**small_run), log=quiet, progress=False, callbacks=[print])


# --- in memory ---------------------------------------------------------------------------------

def test_a_run_in_memory_writes_nothing(small_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = Config.from_flat(**{**small_run, "out": None, "eval_samples": 5, "plots": True})
    lines = []
    trainer = Trainer(cfg, in_memory=True, log=lines.append, progress=False)
    trainer.fit()
    assert os.listdir(tmp_path) == [] and trainer.run is None
    assert [r["epoch"] for r in trainer.history] == [1, 2]
    assert "run directory: none (in memory)" in lines[0]
    assert any(line.startswith("done: test ELBO") and line.endswith("after 2 epochs (in memory)") for line in lines)
    assert any(line.startswith("log p(x) = ") for line in lines)  # evaluated, not written


def test_in_memory_the_best_epoch_is_put_back(small_run, tmp_path, monkeypatch):
    """Early stopping in memory ends with the best epoch's weights, as evaluating best.pt would."""
    values = iter([-120.0, -110.0, -111.0, -112.0])
    real = Trainer.evaluate
    monkeypatch.setattr(Trainer, "evaluate",
                        lambda self, x=None: next(values) if x is not None and x is self.data.valid else real(self, x))
    weights = {}

    class Weights(Callback):
        def on_epoch_end(self, trainer, record):
            weights[record["epoch"]] = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    cfg = Config.from_flat(**{**small_run, "out": None, "valid_size": 64, "early_stopping": 2, "epochs": 10})
    trainer = Trainer(cfg, in_memory=True, log=quiet, progress=False, callbacks=[Weights()])
    trainer.fit()
    assert trainer.state.epoch == 4 and trainer.state.best == {"epoch": 2, "valid_elbo": -110.0}
    assert trainer.state.model_epoch == 2
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, weights[2][name]), name
    assert not all(torch.equal(weights[4][k], v) for k, v in weights[2].items())


def test_in_memory_refuses_an_out_directory_it_would_not_write(small_run):
    with pytest.raises(ConfigError, match="in memory"):
        Trainer(Config.from_flat(**small_run), in_memory=True, log=quiet, progress=False)


# --- parts handed in ---------------------------------------------------------------------------

def test_given_parts_are_the_ones_trained(small_run, data_dir):
    cfg = Config.from_flat(**{**small_run, "out": None})
    data = load_dataset("mnist", data_dir, limit_train=128, limit_test=32)
    prior = build_prior(Config.from_flat(prior="mog", prior_components=3).prior, cfg.model.latent_dim[-1], 784)
    trainer = Trainer(cfg, in_memory=True, prior=prior, elbo=Trace_ELBO(), data=data, log=quiet, progress=False)
    assert trainer.model.prior is prior and trainer.data.train.shape == (128, 784)
    assert trainer.step.lowered is not None  # Trace_ELBO has a differentiable loss: compiled
    trainer.fit()
    assert trainer.state.step == 2 * (128 // 32)

    model = build_model(Config.from_flat(hidden=[32], latent_dim=4))
    eager = Trainer(cfg, in_memory=True, model=model, elbo=RenyiELBO(alpha=0.5, num_particles=2),
                    data=data, log=quiet, progress=False)
    assert eager.model is model and eager.step.lowered is None
    assert eager.step.reason == "RenyiELBO has no differentiable_loss to trace"
    eager.fit()
    assert all(math.isfinite(r["train_loss"]) for r in eager.history)


@pytest.mark.parametrize("given, message", [
    ({"model": torch.nn.Linear(2, 2)}, "needs model\\(x\\) and guide\\(x\\)"),
    ({"elbo": "trace"}, "elbo must be a pyro.infer.ELBO instance, got str"),
    ({"data": torch.zeros(3, 784)}, "data must be a pyro_vae.data.VAEData, got Tensor"),
    ({"model": build_model(Config.from_flat(hidden=[8], latent_dim=2)), "prior": torch.nn.Identity()},
     "a model instance brings its own prior"),
])
def test_given_parts_that_do_not_fit_are_refused(small_run, given, message):
    with pytest.raises(ConfigError, match=message):
        Trainer(Config.from_flat(**{**small_run, "out": None}), in_memory=True, log=quiet, progress=False, **given)


# --- the seed is the run's own -----------------------------------------------------------------

def global_states():
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def test_training_leaves_the_callers_random_generators_as_they_were(small_run):
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    before = global_states()
    cfg = Config.from_flat(**{**small_run, "out": None, "seed": 7})
    first = Trainer(cfg, in_memory=True, log=quiet, progress=False)
    first.fit()
    after = global_states()
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]
    torch.manual_seed(999)  # whatever the caller's generators hold, the run is the seed's
    second = Trainer(cfg, in_memory=True, log=quiet, progress=False)
    second.fit()
    assert without_times(first.history) == without_times(second.history)
    for name, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[name]), name


def test_the_callers_generators_come_back_when_the_fit_fails(small_run):
    class Fails(Callback):
        def on_epoch_end(self, trainer, record):
            raise RuntimeError("stop")

    before = global_states()
    with pytest.raises(PyroVAEError):
        Trainer(Config.from_flat(**{**small_run, "out": None}), in_memory=True, log=quiet, progress=False,
                callbacks=[Fails()]).fit()
    after = global_states()
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]
