"""The public API (``import pyro_vae as pv``): the notebook flow end to end with a model defined
here, in memory and with a run directory; log p(x), samples, figures; reopening a run safely;
errors that name the Python parameters; the run's lines through logging."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
import yaml
from support import TINY_RUN, assert_one_line_error, run_script, train_tiny_run
from torch import nn

import pyro_vae as pv
from pyro_vae.models.priors import LaplacePrior

REPO = Path(__file__).resolve().parents[2]
FAST = {"epochs": 1, "batch_size": 32, "verbose": False}
TIMES = ("train_seconds", "epoch_seconds", "wall_seconds")


class TinyVAE(nn.Module):
    """A user's model as a notebook would define it: its own networks, z of size 2."""

    def __init__(self, x_dim=784, z_dim=2, width=16):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = nn.Sequential(nn.Linear(x_dim, width), nn.Tanh(), nn.Linear(width, 2 * z_dim))
        self.decoder = nn.Sequential(nn.Linear(z_dim, width), nn.Tanh(), nn.Linear(width, x_dim))

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            loc, raw = self.encoder(x).chunk(2, dim=-1)
            pyro.sample("z", dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(1))


@pytest.fixture(scope="module")
def data(data_dir):
    return pv.load_dataset("mnist", data_dir, limit_train=64, limit_test=16)


def python(code: str) -> subprocess.CompletedProcess:
    """``code`` run by a fresh Python, as a new notebook kernel would (it must succeed)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    return done


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def without_times(history):
    return [{k: v for k, v in r.items() if k not in TIMES} for r in history]


def files(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in sorted(directory.rglob("*"))}


# --- the notebook flow ----------------------------------------------------------------------------

def test_an_instance_trains_in_memory_and_is_evaluated_sampled_and_drawn(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = TinyVAE()
    run = pv.train(model=model, data=data, elbo="dreg", num_particles=3, **FAST)
    assert run.model is model and run.run_dir is None and list(tmp_path.iterdir()) == []  # nothing written
    assert [r["epoch"] for r in run.history] == [1] and np.isfinite(run.history[0]["test_elbo"])
    assert run.config.objective.elbo == "dreg" and run.config.objective.num_particles == 3
    assert run.config.model.name == "instance of TinyVAE from test_api"

    rng = torch.get_rng_state()
    ll = pv.log_likelihood(run.model, data.test[:8], num_samples=30)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's random stream is left alone
    assert ll.log_px.shape == ll.khat.shape == ll.ess.shape == (8,) and np.isfinite(ll.khat).all()
    assert ll.log_likelihood == pytest.approx(float(ll.log_px.astype(np.float64).mean()))
    assert ll.stderr == pytest.approx(float(np.std(ll.log_px.astype(np.float64), ddof=1) / np.sqrt(8)))
    assert (ll.points.log_px >= ll.points.elbo - 1e-4).all()  # log-mean-exp >= mean (Jensen), per image
    assert ll.psis["khat_max"] == pytest.approx(float(ll.khat.max())) and "trust" in ll.summary
    assert str(ll).startswith("log p(x) = ") and "on 8 given images, K = 30" in str(ll)
    again = pv.log_likelihood(run, data.test[:8], num_samples=30)  # a Run stands for its model
    assert np.array_equal(again.log_px, ll.log_px)  # the same seed, the same numbers

    images = pv.sample(run.model, 6, seed=1)
    assert images.shape == (6, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert torch.equal(images, pv.sample(run, 6, seed=1)) and not torch.equal(images, pv.sample(run, 6, seed=2))
    assert pv.reconstruct(run, data.test[:3]).shape == (3, 784)

    figures = pv.plot_run(run, out=tmp_path / "figures")
    assert sorted(p.name for p in figures) == ["latent_space.png", "learning_curves.png", "manifold.png",
                                               "reconstructions.png", "samples.png"]
    assert all(p.stat().st_size > 1000 for p in figures)


def test_an_instance_run_with_a_directory_reopens_only_with_the_model(data, tmp_path, capsys):
    out = tmp_path / "a"
    run = pv.train(model=TinyVAE(), data=data, out=out, **FAST)
    assert run.run_dir == out and {"checkpoint.pt", "config.yaml", "metrics.jsonl"} <= set(os.listdir(out))
    assert sorted(os.listdir(out / "figures")) == ["latent_space.png", "learning_curves.png", "manifold.png",
                                                   "reconstructions.png", "samples.png"]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"] == "instance of TinyVAE from test_api"  # its class, recorded, never imported
    assert saved["dataset"] == "mnist" and (saved["limit_train"], saved["limit_test"]) == (64, 16)

    before = files(out)
    with pytest.raises(pv.ConfigError) as refused:
        pv.open_run(out)
    message = str(refused.value)
    assert message == (f"{out} was trained from an instance of TinyVAE (from module test_api) that cannot "
                       "be rebuilt from its config: pass model=TinyVAE(...)")
    opened = pv.open_run(out, model=TinyVAE())
    assert same_weights(opened.model, run.model) and opened.history == run.history
    assert opened.checkpoint == "last"  # no validation split, so no best.pt
    with pytest.raises(pv.CheckpointError, match=r"does not fit the model passed as model= \(TinyVAE\)"):
        pv.open_run(out, model=TinyVAE(width=8))  # every tensor's shape is checked
    assert files(out) == before  # opening writes nothing

    # the commands cannot pass an object: they say how to open it in Python
    line = assert_one_line_error(*run_script(capsys, "evaluate", out, "--num-samples", "10"),
                                 "was trained from an instance of TinyVAE", "open or resume it in Python")
    assert "model=TinyVAE(...)" in line

    assert_one_line_error(*run_script(capsys, "svi_train", "--resume", out, "--epochs", "2"),
                          "'instance of TinyVAE from test_api' was an object made in Python")
    with pytest.raises(pv.ConfigError, match=r"pass model=TinyVAE\(\.\.\.\)"):
        pv.resume(out, epochs=2)
    resumed = pv.resume(out, model=opened.model, epochs=2, verbose=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2] and resumed.model is opened.model


def test_a_named_model_writes_what_the_script_writes_and_reopens_without_model(data_dir, tmp_path):
    """Same settings, same seed: pv.train's run directory is the one scripts/svi_train.py's
    Trainer writes, weights and metrics alike; reopened without code of anyone's."""
    settings = {k: v for k, v in TINY_RUN.items() if k not in ("epochs",)}
    run = pv.train(model="vae", data="mnist", data_dir=data_dir, out=tmp_path / "api", epochs=1, verbose=False,
                   **{k: v for k, v in settings.items() if k != "device"})
    script = train_tiny_run(data_dir, tmp_path / "script")
    api_config = yaml.safe_load((tmp_path / "api" / "config.yaml").read_text())
    script_config = yaml.safe_load((script / "config.yaml").read_text())
    assert {**api_config, "out": None, "device": None} == {**script_config, "out": None, "device": None}
    metrics = [json.loads(line) for line in (script / "metrics.jsonl").read_text().splitlines()]
    assert without_times(run.history) == without_times(metrics)

    opened = pv.open_run(tmp_path / "api")
    reference = pv.open_run(script)
    assert same_weights(opened.model, run.model) and same_weights(opened.model, reference.model)
    assert type(opened.model).__name__ == "VAE" and opened.image_shape == (1, 28, 28)
    assert len(opened.data.test) == 16  # loaded by its name, with the run's limits
    figures = pv.plot_run(tmp_path / "api")
    assert {p.parent for p in figures} == {tmp_path / "api" / "figures"}


def test_a_model_named_by_import_path_reopens_only_where_trusted(data, tmp_path, monkeypatch):
    """The alternative to an instance: a class named by its import path is rebuilt from the
    config, and reopening imports it only where the caller names it."""
    monkeypatch.syspath_prepend(str(REPO / "examples"))
    out = tmp_path / "user"
    run = pv.train(model="custom_model:StyleContentVAE", model_options={"width": 16}, latent_dim=2, data=data,
                   out=out, plots=False, **FAST)
    with pytest.raises(pv.UntrustedImportError, match="custom_model:StyleContentVAE"):
        pv.open_run(out)
    opened = pv.open_run(out, trusted_imports=["custom_model:StyleContentVAE"])
    assert type(opened.model).__name__ == "StyleContentVAE" and same_weights(opened.model, run.model)


def test_a_prior_instance_is_recorded_and_passed_again(data, tmp_path):
    out = tmp_path / "laplace"
    run = pv.train(model="vae", prior=LaplacePrior(2), hidden=[16], latent_dim=2, data=data, out=out, **FAST)
    assert run.config.prior.name == "instance of LaplacePrior from pyro_vae.models.priors.heavy_tailed"
    with pytest.raises(pv.ConfigError, match=r"trained with a prior that was an instance of LaplacePrior .* "
                                             r"pass prior=LaplacePrior\(\.\.\.\)$"):
        pv.open_run(out)
    assert same_weights(pv.open_run(out, prior=LaplacePrior(2)).model, run.model)


def test_an_objective_instance_and_tensors(data):
    elbo = pyro.infer.Trace_ELBO(num_particles=2, vectorize_particles=True, max_plate_nesting=1)
    grey = data.train.reshape(-1, 28, 28)  # grey levels as (N, H, W): binarized like MNIST's
    run = pv.train(model=TinyVAE(), elbo=elbo, data=(grey, data.test), **FAST)
    assert run.config.objective.elbo == "instance of Trace_ELBO from pyro.infer.trace_elbo"
    assert run.config.objective.num_particles == 2 and run.config.data.dataset == "instance of VAEData from pyro_vae.data.vaedata"
    assert run.data.dynamic_binarization and run.data.image_shape == (1, 28, 28)
    assert torch.equal(run.data.train, data.train) and torch.equal(run.data.test, data.test)
    held_out = pv.train(model=TinyVAE(), data=data.test, valid_size=4, batch_size=4, epochs=1, verbose=False)
    assert len(held_out.data.valid) == 4 and "valid_elbo" in held_out.history[0]
    assert not held_out.data.dynamic_binarization  # binary images are used as they are


def test_a_registry_name_may_record_an_object_but_never_builds_one():
    from pyro_vae.core.registry import Registry, instance_class, instance_name

    registry = Registry("widget", size=1)
    registry.register("a", lambda: 1)
    name = instance_name(TinyVAE())
    assert name == "instance of TinyVAE from test_api" and instance_class(name) == ("TinyVAE", "test_api")
    assert name in registry and registry.names() == ("a",) and list(registry) == ["a"]  # never listed
    assert registry.get(name).capabilities == {"size": 1}  # the registry's defaults
    with pytest.raises(pv.ConfigError, match="widget 'instance of TinyVAE from test_api' was an object made "
                                             r"in Python.*pass the object again, a TinyVAE\(\.\.\.\) from test_api"):
        registry.get(name).factory()
    with pytest.raises(pv.ConfigError, match="not of the form 'instance of Class from module'"):
        registry.register(name, lambda: 2)
    assert instance_class("vae") is None and instance_class("pkg.mod:Cls") is None
    assert instance_class("instance of a:b from c") is None  # never an import path


# --- errors name the parameters, not flags ---------------------------------------------------------

def _grey(data):
    return data.train[:4]


@pytest.mark.parametrize("call, message", [
    (lambda d: pv.train(model=nn.Linear(2, 2)), "model= (Linear) has no model(x) method"),
    (lambda d: pv.train(model=TinyVAE), "model= is the class TinyVAE; pass an instance, TinyVAE(...)"),
    (lambda d: pv.train(model=42), "model= must be a model name (vae, hvae"),
    (lambda d: pv.train(model=TinyVAE(), hiden=[3]), "unknown keyword argument hiden=; did you mean hidden=?"),
    (lambda d: pv.train(model=TinyVAE(), hidden=[3]), "hidden=[3] shapes a model that pyro-vae builds from its name"),
    (lambda d: pv.train(model=TinyVAE(), prior="vamp"), "prior= is for a model built from its name"),
    (lambda d: pv.train(elbo=object()), "elbo= must be an objective name (trace"),
    (lambda d: pv.train(elbo=pyro.infer.Trace_ELBO(), num_particles=3), "num_particles= is set on the objective"),
    (lambda d: pv.train(data=42), "data= must be a dataset name (mnist"),
    (lambda d: pv.train(data=torch.zeros(3)), "data= must hold at least one image"),
    (lambda d: pv.train(data=(d.train * 255).round()), "data= must hold pixel values in [0, 1]"),
    (lambda d: pv.train(data=d, valid_size=70), "valid_size 70 leaves no training images"),
    (lambda d: pv.train(dataset="mnist"), "pass data='mnist'"),
    (lambda d: pv.train(resume="runs/x"), "continue one with pyro_vae.resume(path"),
    (lambda d: pv.log_likelihood(TinyVAE(), d.test[:2], num_samples=0), "num_samples= must be a whole number"),
    (lambda d: pv.log_likelihood(TinyVAE(), _grey(d)), "x= holds grey levels"),
    (lambda d: pv.log_likelihood(TinyVAE(), torch.ones(2, 10)), "model= and x= (shape (2, 10)) do not fit"),
    (lambda d: pv.ais(TinyVAE(), d.test[:2], start="middle"), "start= must be one of 'guide', 'prior'"),
    (lambda d: pv.ais(TinyVAE(), d.test[:2], num_chains=0), "num_chains= must be a whole number"),
    (lambda d: pv.sample(TinyVAE(), 0), "n= must be a whole number of at least 1"),
    (lambda d: pv.sample(TinyVAE(), 2, image_shape=(1, 5, 5)), "did not generate images of image_shape=(1, 5, 5)"),
    (lambda d: pv.open_run("/nonexistent/run"), "path /nonexistent/run is missing"),
    (lambda d: pv.open_run("/x", trusted_imports="pkg:Cls"), "trusted_imports= is a list of import paths"),
    (lambda d: pv.resume("/x", hidden=[3]), "hidden= cannot change when a run is resumed"),
    (lambda d: pv.plot_run(object()), "run= must be a Run"),
    (lambda d: pv.plot_run("/x", num_points=0), "num_points= must be a whole number"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_api_errors_name_the_parameter_in_one_line(data, call, message):
    with pytest.raises(pv.PyroVAEError) as error:
        call(data)
    text = str(error.value)
    assert message in text and "--" not in text and "\n" not in text


def test_an_in_memory_run_needs_out_for_figures(data):
    run = pv.train(model=TinyVAE(), data=data, **FAST)
    with pytest.raises(pv.ConfigError, match="trained in memory and has no run directory: pass out=DIR"):
        pv.plot_run(run)


def test_the_config_validation_speaks_python(data):
    with pytest.raises(pv.ConfigError) as error:
        pv.train(model="vae", data=data, valid_size=1, early_stopping=0)
    assert "--" not in str(error.value)


# --- the run's lines go through logging --------------------------------------------------------------

def test_the_runs_lines_are_logged(data, caplog):
    caplog.set_level(logging.INFO, logger="pyro_vae")
    pv.train(model=TinyVAE(), data=data, **FAST)
    lines = [r.getMessage() for r in caplog.records if r.name == "pyro_vae"]
    assert any(line.startswith("epoch   1/1  train loss") for line in lines)
    assert any(line.startswith("pyro-vae: training on mnist (64 train / 16 test images") for line in lines)


def test_a_notebook_sees_the_lines_without_configuring_logging(data_dir):
    """No handler configured (a fresh notebook): verbose=True shows the run's lines on stdout for
    the call, verbose=False shows none, and the logger is left as it was."""
    code = (f"import logging, pyro_vae as pv\n"
            f"data = pv.load_dataset('mnist', {data_dir!r}, limit_train=64, limit_test=16)\n"
            "pv.train(data=data, hidden=[16], latent_dim=2, epochs=1, batch_size=32, verbose=False)\n"
            "print('--- quiet above')\n"
            "pv.train(data=data, hidden=[16], latent_dim=2, epochs=1, batch_size=32, progress=False)\n"
            "logger = logging.getLogger('pyro_vae')\n"
            "print('handlers', len(logger.handlers), logger.level)\n")
    done = python(code)
    quiet, shown = done.stdout.split("--- quiet above\n")
    assert quiet == "" and shown.count("epoch   1/1  train loss") == 1
    assert shown.splitlines()[-1] == "handlers 0 0"


def test_import_pyro_vae_is_cheap_and_draws_nothing():
    code = ("import sys, pyro_vae as pv\n"
            "assert not {'torch', 'matplotlib'} & set(sys.modules), 'heavy imports'\n"
            "[getattr(pv, name) for name in ('open_run', 'plot_run', 'log_likelihood', 'sample', 'Run')]\n"
            "assert 'matplotlib' not in sys.modules, 'matplotlib'\n")
    python(code)


def test_every_public_name_resolves():
    assert len(set(pv.__all__)) == len(pv.__all__) and set(pv.__all__) <= set(dir(pv))
    assert all(getattr(pv, name) is not None for name in pv.__all__)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        pv.nope
