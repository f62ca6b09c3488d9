"""A sigmoid belief net small enough to enumerate: its exact ELBO, exact K-sample IWAE bound and
their exact gradients come from summing over every latent state, with autograd.

One layer (``latent_dim=[d1]``):   p(z1) p(x | z1),            q(z1 | x);
two layers (``latent_dim=[d1, d2]``): p(z2) p(z1 | z2) p(x | z1), q(z1 | x) q(z2 | z1),
every factor a product of Bernoullis with affine logits (learned prior logits on the top layer).

``copies`` R: every parameter holds R identical copies (a leading dimension), and data point n of
a batch of R * B rows uses copy n // B. Given the batch ``x.repeat(R, 1)``, the gradient of copy
r is then one independent draw of the estimator on ``x``: R draws from a single vectorized call.
The model follows pyro-vae's site rules, so it is also a user model
(``--model support.bernoulli_toy:BernoulliToy``: ``x_dim``, ``latent_dim``, and the estimator
and baseline keys; Bernoulli sites are never reparameterized, so ``estimator`` only names the
objective that pyro-vae pairs with it, and with ``rebar`` or ``relax`` adds their control variate
to the bottom layer).
"""

import itertools
import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.models.control_variates import CONTROLLED, RelaxControlVariate, control_variate_infer
from pyro_vae.models.estimators import BaselineNet, baseline_infer, has_baseline_network


class BernoulliToy(nn.Module):
    def __init__(self, x_dim=5, latent_dim=(3,), estimator="score", baseline="none", baseline_beta=0.9,
                 copies=1, seed=0, relax_output_std=0.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.sizes, self.copies, self.x_dim = list(latent_dim), copies, x_dim

        def param(*shape, scale=1.0):
            value = scale * torch.randn(shape, generator=g)
            return nn.Parameter(value.expand(copies, *shape).clone())

        d1 = self.sizes[0]
        self.decoder = nn.ParameterDict({"W": param(x_dim, d1), "b": param(x_dim, scale=0.5),
                                         "prior": param(self.sizes[-1], scale=0.5)})
        # 0.7 for 5 pixels; smaller for more (MNIST), so that q is not saturated at the start
        self.encoder = nn.ParameterDict({"A": param(d1, x_dim, scale=0.7 * math.sqrt(5 / x_dim)),
                                         "c": param(d1, scale=0.5)})
        if len(self.sizes) == 2:
            d2 = self.sizes[1]
            self.decoder.update({"V": param(d1, d2), "v": param(d1, scale=0.5)})
            self.encoder.update({"E": param(d2, d1), "e": param(d2, scale=0.5)})
        self.estimator, self.baseline, self.beta = estimator, baseline, baseline_beta
        self.baseline_net = BaselineNet(x_dim, hidden=8) if has_baseline_network(baseline) else None
        # REBAR's and RELAX's control variate for the bottom layer (shared by the copies)
        self.control_variate = RelaxControlVariate(x_dim, d1, network=estimator == "relax", hidden=8) \
            if estimator in CONTROLLED else None
        if self.control_variate is not None and self.control_variate.net is not None and relax_output_std:
            # RELAX's network starts at zero output (as REBAR); a test of its unbiasedness wants it on
            nn.init.normal_(self.control_variate.net[-1].weight, std=relax_output_std, generator=g)

    # -- the Pyro program ------------------------------------------------------------------------
    def _affine(self, inputs, weight, bias):
        """Per-copy ``inputs @ weight.T + bias`` for inputs ``(..., R * B, n)``."""
        grouped = inputs.unflatten(-2, (self.copies, -1))  # (..., R, B, n)
        out = torch.einsum("...rbn,rmn->...rbm", grouped, weight) + bias.unsqueeze(-2)
        return out.flatten(-3, -2)

    def _per_row(self, logits, rows):
        """Per-copy logits ``(R, m)`` -> ``(R * B, m)``."""
        return logits.unsqueeze(1).expand(self.copies, rows // self.copies, -1).flatten(0, 1)

    def _infer(self, x, control_variate=None):
        return {**baseline_infer(self.baseline, x, self.beta, self.baseline_net),
                **control_variate_infer(control_variate, x)}

    def model(self, x):
        pyro.module("decoder", self.decoder)
        d = self.decoder
        with pyro.plate("data", x.shape[0]):
            top = pyro.sample(f"z{len(self.sizes)}",
                              dist.Bernoulli(logits=self._per_row(d["prior"], x.shape[0])).to_event(1))
            z1 = top
            if len(self.sizes) == 2:
                z1 = pyro.sample("z1", dist.Bernoulli(logits=self._affine(top, d["V"], d["v"])).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self._affine(z1, d["W"], d["b"])).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        if self.baseline_net is not None:
            pyro.module("baseline", self.baseline_net)
        if self.control_variate is not None:
            pyro.module("control_variate", self.control_variate)
        e = self.encoder
        with pyro.plate("data", x.shape[0]):
            z1 = pyro.sample("z1", dist.Bernoulli(logits=self._affine(x, e["A"], e["c"])).to_event(1),
                             infer=self._infer(x, self.control_variate))
            if len(self.sizes) == 2:
                pyro.sample("z2", dist.Bernoulli(logits=self._affine(z1, e["E"], e["e"])).to_event(1),
                            infer=self._infer(x))

    # -- exact answers, at copy 0 ----------------------------------------------------------------
    def _states(self):
        """Every joint latent state: ``(S, d1)`` and ``(S, d2)`` (or None)."""
        combos = torch.tensor(list(itertools.product((0.0, 1.0), repeat=sum(self.sizes))))
        d1 = self.sizes[0]
        return combos[:, :d1], (combos[:, d1:] if len(self.sizes) == 2 else None)

    def log_joint_and_guide(self, x):
        """``(S, B)`` log p(x, z) and log q(z | x) of every state z, at copy 0's parameters."""
        d, e = {k: v[0] for k, v in self.decoder.items()}, {k: v[0] for k, v in self.encoder.items()}

        def bern(logits, value):  # (S or B, m) logits against (S, m) values -> (S, B)
            return dist.Bernoulli(logits=logits).log_prob(value).sum(-1)

        z1, z2 = self._states()
        top = z1 if z2 is None else z2
        log_p = dist.Bernoulli(logits=d["prior"]).log_prob(top).sum(-1).unsqueeze(1)  # (S, 1)
        if z2 is not None:
            log_p = log_p + bern(z2 @ d["V"].T + d["v"], z1).unsqueeze(1)
        pixel_logits = z1 @ d["W"].T + d["b"]  # (S, D)
        log_p = log_p + bern(pixel_logits.unsqueeze(1), x.unsqueeze(0))
        log_q = bern((x @ e["A"].T + e["c"]).unsqueeze(0), z1.unsqueeze(1))  # (S, B)
        if z2 is not None:
            log_q = log_q + bern(z1 @ e["E"].T + e["e"], z2).unsqueeze(1)
        return log_p, log_q

    def exact_elbo(self, x):
        """Sum over the rows of ``x`` of E_q[log p(x, z) - log q(z | x)]."""
        log_p, log_q = self.log_joint_and_guide(x)
        return (log_q.exp() * (log_p - log_q)).sum()

    def exact_iwae(self, x, k):
        """Sum over the rows of ``x`` of E[log (1/K) sum_k w_k], z_1..z_K iid from q: all S^K tuples."""
        log_p, log_q = self.log_joint_and_guide(x)
        log_w, states = log_p - log_q, log_q.shape[0]
        tuples = torch.tensor(list(itertools.product(range(states), repeat=k)))  # (S^K, K)
        bound = torch.logsumexp(log_w[tuples], dim=1) - math.log(k)  # (S^K, B)
        return (log_q[tuples].sum(1).exp() * bound).sum()

    def gradient_params(self):
        """Encoder then decoder parameters (not the baseline's or control variate's), in a fixed order."""
        return list(self.encoder.values()) + list(self.decoder.values())
