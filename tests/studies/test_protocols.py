"""The papers' training protocols: validation split and early stopping (best.pt), KL warm-up,
gated layers and the log-variance clamp, Adam betas, the stretched iwae schedule, reproduce.py."""

import json
import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO
from support import quiet

from pyro_vae.config import Config, make_config
from pyro_vae.core.errors import ConfigError
from pyro_vae.data import load_dataset
from pyro_vae.evaluation import evaluate_run
from pyro_vae.infer.lowering import LoweredStep
from pyro_vae.infer.warmup import LatentScale, warmup_beta
from pyro_vae.models import build_model
from pyro_vae.nn.nets import GatedDense, MLPDecoder, MLPEncoder
from pyro_vae.runs import RunDir, load_checkpoint, load_run
from pyro_vae.studies import reproduce, run_name
from pyro_vae.training.callbacks import Callback
from pyro_vae.training.trainer import Trainer, train


def run(overrides, callbacks=(), device_loop=None, **extra):
    return train({**overrides, **extra}, log=quiet, progress=False, callbacks=callbacks, device_loop=device_loop)


# --- validation split and early stopping -----------------------------------------------------

def test_valid_size_holds_out_the_last_training_images_binarized_once(data_dir):
    full = load_dataset("mnist", data_dir)
    data = load_dataset("mnist", data_dir, valid_size=1000)
    assert len(data.train) == 59000 and len(data.valid) == 1000
    assert torch.equal(data.train, full.train[:59000])
    assert set(data.valid.unique().tolist()) <= {0.0, 1.0}
    # binarized from the held-out grey levels: pixels that are 0 there stay 0
    assert (data.valid[full.train[59000:] == 0] == 0).all()
    again = load_dataset("mnist", data_dir, valid_size=1000, limit_train=100)
    assert torch.equal(again.valid, data.valid) and len(again.train) == 100


@pytest.mark.parametrize("overrides, message", [
    ({"dataset": "binarized-mnist", "valid_size": 100}, "its own validation split"),
    ({"early_stopping": 5}, "add valid_size"),
    ({"valid_size": 60000}, "leaves no training images"),
    ({"kl_warmup": 10, "elbo": "iwae", "num_particles": 5}, "log-mean-exp"),
    ({"kl_warmup": 10, "elbo": "stl"}, "site scales"),
    ({"kl_warmup": -1}, "kl_warmup"),
    ({"adam_betas": [0.9]}, "adam_betas"),
    ({"adam_betas": [0.9, 1.0]}, "adam_betas"),
    ({"logvar_range": [2, -6]}, "LOW < HIGH"),
    ({"arch": "conv", "activation": "gated"}, "gated"),
    ({"lr_schedule_scale": 0}, "lr_schedule_scale"),
])
def test_protocol_settings_are_checked(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config(overrides)


def scripted_validation(monkeypatch, values):
    """Trainer.evaluate returns ``values`` in turn on the validation split (the test split as
    usual), so the best epoch is known in advance."""
    values = iter(values)
    real = Trainer.evaluate

    def evaluate(self, x=None):
        return next(values) if x is not None and x is self.data.valid else real(self, x)

    monkeypatch.setattr(Trainer, "evaluate", evaluate)


def test_early_stopping_keeps_the_best_epoch_and_evaluate_loads_it(small_run, monkeypatch, capsys):
    scripted_validation(monkeypatch, [-120.0, -110.0, -111.0, -112.0, -100.0])
    weights = {}

    class SavedWeights(Callback):  # each epoch's weights, as its checkpoint saves them
        def on_epoch_end(self, trainer, record):
            weights[record["epoch"]] = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    trainer = run(small_run, valid_size=100, early_stopping=2, epochs=10, callbacks=[SavedWeights()])
    assert trainer.epoch == 4  # epochs 3 and 4 were no better than epoch 2
    assert trainer.best == {"epoch": 2, "valid_elbo": -110.0}
    assert [r["valid_elbo"] for r in trainer.history] == [-120.0, -110.0, -111.0, -112.0]
    run_dir = RunDir(small_run["out"])
    best = load_checkpoint(run_dir.best_path)
    assert best["epoch"] == 2
    for name, value in weights[2].items():
        assert torch.equal(best["model"][name], value)
    assert not all(torch.equal(best["model"][k], v) for k, v in weights[4].items())
    assert load_checkpoint(run_dir.checkpoint_path)["epoch"] == 4

    options = dict(num_samples=4, limit=16, data_dir=small_run["data_dir"], log=quiet, progress=False)
    assert evaluate_run(run_dir.path, **options)["epoch"] == 2
    summary = json.loads((run_dir.path / "eval.json").read_text())
    assert (summary["epoch"], summary["checkpoint"]) == (2, "best")
    assert evaluate_run(run_dir.path, checkpoint="last", **options)["epoch"] == 4

    # Resuming a run that stopped early does nothing and says why.
    lines = []
    resumed = train({"resume": small_run["out"], "data_dir": small_run["data_dir"]},
                    log=lines.append, progress=False)
    assert resumed.epoch == 4 and "stopped early" in lines[-1]


def test_the_best_epoch_survives_a_resume(small_run, monkeypatch):
    scripted_validation(monkeypatch, [-120.0, -110.0, -115.0, -118.0, -119.0])
    run(small_run, valid_size=100, early_stopping=3, epochs=2)
    resumed = run({"resume": small_run["out"], "data_dir": small_run["data_dir"], "epochs": 10})
    assert resumed.best["epoch"] == 2 and resumed.epoch == 5


def test_a_run_without_validation_evaluates_its_last_checkpoint(small_run):
    run(small_run)
    summary = evaluate_run(small_run["out"], num_samples=4, limit=8, data_dir=small_run["data_dir"],
                           log=quiet, progress=False)
    assert (summary["epoch"], summary["checkpoint"]) == (2, "last")
    assert not RunDir(small_run["out"]).best_path.exists()


def test_evaluate_script_takes_checkpoint(small_run, capsys):
    from support import run_script

    run(small_run)
    status, err = run_script(capsys, "evaluate", small_run["out"], "--checkpoint", "newest",
                             "--data-dir", small_run["data_dir"])
    assert status == 2 and "--checkpoint" in err and "Traceback" not in err


# --- KL warm-up --------------------------------------------------------------------------------

def test_warmup_beta_rises_linearly_to_one():
    steps = 10
    betas = [warmup_beta(s, steps, 2) for s in range(40)]
    assert betas[0] == pytest.approx(1 / 20) and betas[9] == pytest.approx(0.5)
    assert betas[19] == 1.0 and all(b == 1.0 for b in betas[19:])
    assert all(a < b for a, b in zip(betas[:19], betas[1:20]))
    assert warmup_beta(0, steps, 0) == 1.0


def tiny_vae(**overrides):
    cfg = make_config({"hidden": [16], "latent_dim": 4, **overrides})
    return build_model(cfg)


def scaled_loss(vae, beta, x, seed=0):
    scale = LatentScale(torch.tensor(beta))
    torch.manual_seed(seed)
    with torch.no_grad():
        return Trace_ELBO().loss(scale(vae.model), scale(vae.guide), x)


def test_latent_scale_weights_only_the_latent_terms(data_dir):
    x = load_dataset("mnist", data_dir, limit_train=1, limit_test=8).test
    vae = tiny_vae()
    with pyro.get_param_store().scope():
        losses = {beta: scaled_loss(vae, beta, x) for beta in (0.0, 0.3, 1.0)}
        torch.manual_seed(0)
        with torch.no_grad():
            plain = Trace_ELBO().loss(vae.model, vae.guide, x)
    # -ELBO_beta = -log p(x|z) - beta (log p(z) - log q(z|x)) with the same draws: linear in beta
    expected = losses[0.0] + 0.3 * (losses[1.0] - losses[0.0])
    assert losses[0.3] == pytest.approx(expected, rel=1e-5)
    assert losses[1.0] == pytest.approx(plain, rel=1e-6)
    assert abs(losses[1.0] - losses[0.0]) > 1.0  # the latent terms do count (3.7 nats here)


def test_compiled_step_reads_beta_on_every_call(data_dir):
    x = load_dataset("mnist", data_dir, limit_train=1, limit_test=8).test
    vae = tiny_vae()
    scale = LatentScale(torch.tensor(1.0))
    params = list(vae.parameters())
    with pyro.get_param_store().scope():
        lowered = LoweredStep(Trace_ELBO(), scale(vae.model), scale(vae.guide), params, [scale])
        for beta in (0.25, 1.0):
            scale.beta.fill_(beta)
            torch.manual_seed(1)
            loss, _ = lowered(x)
            assert loss.item() == pytest.approx(scaled_loss(vae, beta, x, seed=1), rel=1e-5)
    assert len(lowered.graphs) == 1  # one trace, beta an input


def test_warmup_run_reports_the_true_elbo(small_run):
    trainer = Trainer(Config.from_flat(**{**small_run, "kl_warmup": 1000.0}), log=quiet, progress=False)
    with trainer.param_scope():
        trainer.step.set_beta(0.001)
        warm = trainer.evaluate()
        trainer.step.set_beta(1.0)
        assert trainer.evaluate() == warm
    trainer.fit()
    record = trainer.history[-1]
    assert record["beta"] == pytest.approx(warmup_beta(trainer.global_step - 1, 8, 1000.0))
    assert record["test_elbo"] == pytest.approx(trainer.evaluate())
    # the training objective is the warmed-up one: far above the true -ELBO's KL-free part
    assert record["train_loss"] < -record["test_elbo"]


def test_warmup_runs_its_steps_from_the_host(small_run):
    trainer = run(small_run, kl_warmup=4.0, device_loop=True)  # would run the steps on the device
    assert trainer.graphed is None
    assert trainer.history[-1]["beta"] == pytest.approx(16 / 32)  # 8 steps per epoch, 2 epochs


# --- gated layers, log-variance clamp, Adam betas ----------------------------------------------

def test_gated_layers_shapes_and_parameters():
    layer = GatedDense(784, 300)
    assert layer(torch.rand(7, 784)).shape == (7, 300)
    assert sum(p.numel() for p in layer.parameters()) == 2 * (784 * 300 + 300)
    encoder = MLPEncoder(784, [300, 300], 40, "gated", logvar_range=(-6, 2))
    decoder = MLPDecoder(40, [300, 300], 784, "gated")
    for shape in [(5, 784), (3, 5, 784)]:
        loc, scale = encoder(torch.rand(shape))
        assert loc.shape == scale.shape == (*shape[:-1], 40)
        assert decoder(loc).shape == shape
    assert [type(m).__name__ for m in decoder.net] == ["GatedDense", "GatedDense", "Linear"]


def test_logvar_range_clamps_the_guide_scale():
    encoder = MLPEncoder(10, [8], 3, "relu", logvar_range=(-6, 2))
    with torch.no_grad():
        encoder.head.weight.mul_(1e4)
        _, scale = encoder(torch.randn(200, 10) * 100)
    assert scale.min() >= math.exp(-3) - 1e-7 and scale.max() <= math.exp(1) + 1e-6
    assert scale.min() < math.exp(-3) + 1e-6 and scale.max() > math.exp(1) - 1e-5  # both bounds hit


def test_adam_betas_reach_the_optimizer(small_run):
    trainer = Trainer(Config.from_flat(**{**small_run, "adam_betas": [0.99, 0.999]}), log=quiet, progress=False)
    assert trainer.optimizer.param_groups[0]["betas"] == (0.99, 0.999)


def test_vampprior_paper_config_builds():
    from support import REPO

    cfg = make_config(config_file=REPO / "configs" / "papers" / "tomczak_vampprior_1layer.yaml")
    assert (cfg.model.activation, cfg.model.logvar_range, cfg.objective.kl_warmup, cfg.optim.early_stopping) == ("gated", [-6, 2], 100, 50)


# --- reproduce.py ------------------------------------------------------------------------------

TINY = """\
# a tiny row for the tests
reference:
  paper: Nobody 2026
  table: Table 0
  nll: 150.0
  epochs: 4
hidden: [32]
latent_dim: 4
limit_train: 200
valid_size: 100
batch_size: 50
epochs: 2
lr: 3.0e-3
lr_schedule: iwae
lr_schedule_scale: 0.01
"""


def test_reproduce_end_to_end(data_dir, tmp_path, monkeypatch):
    config = tmp_path / "rows" / "tiny.yaml"
    config.parent.mkdir()
    config.write_text(TINY)
    runs, out = tmp_path / "runs", tmp_path / "table"
    options = dict(num_samples=10, limit=40, overrides={"data_dir": data_dir}, log=quiet)
    paths = reproduce([config], runs, out, **options)
    assert {p.name for p in paths.values()} == {"reproduction.md", "reproduction.json", "reproduction.png"}
    (row,) = json.loads(paths["json"].read_text())
    run_dir = runs / "rows-tiny"
    summary = json.loads((run_dir / "eval.json").read_text())
    assert row["run_dir"] == str(run_dir) and row["epochs"] == 2 and row["paper_nll"] == 150.0
    assert row["nll"] == summary["nll"] and row["gap"] == pytest.approx(summary["nll"] - 150.0)
    assert row["num_points"] == 40 and row["num_samples"] == 10
    assert row["evaluated_epoch"] == summary["epoch"] and row["checkpoint"] == "best"
    assert len(row["curve"]) == 2 and row["train_hours"] > 0
    table = paths["markdown"].read_text()
    assert "| tiny.yaml | Nobody 2026 (Table 0) | 150.00 |" in table and f"{row['nll']:.2f}" in table

    # Again: nothing is retrained or re-evaluated.
    monkeypatch.setattr("pyro_vae.studies.reproduction.evaluate_run", lambda *a, **k: pytest.fail("re-evaluated"))
    again = reproduce([config], runs, out, **options)
    assert json.loads(again["json"].read_text())[0]["nll"] == row["nll"]

    # Without --limit the whole test split is evaluated, so the 40-image result is not reused.
    monkeypatch.undo()
    whole = reproduce([config], runs, out, **{**options, "limit": None})
    assert json.loads(whole["json"].read_text())[0]["num_points"] == 10000

    # A scaled protocol is a run of its own with the epochs multiplied.
    reproduce([config], runs, out, scale=1.5, **options)
    state, cfg = load_run(runs / run_name(config, 1.5))
    assert state["epoch"] == 3 and cfg.optim.lr_schedule_scale == pytest.approx(0.015)


def test_a_reference_training_elbo_is_set_beside_the_runs_best(data_dir, tmp_path):
    config = tmp_path / "rows" / "tiny.yaml"
    config.parent.mkdir()
    config.write_text(TINY.replace("  nll: 150.0\n", "  train_elbo: -150.0\n") + "train_elbo: true\n")
    options = dict(num_samples=10, limit=40, overrides={"data_dir": data_dir}, log=quiet)
    paths = reproduce([config], tmp_path / "runs", tmp_path / "table", **options)
    (row,) = json.loads(paths["json"].read_text())
    metrics = [json.loads(line) for line in (tmp_path / "runs" / "rows-tiny" / "metrics.jsonl").read_text().splitlines()]
    best = max(r["train_elbo"] for r in metrics)
    assert row["paper_train_elbo"] == -150.0 and row["best_train_elbo"] == best
    assert row["train_elbo_gap"] == pytest.approx(best + 150.0) and row["paper_nll"] is None
    table = paths["markdown"].read_text()
    assert table.splitlines()[0].endswith("| paper best train ELBO | ours (gap) |")
    assert f"| -150.00 | {best:.2f} ({best + 150.0:+.2f}) |" in table



def test_reproduce_refuses_an_edited_config(data_dir, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    options = dict(num_samples=4, limit=8, overrides={"data_dir": data_dir}, log=quiet)
    reproduce([config], tmp_path / "runs", tmp_path, **options)
    config.write_text(TINY.replace("hidden: [32]", "hidden: [48]"))
    with pytest.raises(ConfigError, match=r"hidden \[32\] there, \[48\] in the config.*was edited since"):
        reproduce([config], tmp_path / "runs", tmp_path, **options)


def test_reproduce_script_errors_are_one_line(tmp_path, capsys):
    from support import run_script

    bad = tmp_path / "bad.yaml"
    bad.write_text("reference: 3\n")
    status, err = run_script(capsys, "reproduce", bad, "--runs-dir", tmp_path)
    assert status == 2 and "reference" in err and "Traceback" not in err
    status, err = run_script(capsys, "reproduce", tmp_path / "missing.yaml")
    assert status == 2 and "does not exist" in err


def reproduction_configs():
    from support import REPO

    return sorted((REPO / "configs" / "papers").glob("*.yaml")) + sorted((REPO / "configs" / "fast").glob("*.yaml"))


@pytest.mark.parametrize("path", reproduction_configs(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_reproduction_config_names_its_row(path):
    from pyro_vae.config import Config, read_config_file, validate

    settings, reference = read_config_file(path)
    validate(Config.from_flat(**settings))
    assert reference["paper"] and reference["table"] and reference["epochs"] >= settings["epochs"]
    if "train_elbo" in reference:  # the discrete-VAE papers' measure, which the run must record
        assert -115 < reference["train_elbo"] < -75 and settings["train_elbo"] is True
    elif "accuracy" in reference:  # the semi-supervised papers' measure, which needs labels
        assert 0.1 < reference["accuracy"] < 1 and settings["labels"] >= 10
    else:  # MNIST NLLs in nats (a CVAE's of the predicted pixels only: lower)
        assert (60 if settings.get("model") == "cvae" else 75) < reference["nll"] < 95
