#!/usr/bin/env python
"""AIS throughput (images x annealing steps per second) of pyro-vae against a hand-written one.

Both run the same algorithm on the same networks and images: C chains per image from the guide,
a sigmoid schedule of T steps, one HMC transition of L leapfrog steps per intermediate
distribution with per-image step sizes (the same :func:`~pyro_vae.evaluation.annealing.anneal` loop). The
reference writes log p(x, z) and log q(z | x) of the
one-layer VAE by hand (standard normal prior, Bernoulli pixels) and differentiates them with
autograd; pyro-vae reads both off Pyro traces of the model and guide (:mod:`pyro_vae.evaluation.ais`), which
works for any model: "pyro-vae" replays them as one traced graph per shape (what ``evaluate.py
--method ais`` does), "pyro-vae+pyro-traces" runs the Pyro traces at every leapfrog step (what
it did before). The variants are interleaved (random order per round); reported are the median
seconds, the throughput, the median per-round ratio to the reference, and the median per-round
ratio of the traced graph to the Pyro traces. On CUDA the clocks are read after
``torch.cuda.synchronize()``, and the images default to :data:`~pyro_vae.evaluation.ais.DEFAULT_BATCH`'s.

    python benchmarks/ais.py                                  # IWAE paper's 1-layer net, CPU
    python benchmarks/ais.py --run-dir runs/<run>             # a trained checkpoint's networks
    python benchmarks/ais.py --device cuda --steps 200        # 5000 images, one batch
"""

from __future__ import annotations

import argparse

import pyro
import torch
from timing import benchmark_model, interleaved, ratio_summary, write_json
from torch.distributions import Normal
from torch.nn import functional as F

from pyro_vae.core.distributed import resolve_device
from pyro_vae.evaluation import default_batch, evaluation_context
from pyro_vae.evaluation.annealing import AnnealingPath, anneal, log_mean_exp, sigmoid_schedule
from pyro_vae.evaluation.traced_ends import TracedEnds


class HandWrittenPath:
    """The one-layer VAE's annealing path written out: what AnnealingPath computes from traces."""

    def __init__(self, vae, x, num_chains):
        self.vae, self.x, self.num_chains = vae, x, num_chains
        self.loc, self.scale = vae.encoder(x)

    def sample_start(self):
        return self.loc + self.scale * torch.randn(self.num_chains, *self.loc.shape, device=self.x.device)

    def ends(self, z):
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            logits = self.vae.decoder(z)
            log_joint = (-F.binary_cross_entropy_with_logits(logits, self.x.expand_as(logits),
                                                             reduction="none").sum(-1)
                         + Normal(0.0, 1.0).log_prob(z).sum(-1))
            log_start = Normal(self.loc, self.scale).log_prob(z).sum(-1)
            grad_joint, = torch.autograd.grad(log_joint.sum(), z)
        grad_start = -(z.detach() - self.loc) / self.scale ** 2
        return log_start.detach(), log_joint.detach(), grad_start, grad_joint

    point = staticmethod(AnnealingPath.point)

    def log_density(self, beta):
        return lambda z: self.point(z, self.ends(z), beta)


def hand_written_ais(vae, x, steps, chains, leapfrog):
    path = HandWrittenPath(vae, x, chains)
    return log_mean_exp(anneal(path, path.sample_start(), sigmoid_schedule(steps), leapfrog).log_weights)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", help="use this run's trained networks (default: random weights)")
    p.add_argument("--num-images", type=int,
                   help="images in the one batch (default: AIS's batch on the device: 100 on cpu, "
                        "5000 on cuda)")
    p.add_argument("--steps", type=int, default=20, help="annealing steps T")
    p.add_argument("--chains", type=int, default=16)
    p.add_argument("--leapfrog", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    args.num_images = args.num_images or default_batch(device.type)
    pyro.set_rng_seed(0)
    burda_1layer = {"hidden": [200, 200], "activation": "tanh", "latent_dim": 50}
    cfg, vae = benchmark_model(args.run_dir, device, burda_1layer)
    if cfg.model.name != "vae" or cfg.prior.name != "normal":
        p.error("the hand-written reference is the one-layer VAE with the normal prior")
    x = torch.bernoulli(torch.full((args.num_images, 784), 0.13)).to(device)
    t, c, leap = args.steps, args.chains, args.leapfrog

    def pyro_vae(traced):
        def run():
            path = AnnealingPath(vae.model, vae.guide, x, c, traced=traced)
            return log_mean_exp(anneal(path, path.sample_start(), sigmoid_schedule(t), leap).log_weights)
        return run

    traced = TracedEnds.of(vae, print)  # traced in the warm-up call, replayed in the timed ones
    variants = {"hand-written": lambda: hand_written_ais(vae, x, t, c, leap),
                "pyro-vae": pyro_vae(traced), "pyro-vae+pyro-traces": pyro_vae(None)}
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    with evaluation_context(vae, device, seed=0):
        times = interleaved(variants, args.rounds, sync=sync)
    print(f"device {device}, {args.num_images} images, T = {t}, {c} chains, {leap} leapfrog steps, "
          f"{args.rounds} rounds, {'trained' if args.run_dir else 'random'} "
          f"{cfg.model.arch} 784-{'-'.join(map(str, cfg.model.hidden))}-{cfg.model.latent_dim[0]} {cfg.model.activation}")
    print(f"{'variant':<22}{'seconds':>10}{'images x steps / s':>20}{'ratio':>8}")
    results = {"device": str(device), "num_images": args.num_images, "steps": t, "chains": c,
               "leapfrog": leap, "rounds": args.rounds, "traced_operations": traced.operations(),
               "variants": {}}
    for name, ts in times.items():
        summary = ratio_summary(ts, times["hand-written"])
        summary["images_steps_per_second"] = args.num_images * t / summary["seconds"]
        results["variants"][name] = summary
        print(f"{name:<22}{summary['seconds']:>10.3f}{summary['images_steps_per_second']:>20.1f}"
              f"{summary['ratio']:>8.3f}")
    speedup = ratio_summary(times["pyro-vae"], times["pyro-vae+pyro-traces"])
    results["traced_vs_pyro_traces"] = speedup
    print(f"traced graph ({traced.operations()} tensor operations per gradient evaluation) / Pyro "
          f"traces: {speedup['ratio']:.3f} (quartiles {speedup['ratio_q1']:.3f}-{speedup['ratio_q3']:.3f})")
    if args.json:
        write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
