"""Tiny discrete-latent VAEs whose ELBO terms can be enumerated by hand, for the relaxation tests.

:class:`BernoulliToy`: z of D bits, p(z) Bernoulli with learned logits, p(x | z) Bernoulli pixels
with logits z W + b, q(z | x) Bernoulli with logits x A + c. :class:`CategoricalToy`: N one-hot
latents of C classes, the same shapes otherwise. Both follow pyro-vae's site rules ("data" plate
at dim -1, sites "z" and "x"), so the shipped objectives and the trainer take them; their
:meth:`codes` list every value of z, for sums over the whole support.
"""

import itertools

import pyro
import pyro.distributions as dist
import torch
from torch import nn


class _Toy(nn.Module):
    def __init__(self, x_dim: int, latent_shape: tuple[int, ...], seed: int, scale: float, dtype=torch.float32):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        size = int(torch.tensor(latent_shape).prod())

        def param(*shape):
            return nn.Parameter(scale * torch.randn(*shape, generator=generator, dtype=dtype))

        self.latent_shape = latent_shape
        self.prior_logits = param(*latent_shape)
        self.decoder_weight, self.decoder_bias = param(size, x_dim), param(x_dim)
        self.encoder_weight, self.encoder_bias = param(x_dim, size), param(size)

    def decoder_logits(self, z: torch.Tensor) -> torch.Tensor:
        return z.reshape(*z.shape[:z.dim() - len(self.latent_shape)], -1) @ self.decoder_weight + self.decoder_bias

    def encoder_logits(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.encoder_weight + self.encoder_bias).reshape(*x.shape[:-1], *self.latent_shape)

    def model(self, x: torch.Tensor) -> None:
        pyro.module("toy", self)  # Trace_ELBO's eager step differentiates only where params are registered
        with pyro.plate("data", x.shape[0]):
            prior = self.prior_logits.expand(x.shape[0], *self.latent_shape)
            z = pyro.sample("z", self.latent(prior))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder_logits(z)).to_event(1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        pyro.module("toy", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.latent(self.encoder_logits(x)))

    def exact(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per data point, summed over every code z: ``reconstruction`` E_q[log p(x | z)], ``kl``
        KL(q(z | x) || p(z)) and ``elbo`` (their difference)."""
        codes = self.codes().to(x.dtype)  # (M, *latent_shape)
        q = self.latent(self.encoder_logits(x).unsqueeze(0))  # batch (1, B)
        p = self.latent(self.prior_logits)
        log_q = q.log_prob(codes.unsqueeze(1))  # (M, B)
        log_p = p.log_prob(codes).unsqueeze(1)
        log_lik = dist.Bernoulli(logits=self.decoder_logits(codes).unsqueeze(1)).to_event(1).log_prob(x)
        weights = log_q.exp()
        reconstruction = (weights * log_lik).sum(0)
        kl = (weights * (log_q - log_p)).sum(0)
        return {"reconstruction": reconstruction, "kl": kl, "elbo": reconstruction - kl}


class BernoulliToy(_Toy):
    """``latent_dim``: [D], the bits of z (a list, as pyro-vae passes it to a user model)."""

    def __init__(self, x_dim: int = 5, latent_dim=(3,), seed: int = 0, scale: float = 1.0, dtype=torch.float32):
        super().__init__(x_dim, (latent_dim[-1],), seed, scale, dtype)

    @staticmethod
    def latent(logits: torch.Tensor):
        return dist.Bernoulli(logits=logits).to_event(1)

    def codes(self) -> torch.Tensor:
        return torch.tensor(list(itertools.product([0.0, 1.0], repeat=self.latent_shape[0])))


class CategoricalToy(_Toy):
    """``latent_dim``: [N], the one-hot latents of ``classes`` classes each."""

    def __init__(self, x_dim: int = 5, latent_dim=(2,), classes: int = 3, seed: int = 0, scale: float = 1.0,
                 dtype=torch.float32):
        super().__init__(x_dim, (latent_dim[-1], classes), seed, scale, dtype)

    @staticmethod
    def latent(logits: torch.Tensor):
        return dist.OneHotCategorical(logits=logits).to_event(1)

    def codes(self) -> torch.Tensor:
        latents, classes = self.latent_shape
        eye = torch.eye(classes)
        return torch.stack([eye[list(c)] for c in itertools.product(range(classes), repeat=latents)])


class TwoLayerBernoulliToy(nn.Module):
    """Two layers of bits, as the two-layer sigmoid belief net: p(z2) p(z1 | z2) p(x | z1), guide
    q(z1 | x) q(z2 | z1) (so q(z2 | .) depends on the sampled z1). ``latent_dim``: [D1, D2]."""

    def __init__(self, x_dim: int = 5, latent_dim=(3, 2), seed: int = 0, scale: float = 1.0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        bottom, top = latent_dim

        def linear(n_in, n_out):
            layer = nn.Linear(n_in, n_out)
            with torch.no_grad():
                layer.weight.copy_(scale * torch.randn(n_out, n_in, generator=generator))
                layer.bias.copy_(scale * torch.randn(n_out, generator=generator))
            return layer

        self.prior_logits = nn.Parameter(scale * torch.randn(top, generator=generator))
        self.upper, self.decoder = linear(top, bottom), linear(bottom, x_dim)
        self.encoder, self.encoder_upper = linear(x_dim, bottom), linear(bottom, top)

    def model(self, x: torch.Tensor) -> None:
        pyro.module("toy", self)
        with pyro.plate("data", x.shape[0]):
            z2 = pyro.sample("z2", dist.Bernoulli(logits=self.prior_logits.expand(x.shape[0], -1)).to_event(1))
            z1 = pyro.sample("z1", dist.Bernoulli(logits=self.upper(z2)).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z1)).to_event(1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        pyro.module("toy", self)
        with pyro.plate("data", x.shape[0]):
            z1 = pyro.sample("z1", dist.Bernoulli(logits=self.encoder(x)).to_event(1))
            pyro.sample("z2", dist.Bernoulli(logits=self.encoder_upper(z1)).to_event(1))
