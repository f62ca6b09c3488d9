import math
import statistics

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyro_vae.config import Config
from pyro_vae.infer.importance import elbo_per_datapoint, log_importance_weights
from pyro_vae.models import build_model

B, D = 6, 3


@pytest.fixture
def vae():
    return build_model(Config.from_flat(hidden=[16], latent_dim=D))


@pytest.fixture
def x():
    return torch.bernoulli(torch.full((B, 784), 0.2))


def test_guide_sites_and_shapes(vae, x):
    tr = poutine.trace(vae.guide).get_trace(x)
    samples = [n for n, s in tr.nodes.items() if s["type"] == "sample"]
    assert samples == ["data", "z"]  # the plate, then the latent
    z = tr.nodes["z"]
    assert z["value"].shape == (B, D) and z["fn"].event_shape == (D,) and z["fn"].batch_shape == (B,)
    assert [f.name for f in z["cond_indep_stack"]] == ["data"]
    assert z["fn"].has_rsample and not z["is_observed"]


def test_model_sites_and_shapes(vae, x):
    guide_tr = poutine.trace(vae.guide).get_trace(x)
    tr = poutine.trace(poutine.replay(vae.model, trace=guide_tr)).get_trace(x)
    assert [n for n, s in tr.nodes.items() if s["type"] == "sample"] == ["data", "z", "x"]
    assert torch.equal(tr.nodes["z"]["value"], guide_tr.nodes["z"]["value"])
    obs = tr.nodes["x"]
    assert obs["is_observed"] and torch.equal(obs["value"], x)
    assert obs["fn"].batch_shape == (B,) and obs["fn"].event_shape == (784,)
    assert isinstance(obs["fn"].base_dist, dist.Bernoulli)  # BernoulliPixels: Independent(Bernoulli)


def test_parameters_are_registered_under_module_names(vae, x):
    poutine.trace(vae.guide).get_trace(x)
    poutine.trace(vae.model).get_trace(x)
    names = set(pyro.get_param_store().keys())
    assert names == {f"encoder$$${n}" for n, _ in vae.encoder.named_parameters()} | \
                    {f"decoder$$${n}" for n, _ in vae.decoder.named_parameters()}
    for name, p in vae.encoder.named_parameters():  # the store holds the module's own tensors
        assert pyro.param(f"encoder$$${name}") is p


def test_log_weights_match_hand_computation(vae, x):
    """log p(z) + log p(x|z) - log q(z|x) per data point and particle, z drawn from the same seed."""
    K = 4
    pyro.set_rng_seed(1)
    w = log_importance_weights(vae.model, vae.guide, x, num_samples=K)
    loc, scale = vae.encoder(x)
    pyro.set_rng_seed(1)
    z = loc + scale * torch.randn(K, B, D)
    expected = (dist.Normal(0., 1.).log_prob(z).sum(-1)
                + dist.Bernoulli(logits=vae.decoder(z)).log_prob(x).sum(-1)
                - dist.Normal(loc, scale).log_prob(z).sum(-1))
    assert w.shape == (K, B)
    torch.testing.assert_close(w, expected)


def test_test_elbo_matches_pyro_trace_elbo(vae, x):
    """elbo_per_datapoint, summed over the batch, estimates -Trace_ELBO.loss: same mean."""
    R = 200
    ours = elbo_per_datapoint(vae.model, vae.guide, x, num_samples=R).sum().item()
    losses = [Trace_ELBO().loss(vae.model, vae.guide, x) for _ in range(R)]
    se = statistics.stdev(losses) / math.sqrt(R)
    assert abs(ours + statistics.mean(losses)) < 4 * math.sqrt(2) * se


def _estimates(elbo, vae, x, repeats):
    return [elbo.loss(vae.model, vae.guide, x) for _ in range(repeats)]


def test_trace_and_meanfield_estimate_the_same_elbo(vae, x):
    R = 400
    tr = _estimates(Trace_ELBO(max_plate_nesting=1), vae, x, R)
    mf = _estimates(TraceMeanField_ELBO(max_plate_nesting=1), vae, x, R)
    se = math.sqrt((statistics.variance(tr) + statistics.variance(mf)) / R)
    assert abs(statistics.mean(tr) - statistics.mean(mf)) < 4 * se


def test_meanfield_removes_the_kl_noise(vae, x):
    """With a decoder that ignores z, the reconstruction term is constant, so the meanfield
    estimate (analytic KL) has no variance at all, while trace's Monte Carlo KL still does.
    A silent fallback to a Monte Carlo KL (see DESIGN.md) would fail this test."""
    with torch.no_grad():
        vae.decoder.net[0].weight.zero_()
    R = 50
    tr = _estimates(Trace_ELBO(max_plate_nesting=1), vae, x, R)
    mf = _estimates(TraceMeanField_ELBO(max_plate_nesting=1), vae, x, R)
    assert statistics.stdev(tr) > 0.1
    assert statistics.stdev(mf) < 1e-3
    se = statistics.stdev(tr) / math.sqrt(R)
    assert abs(statistics.mean(tr) - mf[0]) < 4 * se


def test_pixel_likelihood_is_the_bernoulli_on_logits():
    from pyro_vae.models.likelihoods import BernoulliPixels

    logits = torch.randn(3, 5, 784) * 4
    x = torch.bernoulli(torch.full((5, 784), 0.3))
    ours, torchs = BernoulliPixels(logits), dist.Bernoulli(logits=logits).to_event(1)
    torch.testing.assert_close(ours.log_prob(x), torchs.log_prob(x))
    assert ours.batch_shape == (3, 5) and ours.event_shape == (784,)
    assert ours.expand((2, 3, 5)).log_prob(x).shape == (2, 3, 5)
    assert isinstance(ours.expand((2, 3, 5)), BernoulliPixels)
    assert set(ours.sample().unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError):  # validation still refuses non-binary observations
        BernoulliPixels(logits, validate_args=True).log_prob(torch.full((5, 784), 0.5))
