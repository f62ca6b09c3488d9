"""log p(x) with the small discrete sites summed exactly (pyro_vae.infer.exact_marginal, and the
estimator of pyro_vae.evaluation.iwae around it): exact where every latent is summed, unbiased in
p(x) where continuous sites are sampled beside it, said so in the results; AIS refuses."""

import math

import numpy as np
import pytest
import torch
from support import quiet
from support.enumerable_toys import BernoulliToy, CategoricalToy, MixedToy

from pyro_vae.core.errors import ConfigError
from pyro_vae.evaluation import describe, estimate_ais, estimate_log_likelihood, evaluate_model
from pyro_vae.infer.exact_marginal import exact_log_weights, exact_sites

TOYS = {"bernoulli": BernoulliToy, "categorical": CategoricalToy}


@pytest.mark.parametrize("num_samples", [1, 30])
@pytest.mark.parametrize("toy", TOYS)
def test_every_latent_summed_gives_log_px_exactly(toy, num_samples):
    toy = TOYS[toy]()
    x = toy.sample_data(12)
    points = estimate_log_likelihood(toy.model, toy.guide, x, num_samples, batch_size=5, log=quiet)
    with torch.no_grad():
        exact = toy.exact_log_likelihood(x).numpy()
        elbo = toy.exact_terms(x)
    np.testing.assert_allclose(points.log_px, exact, rtol=1e-6)
    log_q, log_prior, log_lik = elbo
    np.testing.assert_allclose(points.elbo, (log_q.exp() * (log_prior + log_lik - log_q)).sum(0).numpy(),
                               rtol=1e-5)  # the guide's ELBO, summed exactly too
    assert points.exact_sites == ("z",) and points.exact


def test_continuous_sites_beside_the_sum_leave_each_weight_unbiased_in_px():
    """w_k = sum_y p(x, y, z_{k,y}) / q(z_{k,y} | x, y): its mean over many k is p(x), within
    standard errors, for each image (a guide away from the posterior, wider than it)."""
    toy = MixedToy(guide="wide")
    x = toy.sample_data(5)
    torch.manual_seed(0)
    with torch.no_grad():
        log_w, _, _ = exact_log_weights(toy.model, toy.guide, x, ["y"], 20000)
        ratio = (log_w - toy.exact_log_likelihood(x)).exp()  # w_k / p(x)
    mean, stderr = ratio.mean(0), ratio.std(0) / math.sqrt(len(ratio))
    assert (stderr < 0.05).all() and ((mean - 1).abs() < 4 * stderr).all(), (mean, stderr)


def test_with_the_posterior_as_guide_every_weight_is_px():
    toy = MixedToy(guide="exact")
    x = toy.sample_data(6)
    with torch.no_grad():
        log_w, elbo, _ = exact_log_weights(toy.model, toy.guide, x, ["y"], 7)
        assert torch.allclose(log_w, toy.exact_log_likelihood(x).expand(7, 6), atol=1e-4)
        assert torch.allclose(elbo.sum(1), toy.exact_elbo(x).expand(7), rtol=1e-5)


def test_the_estimate_and_its_diagnostics_with_a_sampled_site_beside_the_sum():
    toy = MixedToy(guide="wide")
    x = toy.sample_data(40)
    summary, points = evaluate_model(toy, x, num_samples=500, batch_size=20, log=quiet)
    exact = toy.exact_log_likelihood(x).detach().numpy()
    assert summary["summed_exactly"] == ["y"] and summary["exact"] is False
    assert abs(summary["log_likelihood"] - exact.mean()) < 0.02  # exact - K-sample bound: small
    assert np.abs(points.log_px - exact).max() < 0.2 and summary["psis"]["khat_max"] < 0.7
    assert "summed exactly over every value of y inside each weight" in describe({**summary, "split": "test"})
    plain, _ = evaluate_model(toy, x, num_samples=500, batch_size=20, log=quiet, exact_discrete=False)
    assert "summed_exactly" not in plain and plain["log_likelihood"] < summary["log_likelihood"]


def test_the_results_say_when_log_px_is_exact():
    toy = CategoricalToy()
    summary, _ = evaluate_model(toy, toy.sample_data(10), num_samples=40, batch_size=10, log=quiet)
    assert summary["summed_exactly"] == ["z"] and summary["exact"] is True
    assert "log p(x) is exact, not an estimate (K = 1 would do)" in describe({**summary, "split": "test"})


def test_a_guide_marked_by_its_user_gives_the_same_exact_log_px():
    x = BernoulliToy().sample_data(8)
    unmarked = estimate_log_likelihood(BernoulliToy().model, BernoulliToy().guide, x, 5, log=quiet)
    marked_toy = BernoulliToy(mark=True)
    marked = estimate_log_likelihood(marked_toy.model, marked_toy.guide, x, 5, log=quiet)
    np.testing.assert_array_equal(marked.log_px, unmarked.log_px)


def test_sites_over_the_limit_are_sampled():
    toy = MixedToy()
    x = toy.sample_data(3)
    assert exact_sites(toy.guide, x) == (["y"], 3, False)
    assert exact_sites(toy.guide, x, limit=2) == ([], 1, False)
    assert exact_sites(BernoulliToy().guide, x[:, :1].expand(3, 6), limit=7) == ([], 1, False)


def test_ais_refuses_discrete_sites_with_its_message():
    toy = BernoulliToy()
    with pytest.raises(ConfigError, match="needs real-valued sites; site 'z' has support"):
        estimate_ais(toy, toy.sample_data(2), num_steps=3, log=quiet)
