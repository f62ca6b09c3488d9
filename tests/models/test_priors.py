"""Every prior: a normalized density, samples that match it, gradients to its parameters."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from pyro_vae.config import make_config
from pyro_vae.core.errors import ConfigError
from pyro_vae.models import build_model
from pyro_vae.models.decode import sample_images
from pyro_vae.models.priors import PRIORS, kl_description

REPO = Path(__file__).resolve().parents[2]
OPTIONS = {"mog": {"prior_components": 3}, "vamp": {"prior_components": 4},
           "flow": {"flow_depth": 2, "flow_hidden": 8}}

def vae_with(prior, latent_dim=2, **extra):
    cfg = make_config({"prior": prior, "latent_dim": latent_dim, "hidden": [16], **OPTIONS.get(prior, {}), **extra})
    return build_model(cfg, train_data=torch.rand(50, 784))


def weighted_mean(values, weights):
    """Mean of values * weights over the first dimension, and its standard error."""
    terms = values * weights.reshape(-1, *([1] * (values.dim() - 1)))
    return terms.mean(0), terms.std(0) / math.sqrt(len(terms))


@pytest.mark.parametrize("prior", PRIORS)
def test_density_is_normalized_and_samples_match_it(prior):
    """Importance sampling from a wide Student-t(2) proposal r: E_r[p/r] = 1, and E_r[z p/r] and
    E_r[1_box p/r] must match the mean and the box probability of p's own samples."""
    torch.manual_seed(0)
    vae = vae_with(prior)
    n = 200_000
    with torch.no_grad():
        if prior == "flow":  # move it away from the near-identity start
            for parameter in vae.prior.parameters():
                parameter.add_(0.3 * torch.randn_like(parameter))
        p = vae.prior()
        proposal = pyro.distributions.StudentT(2.0, torch.zeros(2), 2.0).to_event(1)
        z = proposal.sample((n,))
        weights = (p.log_prob(z) - proposal.log_prob(z)).exp()
        samples = p.sample((n,))
    mass, mass_se = weighted_mean(torch.ones(n), weights)
    assert abs(mass - 1) < 5 * mass_se + 1e-3, (mass, mass_se)
    mean, mean_se = weighted_mean(z, weights)
    sample_se = samples.std(0) / math.sqrt(n)
    assert ((samples.mean(0) - mean).abs() < 5 * torch.sqrt(mean_se ** 2 + sample_se ** 2)).all()
    box = ((z >= 0) & (z <= 1)).all(-1).float()
    box_mass, box_se = weighted_mean(box, weights)
    in_box = ((samples >= 0) & (samples <= 1)).all(-1).float().mean()
    binomial_se = math.sqrt(box_mass * (1 - box_mass) / n)
    assert abs(in_box - box_mass) < 5 * math.sqrt(box_se ** 2 + binomial_se ** 2)


@pytest.mark.parametrize("prior", ["learned-normal", "mog", "vamp", "flow"])
def test_gradients_reach_every_prior_parameter(prior):
    vae = vae_with(prior, latent_dim=3)
    x = torch.bernoulli(torch.full((8, 784), 0.2))
    # one step first: a flow's zero-initialised output layers pass no gradient back on step one
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-2)
    Trace_ELBO().loss_and_grads(vae.model, vae.guide, x)
    optimizer.step()
    optimizer.zero_grad()
    Trace_ELBO().loss_and_grads(vae.model, vae.guide, x)
    params = dict(vae.prior.named_parameters())
    assert params
    for name, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    if prior == "vamp":  # the pseudo-inputs' posteriors come from the encoder: it learns from p(z) too
        vae.zero_grad(set_to_none=True)
        vae.prior().log_prob(torch.randn(5, 3)).sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vae.encoder.parameters())


@pytest.mark.parametrize("prior, analytic", [
    ("normal", True), ("learned-normal", True), ("laplace", True), ("mog", False), ("vamp", False),
    ("flow", False), ("student-t", False)])
def test_meanfield_kl_message(prior, analytic):
    vae = vae_with(prior, latent_dim=3)
    guide = poutine.trace(vae.guide).get_trace(torch.rand(2, 784))
    model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(torch.rand(2, 784))
    message = kl_description(guide.nodes["z"]["fn"], model.nodes["z"]["fn"])
    assert message.startswith("analytic" if analytic else "Monte Carlo"), message


@pytest.mark.parametrize("prior", PRIORS)
def test_every_prior_generates_images(prior):
    images = sample_images(vae_with(prior), 5, 784)
    assert images.shape == (5, 784) and ((images >= 0) & (images <= 1)).all()


def test_vamp_pseudo_inputs_start_from_data_and_stay_in_range():
    data = torch.bernoulli(torch.full((50, 784), 0.3))
    cfg = make_config({"prior": "vamp", "latent_dim": 2, "hidden": [16], "prior_components": 4})
    u = build_model(cfg, train_data=data).prior.pseudo_inputs
    assert ((u > 0) & (u < 1)).all()
    nearest = torch.cdist(u, data).min(1).values  # each is a noisy copy of a training image
    assert (nearest < 0.1 * math.sqrt(784)).all()


class PickyPrior(torch.nn.Module):
    def __init__(self, latent_dim, scale=1.0):
        super().__init__()
        self.scale = float(scale)  # ValueError for "abc"


class UnbatchedPrior(torch.nn.Module):
    """A mistake users make: forgetting .to_event(1)."""

    def __init__(self, latent_dim):
        super().__init__()
        self.latent_dim = latent_dim

    def forward(self):
        return pyro.distributions.Normal(torch.zeros(self.latent_dim), 1.0)


@pytest.mark.parametrize("overrides, message", [
    ({"prior": "gamma"}, "unknown prior 'gamma'"),
    ({"prior": "nowhere_module:Prior"}, "cannot import nowhere_module"),
    ({"prior": "pyro_vae.models.priors:NoSuchPrior"}, "has no attribute 'NoSuchPrior'"),
    ({"prior": "torch.nn:Identity"}, "forward\\(\\) failed"),
    ({"prior": "test_priors:UnbatchedPrior"}, "must be batch_shape \\(\\) and event_shape \\(2,\\)"),
    ({"prior": "mog", "prior_options": {"a": 1}}, "prior_options are for user-defined priors"),
    ({"prior": "flow", "latent_dim": 1}, "needs a top latent layer of size >= 2"),
    ({"prior": "test_priors:UnbatchedPrior", "prior_options": {"scale": 2}}, "could not be built"),
    ({"prior": "test_priors:PickyPrior", "prior_options": {"scale": "abc"}}, "could not be built.*abc"),
    ({"prior": "broken_prior_module:Prior"}, "importing broken_prior_module failed: ZeroDivisionError"),
])
def test_prior_errors(overrides, message, tmp_path, monkeypatch):
    (tmp_path / "broken_prior_module.py").write_text("1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=message):
        build_model(make_config({"hidden": [8], "latent_dim": 2, **overrides}))


def test_the_docs_show_the_example_prior_verbatim():
    page = (REPO / "docs" / "models.md").read_text()
    assert (REPO / "examples" / "custom_prior.py").read_text().strip() in page


def test_user_defined_prior_end_to_end(data_dir, tmp_path):
    """The docs' example (docs/models.md): train, resume, evaluate, generate, without editing the package."""
    config = tmp_path / "laplace.yaml"
    config.write_text("prior: custom_prior:LearnedLaplacePrior\nprior_options: {init_scale: 0.5}\n")
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO / "examples")}
    common = ["--data-dir", data_dir]

    def run(script, *args):
        return subprocess.run([sys.executable, str(REPO / "scripts" / script), *args, *common],
                              capture_output=True, text=True, timeout=300, env=env)

    trained = run("svi_train.py", "--config", str(config), "--limit-train", "256", "--limit-test", "64",
                  "--hidden", "32", "--latent-dim", "4", "--epochs", "1", "--elbo", "meanfield", "--out", str(out))
    assert trained.returncode == 0, trained.stderr
    assert "prior custom_prior:LearnedLaplacePrior" in trained.stdout
    assert "--elbo meanfield: KL term of site 'z': analytic" in trained.stdout
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert torch.allclose(state["model"]["prior.log_scale"].exp(), torch.tensor(0.5), atol=0.05)
    trust = ["--trust-import", "custom_prior:LearnedLaplacePrior"]  # reopening imports only named code
    assert run("svi_train.py", "--resume", str(out), "--epochs", "2", *trust).returncode == 0
    evaluated = run("evaluate.py", str(out), "--num-samples", "30", "--limit", "16", *trust)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((out / "eval.json").read_text())["num_points"] == 16


@pytest.mark.parametrize("prior", PRIORS)
def test_every_prior_trains_resumes_and_is_evaluated(prior, data_dir, tmp_path):
    from support import quiet

    from pyro_vae.evaluation import evaluate_run
    from pyro_vae.training.trainer import train

    out = tmp_path / "run"
    train({"data_dir": data_dir, "limit_train": 128, "limit_test": 16, "batch_size": 32, "hidden": [32],
           "latent_dim": 3, "prior": prior, **OPTIONS.get(prior, {}), "epochs": 1, "out": str(out)},
          log=quiet, progress=False)
    resumed = train({"resume": str(out), "epochs": 2}, log=quiet, progress=False)
    assert resumed.epoch == 2 and math.isfinite(resumed.history[-1]["test_elbo"])
    summary = evaluate_run(out, num_samples=30, limit=16, data_dir=data_dir, log=quiet, progress=False)
    assert math.isfinite(summary["log_likelihood"]) and summary["num_points"] == 16
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    assert {n for n in saved if n.startswith("prior.")} == {f"prior.{n}" for n in resumed.model.prior.state_dict()}


@pytest.mark.parametrize("flow", ["spline", "affine"])
def test_flow_prior_starts_at_the_standard_normal(flow):
    vae = vae_with("flow", latent_dim=50, flow=flow)
    z = 2 * torch.randn(500, 50)
    with torch.no_grad():
        difference = vae.prior().log_prob(z) - torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    assert difference.abs().max() < 0.05  # float32 spline arithmetic over 50 dims and 4 layers


def test_vamp_density_is_the_mean_of_the_posteriors_at_the_pseudo_inputs():
    vae = vae_with("vamp", latent_dim=3)
    z = torch.randn(7, 3)
    with torch.no_grad():
        loc, scale = vae.encoder(vae.prior.pseudo_inputs)
        per_component = torch.distributions.Normal(loc, scale).log_prob(z[:, None, :]).sum(-1)  # (7, K)
        by_hand = torch.logsumexp(per_component, -1) - math.log(len(loc))
        torch.testing.assert_close(vae.prior().log_prob(z), by_hand)
