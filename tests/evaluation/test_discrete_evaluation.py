"""Evaluation of discrete latent sites: E_q[z] as probabilities (never a NaN mean), active units
per latent (Bernoulli: its probability; categorical: summed over its classes), PSIS on weights
that repeat, and the log p(x) estimate of the shipped discrete models."""

import numpy as np
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from support.discrete_user_models import IndexCategoricalVAE

from pyro_vae.config import make_config
from pyro_vae.evaluation import active_units, evaluate_model
from pyro_vae.evaluation.diagnostics import trust_sentence
from pyro_vae.evaluation.iwae import site_classes, site_mean_sums
from pyro_vae.evaluation.psis import _arviz_psislw, psis
from pyro_vae.infer.importance import trace_guide
from pyro_vae.models import build_model
from pyro_vae.models.discrete import OneHotCategorical, expected_value, most_probable


def test_expected_and_most_probable_values_of_discrete_sites():
    logits = torch.tensor([[0.0, 2.0, -1.0], [1.0, 0.0, 0.0]])
    index = dist.Categorical(logits=logits)
    assert torch.isnan(index.mean).all()  # what the figures used to plot
    torch.testing.assert_close(expected_value(index), index.probs)
    assert torch.equal(most_probable(index), torch.tensor([1, 0]))
    bernoulli = dist.Bernoulli(logits=logits).to_event(1)
    torch.testing.assert_close(expected_value(bernoulli), torch.sigmoid(logits))
    assert torch.equal(most_probable(bernoulli), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))  # a tie: 0
    assert torch.isnan(dist.Bernoulli(logits=logits).mode).any()  # torch's mode at the tie
    one_hot = OneHotCategorical(logits=logits).to_event(1).expand((4,))
    assert expected_value(one_hot).shape == (4, 2, 3)
    assert torch.equal(most_probable(one_hot)[0], torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))


def test_active_units_of_categorical_latents_sum_their_classes():
    rng = np.random.default_rng(0)
    n, classes = 400, 4
    varying = rng.dirichlet(np.ones(classes), size=n)  # its class probabilities change with x
    fixed = np.tile([0.25, 0.25, 0.3, 0.2], (n, 1))  # the same for every x
    weak = np.tile([0.25, 0.25, 0.25, 0.25], (n, 1)) + rng.normal(0, 0.07, (n, classes))
    means = np.concatenate([varying, fixed, weak], axis=1)  # 3 latents of 4 classes, as columns
    total = np.var(means, axis=0, ddof=1).reshape(3, classes).sum(-1)
    assert total[2] > 1e-2 > np.var(weak, axis=0, ddof=1).max()  # active only summed over its classes
    assert active_units(means, classes=classes) == 2
    assert active_units(means) == 4  # as 12 Bernoulli units: the varying latent's 4 columns only


def test_site_means_of_an_index_site_are_its_probabilities():
    model = IndexCategoricalVAE(784)
    x = torch.bernoulli(torch.full((6, 784), 0.3))
    guide = trace_guide(model.guide, x, num_samples=3)
    sums = site_mean_sums(guide, 3, 6)
    assert sums["y"].shape == (6, 5) and torch.isfinite(sums["y"]).all()
    torch.testing.assert_close(sums["y"] / 3, torch.softmax(model.encoder(x), -1).detach())
    assert site_classes(guide) == {"y": 5}


def test_psis_on_repeating_weights_says_it_cannot_judge():
    rng = np.random.default_rng(1)
    codes = np.array([-200.0, -201.0, -205.0, -210.0])  # a discrete guide's few distinct weights
    repeated = rng.choice(codes, (3, 200), p=[0.4, 0.3, 0.2, 0.1])
    khat, ess = psis(repeated)
    assert np.isnan(khat).all()
    w = np.exp(repeated - repeated.max(-1, keepdims=True))
    np.testing.assert_allclose(ess, w.sum(-1) ** 2 / (w ** 2).sum(-1))  # Kish's ESS
    continuous = rng.normal(0, 2, (3, 200))
    khat, ess = psis(continuous)  # unchanged where the tail does not repeat
    smoothed, fitted = _arviz_psislw(continuous)
    np.testing.assert_array_equal(khat, fitted)
    np.testing.assert_allclose(ess, 1.0 / np.exp(2 * smoothed).sum(-1))
    everywhere = trust_sentence(np.full(3, np.nan), 200)
    assert "undefined for every data point" in everywhere and "discrete guide" in everywhere
    some = trust_sentence(np.array([0.2, 0.3, np.nan, 0.1]), 200)
    assert some.startswith("PSIS k-hat is undefined for 25.0% of the data points")
    assert "K >= 21" in trust_sentence(np.full(3, np.nan), 10)  # too few samples, as before


@pytest.mark.parametrize("options, units", [
    ({"model": "sbn", "latent_dim": [6, 4]}, {"z1": 6, "z2": 4}),
    ({"model": "categorical", "latent_dim": [3], "categories": 4, "hidden": [16]}, {"z": 3}),
])
def test_log_likelihood_of_the_discrete_models(options, units):
    model = build_model(make_config(options))
    x = torch.bernoulli(torch.full((30, 784), 0.3))
    summary, points = evaluate_model(model, x, num_samples=40, batch_size=10)
    assert np.isfinite(points.log_px).all() and (points.log_px >= points.elbo - 1e-4).all()
    assert summary["latent_dim_per_site"] == units and summary["latent_dim"] == sum(units.values())
    assert 0 <= summary["active_units"] <= summary["latent_dim"]
    assert not any(np.isnan(m).any() for m in points.posterior_mean.values())
    guide = poutine.trace(model.guide).get_trace(x)
    first = next(iter(units))  # the layer next to x: E_q[z | x] is exactly its probabilities
    expected = expected_value(guide.nodes[first]["fn"]).reshape(30, -1).detach().numpy()
    np.testing.assert_allclose(points.posterior_mean[first], expected, rtol=1e-5, atol=1e-7)
