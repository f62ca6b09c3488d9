"""The likelihoods (pyro_vae.models.likelihoods): each is a proper mass or density on the data's own
space (the discrete ones summed over their whole support, exactly; the continuous ones integrated
by quadrature), the continuous Bernoulli's constant against its closed form, dequantization's
change of variables in bits/dim, and the decoder sizes each one asks for."""

import itertools
import math

import pytest
import torch

from pyro_vae.core.errors import ConfigError
from pyro_vae.models.likelihoods import (
    LIKELIHOODS,
    DiscretizedLogisticMixture,
    bits_per_dim,
    build_likelihood,
    dequantize,
    dequantize_fixed,
    log_jacobian,
)
from pyro_vae.models.likelihoods.logistic import bin_log_mass, mixture_parameter_count

F64 = torch.float64
LEVELS = torch.arange(256, dtype=F64) / 255


@pytest.mark.parametrize("loc, log_scale", [(0.3, -3.0), (-2.0, 0.5), (0.999, -7.0), (0.5, 3.0), (1.7, -5.0),
                                            (0.5, -20.0), (0.25, 1.0)])
def test_discretized_logistic_masses_sum_to_one_over_the_256_levels(loc, log_scale):
    masses = bin_log_mass(LEVELS, torch.tensor(loc, dtype=F64), torch.tensor(log_scale, dtype=F64))
    assert torch.isfinite(masses).all()
    assert masses.logsumexp(0).item() == pytest.approx(0.0, abs=1e-12)


def test_discretized_logistic_is_exact_where_the_density_times_the_width_is_not():
    """At the smallest scale (e^-7, half a level's width) the level under the location holds
    sigma(a) - sigma(-a), a = half-width / scale, and levels hundreds of scales away keep finite
    log-masses near -400 nats (no log of an underflowed difference, no density-times-width switch)."""
    loc, scale = torch.tensor(100 / 255, dtype=F64), math.exp(-7.0)
    masses = bin_log_mass(LEVELS, loc, torch.tensor(-7.0, dtype=F64))
    a = torch.tensor(0.5 / 255 / scale, dtype=F64)
    assert masses[100].exp().item() == pytest.approx((torch.sigmoid(a) - torch.sigmoid(-a)).item(), rel=1e-12)
    assert torch.isfinite(masses).all() and masses[0] < -300
    assert masses.logsumexp(0).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("channels", [1, 2])
def test_logistic_mixture_masses_sum_to_one_over_every_joint_value(channels):
    """Every joint value of a pixel location's channels (256 or 65,536 of them), the channels
    coupled by the mixture's coefficients."""
    torch.manual_seed(0)
    components = 3
    params = 2 * torch.randn(1, mixture_parameter_count(channels, components), 1, 1, dtype=F64)
    mixture = DiscretizedLogisticMixture(params, (channels, 1, 1), components)
    grid = torch.cartesian_prod(*[LEVELS] * channels).reshape(-1, channels)
    log_p = mixture.log_prob(grid)
    assert log_p.logsumexp(0).item() == pytest.approx(0.0, abs=1e-10)
    empirical = mixture.sample((20000,)).mean(0).squeeze(0)  # its sampler draws from that mass
    exact = (log_p.exp().unsqueeze(-1) * grid).sum(0)
    assert torch.allclose(empirical, exact, atol=4 * 0.5 / math.sqrt(20000))


def test_logistic_mixture_couples_rgb_as_pixelcnn_plus_plus():
    """log p(r, g, b) = logsumexp_m [log pi_m + log p_m(r) + log p_m(g | r) + log p_m(b | r, g)],
    green's location shifted by c_1 r, blue's by c_2 r + c_3 g (c = tanh of the raw coefficients)."""
    torch.manual_seed(1)
    m = 2
    params = torch.randn(1, mixture_parameter_count(3, m), 1, 1, dtype=F64)
    x = LEVELS[torch.tensor([17, 200, 90])]
    logits, locs, scales, coeffs = params[0, :, 0, 0].split([m, 3 * m, 3 * m, 3 * m])
    locs, scales, coeffs = locs.view(m, 3), scales.view(m, 3), torch.tanh(coeffs.view(m, 3))
    terms = []
    for k in range(m):
        mu = [locs[k, 0], locs[k, 1] + coeffs[k, 0] * x[0], locs[k, 2] + coeffs[k, 1] * x[0] + coeffs[k, 2] * x[1]]
        terms.append(torch.log_softmax(logits, 0)[k] + sum(bin_log_mass(x[c], mu[c], scales[k, c]) for c in range(3)))
    by_hand = torch.stack(terms).logsumexp(0)
    mixture = DiscretizedLogisticMixture(params, (3, 1, 1), m)
    assert mixture.log_prob(x.view(1, 3)).item() == pytest.approx(by_hand.item(), rel=1e-12)


def test_bernoulli_sums_to_one_over_every_binary_image():
    likelihood = build_likelihood("bernoulli", (1, 1, 3))
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=F64)
    fn = likelihood(torch.randn(1, 3, dtype=F64))
    assert fn.log_prob(images).logsumexp(0).item() == pytest.approx(0.0, abs=1e-12)


def _quadrature(log_density, low=0.0, high=1.0, points=200001):
    x = torch.linspace(low, high, points, dtype=F64)
    return torch.trapezoid(log_density(x).exp(), x).item()


@pytest.mark.parametrize("logit", [0.0, 1e-4, -0.003, 0.7, 5.0, -12.0])
def test_continuous_bernoulli_is_a_density_with_its_closed_form_constant(logit):
    """C(l) = 2 artanh(1 - 2p) / (1 - 2p), p = sigmoid(l) (Loaiza-Ganem & Cunningham, eq. 7), which
    tends to 2 at p = 1/2; the density integrates to 1 on [0, 1], also near l = 0, where the closed
    form is 0/0."""
    likelihood = build_likelihood("continuous-bernoulli", (1, 1, 1))
    fn = likelihood(torch.tensor([[logit]], dtype=F64))
    integral = _quadrature(lambda x: fn.log_prob(x.view(-1, 1)))
    assert integral == pytest.approx(1.0, abs=1e-6)
    p = torch.sigmoid(torch.tensor(logit, dtype=F64))
    constant = 2.0 if abs(logit) < 1e-2 else (2 * torch.atanh(1 - 2 * p) / (1 - 2 * p)).item()
    bernoulli_part = fn.log_prob(torch.tensor([[0.3]], dtype=F64)) - (0.3 * p.log() + 0.7 * (-p).log1p())
    assert bernoulli_part.exp().item() == pytest.approx(constant, rel=1e-3 if abs(logit) < 1e-2 else 1e-9)


@pytest.mark.parametrize("variance", ["pixel", "image", "shared"])
def test_gaussian_is_a_density_and_its_variance_options_share_what_they_say(variance):
    likelihood = build_likelihood("gaussian", (1, 1, 4), {"variance": variance}).double()
    output = torch.randn(2, likelihood.out_features, dtype=F64)
    fn = likelihood(output)
    scale = fn.base_dist.scale
    if variance == "image":
        assert torch.equal(scale, scale[:, :1].expand_as(scale)) and not torch.equal(scale[0], scale[1])
    if variance == "shared":
        assert likelihood.out_channels == 1 and torch.equal(scale[0], scale[1])
        assert any(p is likelihood.log_scale for p in likelihood.parameters())
    loc = fn.base_dist.loc[0, 0].item()
    one = build_likelihood("gaussian", (1, 1, 1), {"variance": "pixel"})
    fn = one(torch.tensor([[loc, -1.0]], dtype=F64))
    assert _quadrature(lambda x: fn.log_prob(x.view(-1, 1)), loc - 30, loc + 30) == pytest.approx(1.0, abs=1e-6)


def test_dequantization_and_its_jacobian_in_bits_per_dim():
    """A uniform density on [0, 1] gives each 8-bit level the mass 1/256: its dequantized
    log-density (0) minus D log 256 is exactly -8 bits per value; dequantized values lie in their
    level's cell; and for a smooth density the bound (E_u log p - log 256) is below the cell's log
    mass (Jensen), by quadrature."""
    values = 784
    assert bits_per_dim(0.0 - log_jacobian(values), values) == pytest.approx(8.0, rel=1e-14)
    x = torch.randint(0, 256, (1000,)).to(F64) / 255
    moved = dequantize(x)
    k = torch.round(x * 255)
    assert ((moved >= k / 256) & (moved < (k + 1) / 256)).all()
    assert torch.equal(dequantize_fixed(x), dequantize_fixed(x))
    density = build_likelihood("continuous-bernoulli", (1, 1, 1))(torch.tensor([[2.0]], dtype=F64))
    for level in (0, 100, 255):
        cell = torch.linspace(level / 256, (level + 1) / 256, 2001, dtype=F64)
        log_p = density.log_prob(cell.view(-1, 1))
        log_mass = math.log(torch.trapezoid(log_p.exp(), cell).item())
        bound = log_p.mean().item() - math.log(256)
        assert bound <= log_mass + 1e-9


def test_decoders_are_sized_by_the_likelihood():
    assert {name: build_likelihood(name, (3, 32, 32)).out_channels for name in LIKELIHOODS.names()} == {
        "bernoulli": 3, "continuous-bernoulli": 3, "gaussian": 6, "logistic": 6, "logistic-mixture": 100}
    assert build_likelihood("logistic-mixture", (1, 28, 28), {"mixtures": 5}).out_features == 15 * 784


def test_unknown_options_are_refused_in_one_line():
    with pytest.raises(ConfigError, match="likelihood 'logistic' takes no option 'variance'"):
        build_likelihood("logistic", (1, 2, 2), {"variance": "pixel"})
    with pytest.raises(ConfigError, match="unknown variance 'global'"):
        build_likelihood("gaussian", (1, 2, 2), {"variance": "global"})
