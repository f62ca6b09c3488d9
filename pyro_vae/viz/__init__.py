"""Figures only: learning curves, samples, reconstructions, latent space, manifold,
comparisons (:mod:`.plots`).
"""
