"""Training under a relaxation (relax: concrete): the temperature recorded per epoch and annealed
step by step, evaluation on the discrete model, resume continuing the schedule, and where the
steps run."""

import math

import pytest
import torch
from support import quiet

from pyro_vae.infer.relax import temperature_at
from pyro_vae.runs.rundir import RunDir
from pyro_vae.training.trainer import train

TOY = "support.relax_toys:BernoulliToy"
TIMES = ("train_seconds", "epoch_seconds", "wall_seconds")


@pytest.fixture
def relaxed_run(data_dir, tmp_path):
    """A run of the tiny Bernoulli toy (784 pixels, 8 bits) under an annealed relaxation: 8 steps
    per epoch."""
    return {"data_dir": data_dir, "limit_train": 256, "limit_test": 128, "batch_size": 32, "epochs": 2,
            "plots": False, "device": "cpu", "model": TOY, "latent_dim": 8, "relax": "concrete",
            "temperature": 1.0, "temperature_anneal": 0.05, "temperature_min": 0.6,
            "out": str(tmp_path / "run")}


def run(overrides, device_loop=None, **extra):
    return train({**overrides, **extra}, log=quiet, progress=False, trusted_imports=[TOY], device_loop=device_loop)


def without_times(history):
    return [{k: v for k, v in r.items() if k not in TIMES} for r in history]


def test_the_temperature_is_recorded_and_evaluation_is_discrete(relaxed_run):
    trainer = run(relaxed_run)
    records = RunDir(relaxed_run["out"]).read_metrics()
    assert [r["temperature"] for r in records] == [temperature_at(8 * e - 1, trainer.cfg.objective) for e in (1, 2)]
    assert records[0]["temperature"] == pytest.approx(math.exp(-0.35)) and records[1]["temperature"] == 0.6
    assert trainer.step.lowered is not None and len(trainer.step.lowered.graphs) == 1
    # the test ELBO is the discrete model's: the training step's temperature does not reach it
    with trainer.param_scope():
        trainer.step.set_inputs({"temperature": 0.1})
        cold = trainer.evaluate()
        trainer.step.set_inputs({"temperature": 5.0})
        assert trainer.evaluate() == cold == records[-1]["test_elbo"]


def test_resume_continues_the_temperature_schedule(relaxed_run, tmp_path):
    relaxed_run.update(epochs=3, temperature_anneal=0.02, temperature_min=0.3, straight_through=True)
    whole = run(relaxed_run)
    part = str(tmp_path / "part")
    run(relaxed_run, out=part, epochs=1)
    resumed = run({"resume": part, "epochs": 3})
    temperatures = [r["temperature"] for r in whole.history]
    assert temperatures == sorted(temperatures, reverse=True) and len(set(temperatures)) == 3
    assert without_times(resumed.history) == without_times(whole.history)
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_an_annealed_temperature_runs_its_steps_from_the_host(relaxed_run):
    annealed = run(relaxed_run, epochs=1, device_loop=True)  # would run the steps on the device
    assert annealed.loop.graphed is None
    assert any("annealing changes the temperature every step" in note for note in annealed.loop.notes)
    fixed = run(relaxed_run, epochs=1, device_loop=True, temperature_anneal=0.0, temperature_min=0.5,
                out=relaxed_run["out"] + "-fixed")
    assert fixed.loop.graphed is not None and fixed.history[-1]["temperature"] == 1.0


@pytest.mark.parametrize("options", [
    {"model": "sbn", "latent_dim": [20]},
    {"model": "sbn", "latent_dim": [20, 10], "elbo": "dreg", "num_particles": 2},
    {"model": "categorical", "latent_dim": [4], "categories": 3, "hidden": [32], "straight_through": True},
], ids=lambda o: "+".join(f"{v}" for v in o.values()))
def test_the_discrete_models_train_relaxed(relaxed_run, options):
    shipped = {k: v for k, v in relaxed_run.items() if k not in ("model", "latent_dim")}
    trainer = run({**shipped, **options}, epochs=1)
    assert trainer.step.lowered is not None and len(trainer.step.lowered.graphs) == 1
    record = trainer.history[-1]
    assert math.isfinite(record["train_loss"]) and math.isfinite(record["test_elbo"])
    assert record["temperature"] == temperature_at(7, trainer.cfg.objective)
