#!/usr/bin/env python
"""Time pyro-vae's log p(x) estimator against a hand-written vectorized PyTorch IWAE computation.

Both run the same networks on the same images with the same K and the same chunk size (particles
drawn at once): the reference computes log p(x|z) + log p(z) - log q(z|x) by hand and combines
chunks with the same streaming logsumexp; pyro-vae reads the log-weights off Pyro traces. The
variants are interleaved (random order per round); reported are the median seconds and the
median per-round ratio. Target (issue 4): pyro-vae / hand-written <= 1.10 on CPU.

    python benchmarks/evaluate.py                       # default MLP, random weights, CPU
    python benchmarks/evaluate.py --run-dir runs/<run>  # a trained checkpoint's networks
    python benchmarks/evaluate.py --device cuda --num-images 10000 --num-samples 5000 --rounds 1

The chunk size follows from ``--max-memory`` (default auto: 1 GiB on the CPU, half the free GPU
memory on CUDA, as ``evaluate.py`` sizes it) unless ``--chunk`` is given. On CUDA the clocks are
read after ``torch.cuda.synchronize()``, and "pyro-vae+psis-serial" runs PSIS after each batch
instead of on the worker thread that overlaps it with the next batch's GPU work (the default
there: "pyro-vae+psis").
    python benchmarks/evaluate.py --prior vamp --num-images 20 --num-samples 5000 --rounds 1

With ``--prior vamp`` (or ``mog``) there is no hand-written reference; the variants are pyro-vae's
mixture density by matrix products (:mod:`pyro_vae.nn.mixture`) and the broadcasting
``MixtureSameFamily.log_prob`` it replaced, inside the same estimator with the prior built once
(``fixed_prior``, as ``evaluate.py`` does); the ratio is to the latter (issue 11: >= 10x faster).
"""

from __future__ import annotations

import argparse
import math

import pyro
import torch
from timing import benchmark_model, interleaved, ratio_summary, write_json
from torch.distributions import Normal
from torch.nn import functional as F

from pyro_vae.core.distributed import resolve_device
from pyro_vae.core.precision import tf32
from pyro_vae.evaluation import estimate_log_likelihood, memory_budget, particle_bytes
from pyro_vae.nn.mixture import DiagonalNormalMixture


@torch.no_grad()
def reference_log_px(vae, data, num_samples, batch_size, chunk):
    """Hand-written IWAE estimate of log p(x) per image, chunked with a streaming logsumexp."""
    out = []
    for start in range(0, len(data), batch_size):
        x = data[start:start + batch_size]
        loc, scale = vae.encoder(x)
        running_max = torch.full((len(x),), -math.inf, device=x.device)
        running_sum = torch.zeros(len(x), device=x.device)
        done = 0
        while done < num_samples:
            n = min(chunk, num_samples - done)
            z = loc + scale * torch.randn(n, *loc.shape, device=x.device)
            logits = vae.decoder(z)
            log_w = (-F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
                     + Normal(0.0, 1.0).log_prob(z).sum(-1) - Normal(loc, scale).log_prob(z).sum(-1))
            new_max = torch.maximum(running_max, log_w.max(0).values)
            running_sum = running_sum * torch.exp(running_max - new_max) + torch.exp(log_w - new_max).sum(0)
            running_max = new_max
            done += n
        out.append((running_max + torch.log(running_sum) - math.log(num_samples)).cpu())
    return torch.cat(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", help="use this run's trained networks (default: random weights)")
    p.add_argument("--num-images", type=int, default=100)
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--chunk", type=int, help="particles drawn at once (default: from --max-memory)")
    p.add_argument("--max-memory", default="auto",
                   help="activation memory of one chunk (default auto, as evaluate.py)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--prior", default="normal", help="the model's prior (random weights only)")
    p.add_argument("--prior-components", type=int, help="mog components or vamp pseudo-inputs")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    pyro.set_rng_seed(0)
    cfg, vae = benchmark_model(args.run_dir, device,
                               {"prior": args.prior, "prior_components": args.prior_components},
                               train_data=torch.rand(1000, 784))
    vae.eval()
    data = torch.bernoulli(torch.full((args.num_images, 784), 0.13)).to(device)
    k, b = args.num_samples, args.batch_size
    budget = memory_budget(args.max_memory, device, print)
    c = args.chunk or max(1, min(k, budget // (b * particle_bytes(vae, data))))

    def pyro_vae(diagnostics=False, broadcast=False, overlap=None):
        def run():
            density = DiagonalNormalMixture.log_prob
            if broadcast:  # the parent's log_prob: (particles, batch, components, D) broadcasting
                DiagonalNormalMixture.log_prob = lambda self, value: super(
                    DiagonalNormalMixture, self).log_prob(value)
            try:
                with vae.fixed_prior():
                    return estimate_log_likelihood(vae.model, vae.guide, data, k, b, chunk_size=c,
                                                   diagnostics=diagnostics, log=print, overlap=overlap)
            finally:
                DiagonalNormalMixture.log_prob = density
        return run

    if cfg.prior.name in ("vamp", "mog"):
        reference = "pyro-vae+broadcast"
        variants = {reference: pyro_vae(broadcast=True), "pyro-vae": pyro_vae()}
    else:
        reference = "hand-written"
        variants = {reference: lambda: reference_log_px(vae, data, k, b, c), "pyro-vae": pyro_vae(),
                    "pyro-vae+psis": pyro_vae(diagnostics=True)}
        if device.type == "cuda":
            variants["pyro-vae+psis-serial"] = pyro_vae(diagnostics=True, overlap=False)
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    with tf32(False):  # as every evaluation runs
        times = interleaved(variants, args.rounds, sync=sync)
    print(f"device {device}, {args.num_images} images, K = {k}, batch {b}, chunk {c}, "
          f"{args.rounds} rounds, {'trained' if args.run_dir else 'random'} "
          f"{cfg.model.arch} 784-{'-'.join(map(str, cfg.model.hidden))}-{cfg.model.latent_dim[0]}, prior {cfg.prior.name}")
    print(f"{'variant':<20}{'seconds':>10}{'ratio':>8}")
    results = {"device": str(device), "prior": cfg.prior.name, "num_images": args.num_images, "num_samples": k,
               "batch_size": b, "chunk": c, "rounds": args.rounds, "variants": {}}
    for name, ts in times.items():
        results["variants"][name] = summary = ratio_summary(ts, times[reference])
        print(f"{name:<20}{summary['seconds']:>10.3f}{summary['ratio']:>8.3f}")
    if args.json:
        write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
