"""Semi-supervised runs end to end: accuracy on the right split, the best epoch by validation
accuracy, exact resume, the refusals, and the same run from Python."""

import pytest
import torch
from support import assert_one_line_error, quiet, run_script

import pyro_vae as pv
from pyro_vae.data import load_dataset
from pyro_vae.training.trainer import Trainer, train

SMALL = {"model": "ssvae", "labels": 20, "aux_loss": 5.0, "elbo": "traceenum", "limit_train": 320,
         "valid_size": 100, "limit_test": 100, "batch_size": 30, "hidden": [16], "latent_dim": 2,
         "plots": False, "device": "cpu", "eval_samples": None}


def _train(data_dir, tmp_path, name="run", **overrides) -> Trainer:
    values = {"data_dir": data_dir, **SMALL, "epochs": 2, "out": str(tmp_path / name), **overrides}
    return train(values, log=quiet, progress=False)


def _by_hand(model, x, labels) -> float:
    with torch.no_grad():
        return (model.classifier(x).argmax(-1) == labels).double().mean().item()


def test_accuracy_is_of_q_y_given_x_on_the_test_and_validation_splits(data_dir, tmp_path):
    trainer = _train(data_dir, tmp_path)
    record = trainer.history[-1]
    mnist = load_dataset("mnist", data_dir, limit_train=320, limit_test=100, valid_size=100)
    assert torch.equal(trainer.data.valid_labels, mnist.valid_labels) and len(mnist.valid_labels) == 100
    assert record["test_accuracy"] == pytest.approx(_by_hand(trainer.model, mnist.test, mnist.test_labels), abs=1e-12)
    assert record["valid_accuracy"] == pytest.approx(_by_hand(trainer.model, mnist.valid, mnist.valid_labels), abs=1e-12)
    assert len(trainer.data.labelled) == 20 and len(trainer.data.train) == 300  # the first 320, less 20
    best = max(trainer.history, key=lambda r: (r["valid_accuracy"], r["valid_elbo"]))
    assert trainer.state.best == {"epoch": best["epoch"], "valid_elbo": best["valid_elbo"],
                                  "valid_accuracy": best["valid_accuracy"]}


def test_a_resumed_semi_supervised_run_is_bit_exact(data_dir, tmp_path):
    straight = _train(data_dir, tmp_path, "straight")
    _train(data_dir, tmp_path, "split", epochs=1)
    resumed = train({"resume": str(tmp_path / "split"), "epochs": 2}, log=quiet, progress=False)
    assert resumed.history == [dict(r, wall_seconds=s["wall_seconds"], train_seconds=s["train_seconds"],
                                    epoch_seconds=s["epoch_seconds"])
                               for r, s in zip(straight.history, resumed.history)]
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("args, phrases", [
    (["--aux-loss", "1"], ["--aux-loss weighs and batches labelled images", "--labels N"]),
    (["--labels", "10", "--model", "vae"], ["model 'vae' does not take labels"]),
    (["--labels", "10", "--dataset", "binarized-mnist"], ["'binarized-mnist' has no labels"]),
    (["--labels", "10", "--model", "ssvae", "--elbo", "dreg", "--num-particles", "3"],
     ["--elbo dreg needs reparameterized guide sites", "samples y", "or traceenum"]),
])
def test_semi_supervised_mistakes_are_refused_in_one_line(capsys, data_dir, tmp_path, args, phrases):
    status, err = run_script(capsys, "svi_train", "--data-dir", data_dir, "--limit-train", 200,
                             "--limit-test", 20, "--epochs", 1, "--out", tmp_path / "r", *args)
    line = assert_one_line_error(status, err, *phrases)
    assert "disarm" not in line  # nothing it suggests refuses the model in turn
    assert not (tmp_path / "r").exists()


def test_the_notebook_flow_trains_a_semi_supervised_run(data_dir):
    values = {k: v for k, v in SMALL.items() if k not in ("model", "plots", "eval_samples")}
    run = pv.train("ssvae", data=pv.load_dataset("mnist", data_dir), epochs=1, verbose=False, **values)
    assert 0 <= run.history[-1]["test_accuracy"] <= 1 and "valid_accuracy" in run.history[-1]
