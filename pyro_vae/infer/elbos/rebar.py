"""REBAR (Tucker et al. 2017) and RELAX (Grathwohl et al. 2018): unbiased gradients of the ELBO
for a guide with one layer of Bernoulli latents, with a control variate that is trained to
minimize the estimator's variance.

For logits a, one uniform u gives z = a + logit(u) and the code b = 1[z > 0] (a draw from q); a
second uniform v gives z~, a draw of z *given* b (u redrawn on b's side of 1 - sigmoid(a)). With
f = log p(x, b) - log q(b | x), the ELBO's integrand, and a control variate c of a relaxed code,

    grad_a = (f(b) - c(z~)) d/da log q(b) + d/da c(z) - d/da c(z~),

unbiased for any c (z and z~ have the same distribution, and E[c(z~) d log q(b)] + E[d c(z~)]
= E[d c(z)]). REBAR's c is eta * f at the Concrete relaxation sigmoid(z / lambda): f of a
continuous code, its Bernoulli log-densities read as z log sigmoid(a) + (1 - z) log sigmoid(-a);
RELAX adds a network r_rho (:class:`~pyro_vae.models.control_variates.RelaxControlVariate`, which
the guide passes in its site's ``infer`` dict). eta, lambda and rho get the gradient of the
estimate's squared norm (its variance, up to a term that does not depend on them: the estimate
is unbiased for any of them), summed over the batch and the latent units: the variance of the
*logits'* gradient, as the authors' autograd code takes it, not of the encoder weights' (a
cheaper second backward pass through the model, where theirs goes through the encoder too).

The guide runs once under a particles plate of three: particle 0 takes b, particle 1 the relaxed
sigmoid(z / lambda), particle 2 sigmoid(z~ / lambda) (:class:`RelaxedCodes`); the model is
replayed at all three (so f is evaluated three times, as in the papers). The model's parameters
get grad log p(x, b) at particle 0. Pyro's validation is off for these evaluations: relaxed codes
are not in a Bernoulli's support, on purpose.
"""

from __future__ import annotations

from typing import Callable

import pyro
import torch
import torch.nn.functional as F
from pyro.poutine.messenger import Messenger

from pyro_vae.infer.elbos.antithetic import bernoulli_layers, per_unit
from pyro_vae.infer.elbos.base import PerDatapointELBO, with_value
from pyro_vae.infer.importance import ParticleTraces, data_scale, log_density, replay_model, trace_guide
from pyro_vae.models.sites import base_distribution

PARTICLES = 3  # b, the relaxed z, the relaxed z~


def uniform(shape, like: torch.Tensor) -> torch.Tensor:
    """Uniforms strictly inside (0, 1), so that their logits are finite."""
    tiny = torch.finfo(like.dtype).eps
    return torch.rand(shape, dtype=like.dtype, device=like.device).clamp(tiny, 1 - tiny)


class RelaxedCodes(Messenger):
    """Sets the values of the guide's Bernoulli site ``name`` for the three particles (see the
    module docstring) from noise it draws itself: two ``rand`` calls, u then v, from torch's
    global generator. Records the site's logits (the tensor the guide's log-density reads, so a
    gradient with respect to it sees every path), the code b and the control variate."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.record: dict = {}

    def _pyro_sample(self, msg):
        if msg["is_observed"] or msg["name"] != self.name:
            return
        logits = base_distribution(msg["fn"]).logits  # (3, B, D): broadcast by the particles plate
        if logits.shape[0] != PARTICLES:
            raise ValueError(f"REBAR/RELAX: the logits of site {self.name!r} have shape "
                             f"{tuple(logits.shape)}; the guide must compute them per data point")
        module = msg["infer"].get("control_variate")
        if module is None:
            raise ValueError(f"REBAR/RELAX: the guide's site {self.name!r} has no control variate: pass "
                             "infer=control_variate_infer(RelaxControlVariate(...), x) "
                             "(pyro_vae.models.control_variates)")
        u, v = uniform(logits.shape[1:], logits), uniform(logits.shape[1:], logits)
        noise = torch.logit(u)  # a standard logistic draw, shared by b and z
        z = logits[1] + noise
        b = (logits[0].detach() + noise > 0).to(logits.dtype)
        # z~ | b: u redrawn above (b = 1) or below (b = 0) 1 - theta, i.e. a + logit(1 - theta + v theta)
        # or a + logit(v (1 - theta)), written in log space: 1 - theta + v theta rounds to 1 in float32
        # for a below about -16, and its logit would be inf (a NaN gradient in training)
        a, noise_v = logits[2], torch.logit(v)
        z_given_b = b * F.softplus(noise_v - F.logsigmoid(-a)) - (1 - b) * F.softplus(-noise_v - F.logsigmoid(a))
        temperature = module.temperature
        msg["value"] = torch.stack([b, torch.sigmoid(z / temperature), torch.sigmoid(z_given_b / temperature)])
        msg["done"] = True
        self.record = {"logits": logits, "b": b, "module": module,
                       "input": msg["infer"].get("control_variate_input")}


class REBAR_ELBO(PerDatapointELBO):
    """The ELBO with REBAR's gradient, or RELAX's where the site's control variate has a network.
    One sample per image (``num_particles`` 1)."""

    def __init__(self, num_particles: int = 1, **kwargs):
        if num_particles != 1:
            raise ValueError("REBAR and RELAX here draw one sample per image: num_particles must be 1")
        super().__init__(num_particles=1, **kwargs)
        self._layers: dict[Callable, str] = {}

    def layer(self, guide: Callable, args, kwargs) -> str:
        """The guide's one Bernoulli site, found once per guide (a run that changes no state)."""
        if guide not in self._layers:
            layers = bernoulli_layers(guide, args, kwargs)
            if len(layers) != 1:
                raise ValueError(f"REBAR and RELAX here take a guide with one Bernoulli site; this one has "
                                 f"{len(layers)} ({', '.join(layers)})")
            self._layers[guide] = layers[0]
        return self._layers[guide]

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        name = self.layer(guide, args, kwargs)
        options = {"num_samples": PARTICLES, "max_plate_nesting": self.max_plate_nesting}
        codes = RelaxedCodes(name)
        with pyro.validation_enabled(False):
            with codes:
                guide_trace = trace_guide(guide, *args, **options, **kwargs)
            model_trace = replay_model(model, guide_trace, *args, **options, **kwargs)
            log_p = log_density(model_trace).reshape(PARTICLES, -1)  # (3, B)
            f = log_p - log_density(guide_trace).reshape(PARTICLES, -1)
        scale = data_scale(ParticleTraces(model_trace, guide_trace, PARTICLES))
        if not torch.is_grad_enabled():  # the value alone (``loss``): no gradient to estimate
            return -scale * f[0].sum()
        record = codes.record
        module, logits, b = record["module"], record["logits"], record["b"]
        relaxed = guide_trace.nodes[name]["value"][1:]
        c = module(f[1:], relaxed.reshape(2, *b.shape), record["input"])  # c(z), c(z~)
        (dc,) = torch.autograd.grad(c[0].sum() - c[1].sum(), logits, create_graph=True)
        score = (b - torch.sigmoid(logits[0])).detach()  # d/da log q(b)
        gradient = per_unit(f[0].detach() - c[1], b) * score + dc[1] + dc[2]
        tuned = [p for p in module.parameters() if p.requires_grad]
        variance_grads = torch.autograd.grad(gradient.pow(2).sum(), tuned, allow_unused=True, retain_graph=True)
        tuning = sum((g.detach() * p).sum() for g, p in zip(variance_grads, tuned) if g is not None)
        surrogate = log_p[0] + (gradient.detach() * logits[0]).flatten(1).sum(-1)
        return with_value(-scale * f[0].sum(), -scale * surrogate.sum() + tuning)
