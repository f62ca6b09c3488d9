#!/usr/bin/env python
"""Time one training step of pyro-vae against hand-written PyTorch, interleaved in one process.

Both sides train the same networks (the reference is a deep copy of pyro-vae's encoder and
decoder) with the same optimizer on the same fixed binary minibatch. The Pyro side is exactly the
step ``scripts/svi_train.py`` runs (:class:`pyro_vae.train.SVIStep`: ``ELBO.loss_and_grads`` and
an Adam step); the reference computes the ELBO by hand with the analytic Gaussian KL.

Timing: after warm-up, ``--rounds`` rounds each time ``--steps`` consecutive steps of every
variant, in a fresh random order per round, so that drifts in machine speed hit all variants
alike. Reported: the median time per step and the median over rounds of the per-round ratio
to the reference. Target (issue 2): ``trace`` / reference <= 1.15 on CPU at batch 128.

    python benchmarks/train_step.py                   # default MLP, batch 128, CPU
    python benchmarks/train_step.py --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import time

import pyro
import torch
from torch.nn import functional as F

from pyro_vae.config import Config
from pyro_vae.objectives import build_objective
from pyro_vae.train import SVIStep, build_vae, make_optimizer, resolve_device


class ReferenceStep:
    """Hand-written VAE step: reparameterized sample, Bernoulli log-likelihood, analytic KL."""

    def __init__(self, encoder, decoder, optimizer):
        self.encoder, self.decoder, self.optimizer = encoder, decoder, optimizer

    def __call__(self, x):
        loc, scale = self.encoder(x)
        z = loc + scale * torch.randn_like(loc)
        logits = self.decoder(z)
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1).sum(-1) - scale.log().sum(-1)
        loss = (nll + kl).sum()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        return loss.item()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--variants", nargs="+", default=["trace", "meanfield", "trace+jit", "meanfield+jit"],
                   help="ELBO names, '+jit' for the JIT variant")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--steps", type=int, default=20, help="consecutive steps per timed block")
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    pyro.set_rng_seed(0)
    base = Config()  # the default MLP of configs/default.yaml
    x = torch.bernoulli(torch.full((args.batch_size, 784), 0.13)).to(device)

    steps = {}
    template = build_vae(base).to(device)
    reference_nets = copy.deepcopy(template)
    steps["reference"] = ReferenceStep(reference_nets.encoder, reference_nets.decoder,
                                       make_optimizer(base, reference_nets))
    for variant in args.variants:
        name, _, jit = variant.partition("+")
        cfg = Config(elbo=name, jit=jit == "jit")
        vae = copy.deepcopy(template)
        steps[variant] = SVIStep(vae, build_objective(cfg), make_optimizer(cfg, vae))

    # Each variant's VAE gets its own Pyro param store (entered outside the timed region):
    # otherwise the first VAE's parameters, registered by name, shadow the copies' parameters.
    store = pyro.get_param_store()
    scopes = {k: None for k in steps}

    def timed_block(k, n):
        with store.scope(scopes[k]) as scopes[k]:
            start = time.perf_counter()
            for _ in range(n):
                steps[k](x)
            _sync(device)
            return (time.perf_counter() - start) / n

    for k in steps:
        timed_block(k, args.warmup)

    per_step = {k: [] for k in steps}
    order = list(steps)
    for _ in range(args.rounds):
        random.shuffle(order)
        for k in order:
            per_step[k].append(timed_block(k, args.steps))

    ref = per_step["reference"]
    results = {"device": str(device), "batch_size": args.batch_size, "threads": torch.get_num_threads(),
               "torch": torch.__version__, "pyro": pyro.__version__, "hidden": base.hidden,
               "latent_dim": base.latent_dim, "rounds": args.rounds, "steps_per_round": args.steps,
               "variants": {}}
    print(f"device {device}, batch {args.batch_size}, MLP 784-{'-'.join(map(str, base.hidden))}-"
          f"{base.latent_dim}, {torch.get_num_threads()} threads, {args.rounds} rounds x {args.steps} steps")
    print(f"{'variant':<16}{'ms/step':>10}{'ratio':>10}{'ratio IQR':>20}")
    for k, times in per_step.items():
        ratios = sorted(t / r for t, r in zip(times, ref))
        q = statistics.quantiles(ratios, n=4)
        med = statistics.median(ratios)
        results["variants"][k] = {"ms_per_step": 1e3 * statistics.median(times), "ratio": med,
                                  "ratio_q1": q[0], "ratio_q3": q[2]}
        print(f"{k:<16}{1e3 * statistics.median(times):>10.3f}{med:>10.3f}{f'{q[0]:.3f}-{q[2]:.3f}':>20}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
