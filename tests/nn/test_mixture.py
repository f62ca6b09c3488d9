"""The mixture density by matrix products (pyro_vae.nn.mixture) against MixtureSameFamily."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae.nn.mixture import DiagonalNormalMixture, mixture_log_prob


def reference(logits, locs, scales):
    return dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(locs, scales).to_event(1))


@pytest.mark.parametrize("scale", [1.0, 0.05, 0.01])
def test_equals_mixture_same_family_within_1e4_nats(scale):
    """Small scales are where float32 cancellation in the expanded square would show: values near
    a component mean, |z| / s up to 300."""
    g = torch.Generator().manual_seed(0)
    k, d = 500, 40
    locs = 3 * torch.randn(k, d, generator=g)
    scales = scale * (0.5 + torch.rand(k, d, generator=g))
    logits = torch.randn(k, generator=g)
    near = locs[torch.randint(k, (64,), generator=g)] + scale * torch.randn(64, d, generator=g)
    far = 3 * torch.randn(64, d, generator=g)
    z = torch.cat([near, far]).reshape(2, 64, d)  # leading (particles, batch) dims
    ours = mixture_log_prob(z, logits, locs, scales)
    exact = reference(logits.double(), locs.double(), scales.double()).log_prob(z.double())
    assert ours.dtype == torch.float32 and ours.shape == (2, 64)
    error = (ours.double() - exact).abs()
    assert error[0].max() < 1e-4  # near a component: log-densities of order 100
    # far from all (log-densities down to -1e6): as close as float32 can hold the number
    assert (error[1] / exact[1].abs()).max() < 2 * torch.finfo(torch.float32).eps


def test_gradients_equal_mixture_same_family():
    g = torch.Generator().manual_seed(1)
    params = [torch.randn(7, generator=g), torch.randn(7, 5, generator=g),
              0.1 + torch.rand(7, 5, generator=g), torch.randn(3, 4, 5, generator=g)]
    ours = [p.double().requires_grad_() for p in params]
    theirs = [p.double().requires_grad_() for p in params]
    mixture_log_prob(ours[3], *ours[:3]).sum().backward()
    reference(*theirs[:3]).log_prob(theirs[3]).sum().backward()
    for a, b in zip(ours, theirs):
        assert torch.allclose(a.grad, b.grad, rtol=1e-9, atol=1e-9)


def test_broadcasts_under_a_plate_and_samples_like_a_mixture():
    torch.manual_seed(0)
    d = DiagonalNormalMixture(torch.tensor([0.0, 2.0]), torch.tensor([[-5.0, 0.0], [5.0, 0.0]]),
                              torch.ones(2, 2))

    def model():
        with pyro.plate("data", 4):
            return pyro.sample("z", d)

    trace = pyro.poutine.trace(model).get_trace()
    site = trace.nodes["z"]
    assert isinstance(site["fn"], DiagonalNormalMixture) and site["fn"].batch_shape == (4,)
    assert torch.allclose(site["fn"].log_prob(site["value"]), reference(*d._parameters).log_prob(site["value"]))
    n = 20000
    right = (d.sample((n,))[:, 0] > 0).double().mean()
    p = torch.softmax(torch.tensor([0.0, 2.0]), 0)[1].item()
    assert abs(right - p) < 4 * (p * (1 - p) / n) ** 0.5  # the mixing weights, to 4 standard errors


def test_refuses_batched_parameters():
    with pytest.raises(ValueError, match="logits \\(K,\\), locs and scales \\(K, D\\)"):
        DiagonalNormalMixture(torch.zeros(2, 3), torch.zeros(2, 3, 4), torch.ones(2, 3, 4))
