"""A user-defined prior for pyro-vae: independent Laplace coordinates with learned scales."""

import pyro.distributions as dist
import torch
from torch import nn


class LearnedLaplacePrior(nn.Module):
    def __init__(self, latent_dim: int, init_scale: float = 1.0):
        super().__init__()
        # an nn.Parameter: trained with the VAE and saved in its checkpoints
        self.log_scale = nn.Parameter(torch.full((latent_dim,), float(init_scale)).log())

    def forward(self):
        # batch_shape (), event_shape (latent_dim,): .to_event(1) makes the coordinates one event
        loc = torch.zeros_like(self.log_scale)
        return dist.Laplace(loc, self.log_scale.exp()).to_event(1)
