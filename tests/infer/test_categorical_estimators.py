"""Score-function gradients on one-hot categorical latents are unbiased: their mean over many
draws matches the exact gradient that enumeration gives (``--elbo traceenum`` sums the toy's 9
joint values), within 5 standard errors; VIMCO's matches the exact gradient of the K-sample
bound, summed over every pair of codes."""

import itertools
import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceGraph_ELBO
from support.enumerable_toys import CategoricalToy

from pyro_vae.infer.elbos import VIMCO_ELBO
from pyro_vae.infer.elbos.enumerated import EnumeratedELBO

BATCHES, DRAWS = 40, 2000  # 40 batch means of 2,000 vectorized draws each


def gradients(toy, loss_fn, x) -> torch.Tensor:
    toy.zero_grad(set_to_none=True)
    loss_fn(toy.model, toy.guide, x).backward()
    return torch.cat([p.grad.flatten() for p in toy.encoder.parameters()])


def assert_unbiased(toy, x, estimate, exact):
    draws = torch.stack([gradients(toy, estimate, x) for _ in range(BATCHES)])
    mean, se = draws.mean(0), draws.std(0) / BATCHES ** 0.5
    assert (se < 0.05 * exact.abs().max()).all(), "too few draws to test anything"
    assert ((mean - exact).abs() <= 5 * se + 1e-6).all(), ((mean - exact) / se)


@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceGraph_ELBO], ids=["trace", "tracegraph"])
def test_the_score_function_matches_enumeration_on_categorical_codes(elbo):
    pyro.clear_param_store()
    torch.manual_seed(0)
    toy = CategoricalToy()
    x = toy.sample_data(3)
    exact = gradients(toy, EnumeratedELBO().differentiable_loss, x)
    sampled = elbo(num_particles=DRAWS, vectorize_particles=True, max_plate_nesting=1)

    def estimate(model, guide, x):  # TraceGraph_ELBO has no differentiable_loss: its surrogate
        if isinstance(sampled, TraceGraph_ELBO):
            return sampled._loss_and_surrogate_loss(model, guide, (x,), {})[1]
        return sampled.differentiable_loss(model, guide, x)
    assert_unbiased(toy, x, estimate, exact)


def test_vimco_matches_the_exact_gradient_of_the_bound_on_categorical_codes():
    pyro.clear_param_store()
    torch.manual_seed(0)
    toy, k = CategoricalToy(), 2
    x = toy.sample_data(3)
    values = toy.joint_values()

    def exact_bound(model, guide, x):  # -sum over rows of E_q[log mean_k w_k], every pair of codes
        log_q, log_prior, log_lik = toy.exact_terms(x)  # (V, B)
        log_w = log_prior + log_lik - log_q
        total = 0
        for pair in itertools.product(range(len(values)), repeat=k):
            idx = list(pair)
            total = total + log_q[idx].sum(0).exp() * (torch.logsumexp(log_w[idx], 0) - math.log(k))
        return -total.sum()
    exact = gradients(toy, exact_bound, x)
    vimco = VIMCO_ELBO(num_particles=k)

    def estimate(model, guide, x):  # DRAWS independent K-sample bounds at once
        return vimco.differentiable_loss(model, guide, x.repeat(DRAWS, 1)) / DRAWS
    assert_unbiased(toy, x, estimate, exact)
