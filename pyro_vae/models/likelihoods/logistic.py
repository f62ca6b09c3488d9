"""Discretized logistic likelihoods on 8-bit data: the mass of each of the 256 grey levels
(Salimans et al. 2017, PixelCNN++; the output of NVAE and IAF's decoders).

Data are floats ``k / 255``, k in 0..255. Level k owns the interval [k - 1/2, k + 1/2] / 255 of a
logistic with location ``loc`` and scale ``s``, except the edges: level 0 owns everything below
1/2 / 255 and level 255 everything above 254.5 / 255, so the 256 masses sum to 1 exactly. A bin's
mass is computed without cancellation, from sigma(a) - sigma(b) = sigma(a) sigma(-b) (1 - e^(b - a)),
in logs: finite for any location and scale (PixelCNN++'s code switches to a density times the bin
width where the difference underflows; this form needs no switch).

:class:`DiscretizedLogistic`: every value independent (2 parameters per value: location, log-scale).
:class:`DiscretizedLogisticMixture`: per pixel *location* a mixture of M components over all its
channels, each channel's location shifted by a linear function of the channels before it (the
PixelCNN++ / NVAE form: red, then green given red, then blue given both), so colour channels are
not independent. Parameters per location: M mixture logits, and per component C locations, C
log-scales and C (C - 1) / 2 coupling coefficients (tanh-squashed), 10 M for RGB and 3 M for grey.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution, constraints

from pyro_vae.models.likelihoods.base import Likelihood

LEVELS = 256
HALF_BIN = 0.5 / (LEVELS - 1)  # half the width of a level's interval, in [0, 1] units
MIN_LOG_SCALE = -7.0  # as PixelCNN++: a scale below e^-7 puts all mass on one level already


def bin_log_mass(x: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(level of x) under a logistic(loc, e^log_scale) discretized to 256 levels on [0, 1],
    the edge levels taking the tails (see the module docstring)."""
    log_scale = log_scale.clamp(min=MIN_LOG_SCALE)
    inverse_scale = torch.exp(-log_scale)
    upper = (x + HALF_BIN - loc) * inverse_scale  # a: standardized upper edge of the bin
    lower = (x - HALF_BIN - loc) * inverse_scale  # b
    width = 2 * HALF_BIN * inverse_scale  # a - b > 0
    # each log-sigmoid once: they are most of the cost of a K = 1000 evaluation
    below, above = F.logsigmoid(upper), F.logsigmoid(-lower)  # log P(level <= k), log P(level >= k)
    middle = below + above + torch.log(-torch.expm1(-width))
    level = torch.round(x * (LEVELS - 1))
    return torch.where(level <= 0, below, torch.where(level >= LEVELS - 1, above, middle))


def level_mean(loc: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """The exact mean sum_k (k / 255) P(k) of the discretized logistic, elementwise (256 masses
    per value: for figures, not for training)."""
    levels = torch.arange(LEVELS, dtype=loc.dtype, device=loc.device) / (LEVELS - 1)
    masses = bin_log_mass(levels, loc.unsqueeze(-1), log_scale.unsqueeze(-1)).exp()
    return (masses * levels).sum(-1)


def _levels(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * (LEVELS - 1)) / (LEVELS - 1)


class _OnLevels(TorchDistribution):
    """Values on the 256 levels k / 255 of [0, 1]; ``event_shape``: the flattened image (C H W)."""

    support = constraints.unit_interval  # (the levels of it: checked by the data, not here)
    has_enumerate_support = False

    def __init__(self, image_shape: tuple[int, int, int], batch_shape, validate_args=None):
        self.image_shape = tuple(image_shape)
        super().__init__(batch_shape, torch.Size([math.prod(self.image_shape)]), validate_args=validate_args)

    def _image(self, value: torch.Tensor) -> torch.Tensor:
        return value.reshape(*value.shape[:-1], *self.image_shape)


class DiscretizedLogistic(_OnLevels):
    """Independent discretized logistics, one per value: ``loc`` and ``log_scale`` of shape
    ``(..., C H W)`` (locations on the [0, 1] scale of the data)."""

    arg_constraints = {"loc": constraints.real, "log_scale": constraints.real}

    def __init__(self, loc: torch.Tensor, log_scale: torch.Tensor, image_shape, validate_args=None):
        self.loc, self.log_scale = torch.broadcast_tensors(loc, log_scale)
        super().__init__(image_shape, self.loc.shape[:-1], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape) + self.event_shape
        return DiscretizedLogistic(self.loc.expand(shape), self.log_scale.expand(shape), self.image_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return bin_log_mass(value, self.loc, self.log_scale).sum(-1)

    @property
    def mean(self) -> torch.Tensor:
        """The exact mean of every value (:func:`level_mean`)."""
        return level_mean(self.loc, self.log_scale)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            shape = self._extended_shape(sample_shape)
            u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device).clamp(1e-6, 1 - 1e-6)
            return _levels(self.loc.expand(shape) + self.log_scale.clamp(min=MIN_LOG_SCALE).exp().expand(shape)
                           * (u.log() - (-u).log1p()))


def mixture_parameter_count(channels: int, components: int) -> int:
    """Parameters per pixel location of :class:`DiscretizedLogisticMixture`."""
    return components * (1 + 2 * channels + channels * (channels - 1) // 2)


class DiscretizedLogisticMixture(_OnLevels):
    """Per pixel location, a mixture of ``components`` discretized logistics over its C channels,
    channel c's location shifted by sum_{c' < c} coefficient x_c' (see the module docstring).

    ``params``: ``(..., P, H, W)`` with P = :func:`mixture_parameter_count` (C, M), laid out as
    [M mixture logits | M C locations | M C log-scales | M C (C - 1) / 2 raw coefficients], each
    block component-major."""

    arg_constraints = {"params": constraints.real}

    def __init__(self, params: torch.Tensor, image_shape, components: int, validate_args=None):
        channels, height, width = image_shape
        expected = mixture_parameter_count(channels, components)
        if params.shape[-3] != expected:
            raise ValueError(f"a mixture of {components} over {channels} channels takes {expected} "
                             f"parameters per location, got {params.shape[-3]}")
        self.params, self.components = params, components
        super().__init__(image_shape, params.shape[:-3], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape) + self.params.shape[-3:]
        return DiscretizedLogisticMixture(self.params.expand(shape), self.image_shape, self.components)

    def _split(self):
        """(logits (..., M, H, W), locs and log-scales (..., M, C, H, W), coefficients (..., M, C(C-1)/2, H, W))."""
        channels, height, width = self.image_shape
        m, lead = self.components, self.params.shape[:-3]
        pairs = channels * (channels - 1) // 2
        logits, locs, log_scales, coefficients = self.params.split(
            [m, m * channels, m * channels, m * pairs], dim=-3)
        def shaped(t, k):
            return (t.reshape(*lead, m, k, height, width))
        return logits, shaped(locs, channels), shaped(log_scales, channels), torch.tanh(shaped(coefficients, pairs))

    def _coupled_locs(self, x: torch.Tensor, locs: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
        """Each channel's location plus the coupling to the channels before it, given ``x``
        (..., 1, C, H, W) (the observed values, or a sample's)."""
        channels = self.image_shape[0]
        shifted, pair = [locs[..., 0, :, :]], 0
        for c in range(1, channels):
            shift = sum(coefficients[..., pair + j, :, :] * x[..., j, :, :] for j in range(c))
            shifted.append(locs[..., c, :, :] + shift)
            pair += c
        return torch.stack(torch.broadcast_tensors(*shifted), dim=-3)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        x = self._image(value).unsqueeze(-4)  # (..., 1, C, H, W): broadcast over components
        logits, locs, log_scales, coefficients = self._split()
        per_channel = bin_log_mass(x, self._coupled_locs(x, locs, coefficients), log_scales)
        joint = per_channel.sum(-3) + logits.log_softmax(-3)  # (..., M, H, W)
        return joint.logsumexp(-3).flatten(-2).sum(-1)

    @property
    def mean(self) -> torch.Tensor:
        """Channel by channel, the mixture's exact mean given the earlier channels at their means
        (the marginal mean for one channel; flattened like the data)."""
        logits, locs, log_scales, coefficients = self._split()
        weights = logits.softmax(-3)  # (..., M, H, W)
        means = torch.zeros_like(locs[..., 0, :, :, :])  # (..., C, H, W)
        for c in range(self.image_shape[0]):
            coupled = self._coupled_locs(means.unsqueeze(-4), locs, coefficients)[..., c, :, :]
            channel = (weights * level_mean(coupled, log_scales[..., c, :, :])).sum(-3)
            means = torch.cat([means[..., :c, :, :], channel.unsqueeze(-3), means[..., c + 1:, :, :]], -3)
        return means.flatten(-3)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """A component per location (Gumbel-max), then the channels in order, each given the ones
        before it."""
        with torch.no_grad():
            logits, locs, log_scales, coefficients = self._split()
            shape = torch.Size(sample_shape) + logits.shape
            gumbel = -(-torch.rand(shape, dtype=logits.dtype, device=logits.device).clamp(1e-10, 1).log()).log()
            chosen = F.one_hot((logits + gumbel).argmax(-3), self.components).movedim(-1, -3).to(logits.dtype)
            def pick(t):
                return ((t * chosen.unsqueeze(-3)).sum(-4))  # (..., M, k, H, W) -> (..., k, H, W)
            loc, log_scale, coefficient = pick(locs), pick(log_scales), pick(coefficients)
            channels = self.image_shape[0]
            x = torch.zeros_like(loc)
            for c in range(channels):
                coupled = self._coupled_locs(x.unsqueeze(-4), loc.unsqueeze(-4), coefficient.unsqueeze(-4)).squeeze(-4)
                u = torch.rand_like(loc[..., c, :, :]).clamp(1e-6, 1 - 1e-6)
                noise = log_scale[..., c, :, :].clamp(min=MIN_LOG_SCALE).exp() * (u.log() - (-u).log1p())
                x[..., c, :, :] = _levels(coupled[..., c, :, :] + noise)
            return x.flatten(-3)


class Logistic(Likelihood):
    """``--likelihood logistic``: an independent discretized logistic per value (a location and a
    log-scale per value: 2 outputs per channel and location); scores 8-bit levels."""

    data = "levels"

    def channels_per_location(self, channels: int) -> int:
        return 2 * channels

    def distribution(self, output: torch.Tensor) -> DiscretizedLogistic:
        params = self.parameters_of(output)
        channels = self.image_shape[0]
        return DiscretizedLogistic(params[..., :channels, :, :].flatten(-3),
                                   params[..., channels:, :, :].flatten(-3), self.image_shape)

    def output_bias(self, mean_image: torch.Tensor) -> torch.Tensor:
        bias = super().output_bias(mean_image)
        channels = self.image_shape[0]
        bias[:channels] = mean_image.reshape(self.image_shape)
        bias[channels:] = -2.0
        return bias


class LogisticMixture(Likelihood):
    """``--likelihood logistic-mixture --mixtures M``: per pixel location a mixture of M
    discretized logistics over the channels, coupled (:class:`DiscretizedLogisticMixture`);
    scores 8-bit levels."""

    data = "levels"

    def __init__(self, image_shape, mixtures: int = 10):
        super().__init__(image_shape)
        if mixtures < 1:
            raise ValueError(f"mixtures must be at least 1, got {mixtures}")
        self.mixtures = mixtures

    def channels_per_location(self, channels: int) -> int:
        return mixture_parameter_count(channels, self.mixtures)

    def distribution(self, output: torch.Tensor) -> DiscretizedLogisticMixture:
        return DiscretizedLogisticMixture(self.parameters_of(output), self.image_shape, self.mixtures)

    def output_bias(self, mean_image: torch.Tensor) -> torch.Tensor:
        """Every component's locations spread around the mean image (so that they differ from the
        start), log-scales at -2, coefficients and mixture logits at 0."""
        bias = super().output_bias(mean_image)
        channels, m = self.image_shape[0], self.mixtures
        mean = mean_image.reshape(self.image_shape)
        offsets = torch.linspace(-0.1, 0.1, m, dtype=bias.dtype) if m > 1 else torch.zeros(1, dtype=bias.dtype)
        locs = (mean.unsqueeze(0) + offsets.view(m, 1, 1, 1)).reshape(m * channels, *mean.shape[1:])
        bias[m:m + m * channels] = locs
        bias[m + m * channels:m + 2 * m * channels] = -2.0
        return bias

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mixtures={self.mixtures}"
