#!/usr/bin/env python
"""Time one training step of pyro-vae against hand-written PyTorch, interleaved in one process.

Both sides train the same networks (the reference is a deep copy of pyro-vae's encoder and
decoder) with the same optimizer on the same fixed binary minibatch. The Pyro side is exactly the
step ``scripts/svi_train.py`` runs (:class:`pyro_vae.train.SVIStep`: ``ELBO.loss_and_grads`` and
an Adam step); the reference computes the ELBO by hand with the analytic Gaussian KL.

Timing (``benchmarks/timing.py``): after warm-up, ``--rounds`` rounds each time ``--steps``
consecutive steps of every variant, in a fresh random order per round. Reported: the median
time per step and the median (and quartiles) over rounds of the per-round ratio to the
reference. Target (issue 2): ``trace`` / reference <= 1.15 on CPU at batch 128.

    python benchmarks/train_step.py                   # default MLP, batch 128, CPU
    python benchmarks/train_step.py --device cuda --json out.json
    python benchmarks/train_step.py --batch-size 20 --variants trace iwae --num-particles 5 \
        --models vae=configs/iwae_paper.yaml hvae=configs/iwae_paper_2layer.yaml

With ``--models NAME=CONFIG ...`` every variant runs for every model (built from its YAML
config; the first must be a one-layer ``vae``, whose networks the hand-written reference
copies), and each row also gets its ratio to the first model's same variant: e.g. the step
time of the two-layer model relative to the one-layer one.
"""

from __future__ import annotations

import argparse
import copy

import pyro
import torch
from torch.nn import functional as F

from pyro_vae.config import Config, make_config
from pyro_vae.objectives import build_objective
from pyro_vae.build import build_model, resolve_device
from pyro_vae.train import SVIStep, make_optimizer
from timing import interleaved, ratio_summary, write_json


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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--variants", nargs="+", default=["trace", "meanfield", "trace+jit", "meanfield+jit"],
                   help="ELBO names, '+jit' for the JIT variant")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--steps", type=int, default=20, help="consecutive steps per timed block")
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--num-particles", type=int, default=1, help="K of the multi-sample variants")
    p.add_argument("--models", nargs="+", default=None, metavar="NAME=CONFIG",
                   help="models to time, each from a YAML config (default: the default vae)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    pyro.set_rng_seed(0)
    models = dict(m.split("=", 1) for m in args.models) if args.models else {"vae": None}
    x = torch.bernoulli(torch.full((args.batch_size, 784), 0.13)).to(device)

    steps, labels, first = {}, {}, None
    for model_name, config_file in models.items():
        base = make_config({"batch_size": args.batch_size}, config_file) if config_file else Config()
        template = build_model(base).to(device)
        if first is None:  # the hand-written reference copies the first (one-layer) model's nets
            first = base
            reference_nets = copy.deepcopy(template)
            steps["reference"] = ReferenceStep(reference_nets.encoder, reference_nets.decoder,
                                               make_optimizer(base, reference_nets))
        for variant in args.variants:
            name, _, jit = variant.partition("+")
            multi = name in ("iwae", "dreg", "renyi")
            cfg = make_config({**base.to_dict(), "elbo": name, "jit": jit == "jit",
                               "num_particles": args.num_particles if multi else 1,
                               "alpha": 0.5 if name == "renyi" else None})
            model = copy.deepcopy(template)
            key = variant if len(models) == 1 else f"{model_name}/{variant}"
            steps[key] = SVIStep(model, build_objective(cfg), make_optimizer(cfg, model))
            labels[key] = (model_name, variant)
    base = first

    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)

    def block(step):
        return lambda: [step(x) for _ in range(args.steps)]

    times = interleaved({k: block(step) for k, step in steps.items()}, args.rounds,
                        warmup=max(1, args.warmup // args.steps), sync=sync)
    results = {"device": str(device), "batch_size": args.batch_size, "threads": torch.get_num_threads(),
               "torch": torch.__version__, "pyro": pyro.__version__, "hidden": base.hidden,
               "latent_dim": base.latent_dim, "models": models, "num_particles": args.num_particles,
               "rounds": args.rounds, "steps_per_round": args.steps, "variants": {}}
    print(f"device {device}, batch {args.batch_size}, reference MLP 784-{'-'.join(map(str, base.hidden))}-"
          f"{base.latent_dim[0]}, {torch.get_num_threads()} threads, {args.rounds} rounds x {args.steps} steps"
          + (f", K = {args.num_particles}" if args.num_particles > 1 else ""))
    first_model = next(iter(models))
    print(f"{'variant':<24}{'ms/step':>10}{'ratio':>10}{'ratio IQR':>20}"
          + (f"{'vs ' + first_model:>14}" if len(models) > 1 else ""))
    for k, ts in times.items():
        summary = ratio_summary(ts, times["reference"])
        ms = 1e3 * summary.pop("seconds") / args.steps
        results["variants"][k] = {"ms_per_step": ms, **summary}
        iqr = f"{summary['ratio_q1']:.3f}-{summary['ratio_q3']:.3f}"
        line = f"{k:<24}{ms:>10.3f}{summary['ratio']:>10.3f}{iqr:>20}"
        if len(models) > 1 and k in labels:
            same = ratio_summary(ts, times[f"{first_model}/{labels[k][1]}"])["ratio"]
            results["variants"][k][f"ratio_to_{first_model}"] = same
            line += f"{same:>14.3f}"
        print(line)
    if args.json:
        write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
