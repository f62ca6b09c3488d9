"""The training-time budget (``max_minutes``) and the training split's ELBO (``train_elbo``): what
the discrete-estimator comparison needs to give each objective the same training time and score
them on one measure."""

from support import quiet

from pyro_vae.training.callbacks.time_limit import training_seconds
from pyro_vae.training.trainer import train


def test_training_seconds_sum_the_steps_only():
    history = [{"train_seconds": 1.5, "epoch_seconds": 9.0}, {"train_seconds": 2.0, "epoch_seconds": 3.0},
               {"epoch_seconds": 4.0}]  # a record from before train_seconds existed
    assert training_seconds(history) == 7.5


def test_a_spent_budget_stops_the_run_after_the_epoch(small_run):
    lines = []
    trainer = train({**small_run, "epochs": 4, "max_minutes": 1e-9}, log=lines.append, progress=False)
    assert trainer.epoch == 1
    assert "training time budget of 1e-09 minutes is spent" in trainer.state.stop_reason
    assert any(line.startswith("stopped: the training time budget") for line in lines)


def test_an_unspent_budget_changes_nothing(small_run):
    plain = train(dict(small_run, out=small_run["out"] + "-a"), log=quiet, progress=False)
    budget = train(dict(small_run, out=small_run["out"] + "-b", max_minutes=60.0), log=quiet, progress=False)
    assert budget.epoch == plain.epoch == 2 and budget.state.stop_reason is None
    assert [r["test_elbo"] for r in budget.history] == [r["test_elbo"] for r in plain.history]


def test_train_elbo_is_the_test_measure_on_the_training_split(small_run):
    lines = []
    trainer = train({**small_run, "train_elbo": True}, log=lines.append, progress=False)
    last = trainer.history[-1]
    assert last["train_elbo"] == trainer.evaluate(trainer.data.split("train"))  # same seed and weights
    assert last["train_elbo"] != last["test_elbo"]
    assert all("train_elbo" in r for r in trainer.history)
    assert f"train ELBO {last['train_elbo']:9.3f}" in next(line for line in lines if line.startswith("epoch   2/"))
