"""Models as an extension point: the shipped families' sites, the site rules, objective refusals,
every objective on the two-layer model, and a user's own model (the docs' example) end to end."""

import json
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.distributions.testing.fakes import NonreparameterizedNormal
from support import quiet, run_script
from torch import nn

from pyro_vae.config import make_config
from pyro_vae.core.errors import ConfigError
from pyro_vae.evaluation import describe, evaluate_model
from pyro_vae.infer.objectives import build_objective, check_structure, model_structure
from pyro_vae.models import build_model
from pyro_vae.models.sites import probe
from pyro_vae.studies import run_diagnostic

REPO = Path(__file__).resolve().parents[2]
B = 5
HVAE = {"model": "hvae", "hidden": [16], "upper_hidden": [8], "latent_dim": [6, 3]}
EXAMPLE = "custom_model:StyleContentVAE"


@pytest.fixture
def x():
    return torch.bernoulli(torch.full((B, 784), 0.3))


def sample_sites(trace):
    return [n for n, s in trace.nodes.items() if s["type"] == "sample"]


def test_hvae_sites_shapes_and_parameters(x):
    hvae = build_model(make_config(HVAE))
    guide = poutine.trace(hvae.guide).get_trace(x)
    model = poutine.trace(poutine.replay(hvae.model, trace=guide)).get_trace(x)
    assert sample_sites(guide) == ["data", "z1", "z2"]  # bottom layer first: q(z1 | x) q(z2 | z1)
    assert sample_sites(model) == ["data", "z2", "z1", "x"]  # top layer first: p(z2) p(z1 | z2) p(x | z1)
    for trace in (guide, model):
        for name, size in (("z1", 6), ("z2", 3)):
            site = trace.nodes[name]
            assert site["fn"].batch_shape == (B,) and site["fn"].event_shape == (size,)
            assert [f.name for f in site["cond_indep_stack"]] == ["data"]
    assert torch.equal(model.nodes["z1"]["value"], guide.nodes["z1"]["value"])
    assert model.nodes["x"]["is_observed"] and model.nodes["x"]["fn"].event_shape == (784,)
    # q(z2 | z1) is computed from the sampled z1, p(z1 | z2) from z2
    z1 = guide.nodes["z1"]["value"]
    torch.testing.assert_close(guide.nodes["z2"]["fn"].base_dist.loc, hvae.encoders[1](z1)[0])
    torch.testing.assert_close(model.nodes["z1"]["fn"].base_dist.loc,
                               hvae.decoders[1](guide.nodes["z2"]["value"])[0])
    names = set(pyro.get_param_store().keys())
    assert names == {f"encoders$$${n}" for n, _ in hvae.encoders.named_parameters()} | \
                    {f"decoders$$${n}" for n, _ in hvae.decoders.named_parameters()}


def test_burda_architecture_is_the_hvae_default():
    cfg = make_config({"model": "hvae"})
    assert (cfg.model.hidden, cfg.model.upper_hidden, cfg.model.latent_dim, cfg.model.activation) == ([200, 200], [100, 100], [100, 50], "tanh")
    hvae = build_model(cfg)
    layers = [m for m in hvae.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in layers] == [
        (784, 200), (200, 200), (200, 200),  # q(z1 | x): 200-200, then loc and scale of z1
        (100, 100), (100, 100), (100, 100),  # q(z2 | z1): 100-100, then loc and scale of z2
        (100, 200), (200, 200), (200, 784),  # p(x | z1): mirrored
        (50, 100), (100, 100), (100, 200)]  # p(z1 | z2): mirrored
    assert make_config({}).model.latent_dim == [50] and make_config({}).model.hidden == [400, 400]  # vae unchanged


def test_structure_of_each_model(x, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "examples"))
    vae = build_model(make_config({"hidden": [16], "latent_dim": 4}))
    hvae = build_model(make_config({**HVAE, "latent_dim": [6, 4, 2]}))
    user = build_model(make_config({"model": EXAMPLE, "latent_dim": 4, "model_options": {"width": 16}}))
    one = probe(vae.model, vae.guide, x, "vae")
    assert [s.name for s in one.latents] == ["z"] and one.mean_field and one.top.size == 4
    three = probe(hvae.model, hvae.guide, x, "hvae")
    assert [s.name for s in three.latents] == ["z3", "z2", "z1"] and three.top.name == "z3"
    assert three.guide_order == ("z1", "z2", "z3") and not three.mean_field
    assert {s.name: set(s.depends_on) for s in three.latents} == {"z3": {"z2"}, "z2": {"z1"}, "z1": set()}
    two_sites = probe(user.model, user.guide, x, EXAMPLE)
    assert [s.name for s in two_sites.latents] == ["z", "style"] and two_sites.mean_field


class Broken(nn.Module):
    """A one-latent model with one deliberate mistake, chosen by ``kind``."""

    def __init__(self, x_dim, kind):
        super().__init__()
        self.kind, self.net = kind, nn.Linear(2, x_dim)

    def model(self, x):
        pyro.module("net", self.net)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("y" if self.kind == "observed" else "x",
                        dist.Bernoulli(logits=self.net(z)).to_event(1), obs=x)

    def guide(self, x):
        if self.kind == "no-plate":
            pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(2))
            return
        with pyro.plate("data", x.shape[0]):
            if self.kind == "no-event":
                pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 2), 1.0))
            else:
                pyro.sample("w" if self.kind == "names" else "z",
                            dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(1))
            if self.kind == "crash":
                raise RuntimeError("a bug in the guide")


@pytest.mark.parametrize("kind, message", [
    ("observed", "must observe exactly one site named 'x'.*\\['y'\\]"),
    ("no-plate", "site 'z' of the guide is not inside pyro.plate\\('data'"),
    ("no-event", "batch_shape \\(2, 2\\) for 2 images.*\\.to_event\\(1\\)"),
    ("names", "latent sites \\['z'\\] and the guide's \\['w'\\] must be the same"),
    ("crash", "failed \\(RuntimeError: a bug in the guide\\)"),
])
def test_site_rules_are_checked_with_one_line(x, kind, message):
    model = Broken(784, kind)
    with pytest.raises(ConfigError, match=message) as error:
        probe(model.model, model.guide, x, "Broken")
    assert "\n" not in str(error.value)


def test_refusals(x, monkeypatch):
    hvae = build_model(make_config(HVAE))
    with pytest.raises(ConfigError, match="elbo='meanfield' is not sound for model 'hvae'.*q\\(z2 \\| ...\\) depends "
                                          "on the sampled z1"):
        model_structure(hvae, make_config({**HVAE, "elbo": "meanfield"}), x)
    monkeypatch.syspath_prepend(str(REPO / "examples"))
    user = {"model": EXAMPLE, "latent_dim": 3, "model_options": {"width": 16}}
    model_structure(build_model(make_config(user)), make_config({**user, "elbo": "meanfield"}), x)  # mean-field: fine

    class ScoreSite(Broken):  # a user model whose guide marks its latent non-reparameterized
        def guide(self, x):
            with pyro.plate("data", x.shape[0]):
                pyro.sample("z", NonreparameterizedNormal(torch.zeros(x.shape[0], 2), 1.0).to_event(1))

    score = ScoreSite(784, "fine")
    for elbo, k in (("iwae", 3), ("dreg", 3), ("stl", 1), ("meanfield", 1)):
        cfg = make_config({"elbo": elbo, "num_particles": k})
        with pytest.raises(ConfigError, match=f"elbo='{elbo}' needs reparameterized guide sites.*samples z "
                                              "without reparameterization"):
            check_structure(cfg, probe(score.model, score.guide, x, "ScoreSite"))
    for overrides, message in [
        ({"model": "hvae", "latent_dim": [50]}, "has at least 2 latent layer\\(s\\) but latent_dim gives 1"),
        ({"latent_dim": [100, 50]}, "model 'vae' has 1 latent layer\\(s\\) but latent_dim gives 2"),
        ({"model": "hvae", "model_options": {"a": 1}}, "model_options are for user-defined models"),
        ({"model": "ladder"}, "unknown model 'ladder'; choose one of: vae, hvae"),
        ({"model": "nowhere_module:M"}, "model 'nowhere_module:M': cannot import nowhere_module"),
        ({**user, "estimator": "score"}, "estimator 'score' is not a parameter of custom_model:StyleContentVAE\\(x_dim, latent_dim, prior"),
        ({**user, "model_options": {"width": 16, "prior": 1}}, "model_options \\['prior'\\] are set from the config"),
        ({**user, "model_options": {"depth": 3}}, "could not be built.*unexpected keyword argument 'depth'"),
        ({**user, "prior": "vamp"}, "prior 'vamp' cannot be used with model.*encode_top"),
    ]:
        with pytest.raises(ConfigError, match=message):
            build_model(make_config(overrides), train_data=torch.rand(10, 784))


HVAE_OBJECTIVES = [
    {"elbo": "trace"}, {"elbo": "tracegraph"}, {"elbo": "iwae", "num_particles": 3},
    {"elbo": "renyi", "alpha": 0.5, "num_particles": 3}, {"elbo": "dreg", "num_particles": 3},
    {"elbo": "stl", "num_particles": 2}, {"estimator": "score"}, {"estimator": "score", "elbo": "trace"},
    {"estimator": "score", "baseline": "avg"}, {"estimator": "score", "baseline": "nn"},
    {"elbo": "trace", "num_particles": 2}, {"prior": "vamp", "prior_components": 4, "elbo": "dreg", "num_particles": 2},
]


@pytest.mark.parametrize("options", HVAE_OBJECTIVES, ids=lambda o: "+".join(f"{v}" for v in o.values()))
def test_every_objective_reaches_every_parameter_of_the_two_layer_model(x, options):
    cfg = make_config({**HVAE, **options})
    hvae = build_model(cfg, train_data=torch.rand(20, 784))
    model_structure(hvae, cfg, x)
    loss = build_objective(cfg).loss_and_grads(hvae.model, hvae.guide, x)
    assert torch.isfinite(torch.tensor(loss))
    for name, p in hvae.named_parameters():
        if name.startswith("baselines."):  # trained by Pyro's baseline loss, tested in test_estimators
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_hvae_evaluation_reports_active_units_per_layer(x):
    hvae = build_model(make_config(HVAE))
    summary, points = evaluate_model(hvae, torch.cat([x, 1 - x]), num_samples=30, batch_size=4, log=quiet)
    assert summary["latent_dim_per_site"] == {"z1": 6, "z2": 3}
    assert set(summary["active_units_per_site"]) == {"z1", "z2"}
    assert summary["active_units"] == sum(summary["active_units_per_site"].values())
    assert {k: v.shape for k, v in points.posterior_mean.items()} == {"z1": (10, 6), "z2": (10, 3)}
    per_site = "+".join(str(v) for v in summary["active_units_per_site"].values())
    assert f"active units: {per_site} of 6+3 (z1+z2)" in describe(summary)


def test_hvae_trains_resumes_and_draws_its_figures(data_dir, tmp_path, capsys):
    common = ["--model", "hvae", "--hidden", "32", "--upper-hidden", "16", "--latent-dims", "8", "2",
              "--data-dir", data_dir, "--limit-train", "256", "--limit-test", "64", "--batch-size", "32"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    status, err = run_script(capsys, "svi_train", *common, "--epochs", "2", "--out", whole)
    assert status == 0, err
    assert run_script(capsys, "svi_train", *common, "--epochs", "1", "--no-plots", "--out", part)[0] == 0
    assert run_script(capsys, "svi_train", "--resume", part, "--epochs", "2", "--data-dir", data_dir)[0] == 0
    a, b = (torch.load(d / "checkpoint.pt", weights_only=True)["model"] for d in (whole, part))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit-exact resume
    figures = {p.name for p in (whole / "figures").iterdir()}
    assert figures == {"samples.png", "reconstructions.png", "latent_space.png", "learning_curves.png",
                       "manifold.png"}  # the top layer z2 is 2-D: the manifold too


def test_user_model_example_trains_resumes_evaluates_and_plots(data_dir, tmp_path, capsys, monkeypatch):
    """The docs' example (docs/models.md), through the scripts, as a user runs it from the repository root."""
    monkeypatch.chdir(REPO)
    path = f"examples.{EXAMPLE}"
    run_dir = tmp_path / "run"
    common = ["--data-dir", data_dir]
    status, err = run_script(capsys, "svi_train", "--model", path, "--model-options", '{"width": 64}',
                             "--latent-dim", "2", "--limit-train", "512", "--limit-test", "64",
                             "--batch-size", "32", "--epochs", "1", "--elbo", "dreg", "--num-particles", "3",
                             "--out", run_dir, *common)
    assert status == 0, err
    assert {p.name for p in (run_dir / "figures").iterdir()} >= {"samples.png", "reconstructions.png",
                                                                "latent_space.png", "manifold.png"}
    # reopening imports the model only when the user names it
    status, err = run_script(capsys, "evaluate", run_dir, "--num-samples", "25", *common)
    assert status == 2 and f"--trust-import {path}" in err and "\n" not in err.strip()
    assert run_script(capsys, "svi_train", "--resume", run_dir, "--epochs", "2", *common)[0] == 2
    status, err = run_script(capsys, "svi_train", "--resume", run_dir, "--epochs", "2", "--model", path,
                             "--no-plots", *common)
    assert status == 0, err
    status, err = run_script(capsys, "evaluate", run_dir, "--num-samples", "25", "--trust-import", path, *common)
    assert status == 0, err
    summary = json.loads((run_dir / "eval.json").read_text())
    assert summary["latent_dim_per_site"] == {"z": 2, "style": 2} and summary["epoch"] == 2
    status, err = run_script(capsys, "grad_variance", run_dir, "--repeats", "3", "--trust-import", path,
                             "--estimators", "reparam", "meanfield", "dreg", *common)
    assert status == 0, err
    rows = json.loads((run_dir / "grad_variance.json").read_text())["rows"]
    assert [r["estimator"] for r in rows] == ["reparam", "meanfield", "dreg"]


def test_grad_variance_skips_what_the_model_cannot_use(data_dir, tmp_path):
    logged = []
    paths = run_diagnostic(None, {**HVAE, "batch_size": 8, "data_dir": data_dir, "out": str(tmp_path)},
                           estimators=["reparam", "meanfield", "stl", "dreg", "score+nn"], repeats=3,
                           baseline_warmup=2, log=logged.append)
    rows = json.loads(paths["json"].read_text())["rows"]
    assert [r["estimator"] for r in rows] == ["reparam", "stl", "dreg", "score+nn"]
    assert any("meanfield" in line and "skipped: elbo='meanfield' is not sound" in line for line in logged)
    assert all(r["encoder_variance"] > 0 and r["decoder_variance"] > 0 for r in rows)
