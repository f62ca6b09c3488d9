#!/usr/bin/env python
"""Time one training step of pyro-vae against hand-written PyTorch, interleaved in one process.

For every objective named in ``--variants``, pyro-vae's step (exactly what ``scripts/svi_train.py``
launches from the host: :func:`pyro_vae.training.trainer.make_step`, compiled unless the variant ends in
``+eager``) is timed against a hand-written eager PyTorch step of the *same* objective on a deep copy of the same
networks, with the same optimizer on the same fixed binary minibatch:

- ``trace``, ``tracegraph``: the Monte Carlo ELBO, log p(x, z) - log q(z | x) at z ~ q;
- ``meanfield``: the Bernoulli log-likelihood minus the analytic Gaussian KL (one-layer model);
- ``stl``: the Monte Carlo ELBO with log q at stopped encoder parameters;
- ``iwae``, ``renyi``: logsumexp of K log-weights (``renyi`` with alpha = 0.5);
- ``dreg``: IWAE's log-weights with log q at stopped parameters, the decoder weighted by w~ and a
  hook on each z that weights the encoder's path gradient by a further w~ (Tucker et al. 2018).

The hand-written side handles both shipped models (``--model vae`` or ``hvae``, any number of
layers) with the standard-normal prior.

``NAME+graph`` (``--device cuda`` only) times the path ``svi_train.py`` takes on CUDA: the whole
step captured as one CUDA graph (:class:`pyro_vae.training.graphed.GraphedSteps`, set up as the Trainer
sets it up), its minibatches sliced and binarized on the device. It is also reported as a ratio
to ``NAME``, the host-launched compiled step timed in the same rounds (added if not named). ``--priors normal vamp`` times the pyro-vae steps once
per prior and also reports each one's ratio to the first prior's (the VampPrior target).

Timing (``benchmarks/timing.py``): after warm-up, ``--rounds`` rounds each time ``--steps``
consecutive steps of every variant, in a fresh random order per round. Reported: the median time
per step and the median (and quartiles) over rounds of the per-round ratio to the hand-written
step. Targets (issue 11): <= 1.10 on CPU; <= 1.0 on a GPU.

    python benchmarks/train_step.py                         # default MLP, batch 128, trace
    python benchmarks/train_step.py --hidden 200 200 --activation tanh --latent-dim 50 \\
        --batch-size 20 --variants trace iwae dreg --num-particles 5
    python benchmarks/train_step.py --model hvae --hidden 200 200 --activation tanh --batch-size 20
    python benchmarks/train_step.py --priors normal vamp --variants trace
    python benchmarks/train_step.py --device cuda --json out.json
    python benchmarks/train_step.py --device cuda --variants trace trace+graph
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics

import pyro
import torch
from timing import interleaved, ratio_summary, write_json
from torch.nn import functional as F

from pyro_vae.cli.exits import ArgumentParser
from pyro_vae.config import make_config, replaced
from pyro_vae.core.distributed import resolve_device
from pyro_vae.models import build_model
from pyro_vae.training.graphed import GraphedSteps, use_tensor_learning_rate
from pyro_vae.training.trainer import make_optimizer, make_step

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def normal_log_prob(z, loc, scale):
    return (-0.5 * ((z - loc) / scale).pow(2) - scale.log() - HALF_LOG_2PI).sum(-1)


class HandWritten:
    """A hand-written eager step of one objective for a (one- or many-layer) VAE's networks."""

    def __init__(self, model, objective: str, num_particles: int, optimizer):
        self.encoders = list(getattr(model, "encoders", None) or [model.encoder])
        self.decoders = list(getattr(model, "decoders", None) or [model.decoder])
        self.objective, self.k, self.optimizer = objective, num_particles, optimizer
        self.stop_q = objective in ("stl", "dreg")

    def _stopped(self, encoder, h, loc, scale, layer):
        """q's parameters with the encoder's weights stopped; the path through h kept."""
        if layer == 0:  # the input is data: detaching the outputs is the same thing
            return loc.detach(), scale.detach()
        detached = {name: p.detach() for name, p in encoder.named_parameters()}
        return torch.func.functional_call(encoder, detached, (h,))

    def log_weights(self, x):
        """(K, B) log p(x, z) - log q(z | x), and the z's as they enter it (for DReG's hooks)."""
        h, log_q, entering = x, 0.0, []
        for layer, encoder in enumerate(self.encoders):
            loc, scale = encoder(h)
            eps = torch.randn((self.k, *loc.shape) if layer == 0 else loc.shape, device=loc.device)
            z = loc + scale * eps
            q_loc, q_scale = self._stopped(encoder, h, loc, scale, layer) if self.stop_q else (loc, scale)
            z_in = z.view_as(z)
            log_q = log_q + normal_log_prob(z_in, q_loc, q_scale)
            entering.append(z_in)
            h = z
        top = entering[-1]
        log_p = (-0.5 * top.pow(2) - HALF_LOG_2PI).sum(-1)  # N(0, I)
        for layer in range(len(self.decoders) - 1, 0, -1):
            loc, scale = self.decoders[layer](entering[layer])
            log_p = log_p + normal_log_prob(entering[layer - 1], loc, scale)
        logits = self.decoders[0](entering[0])
        log_p = log_p - F.binary_cross_entropy_with_logits(
            logits, x.expand(logits.shape), reduction="none").sum(-1)
        return log_p - log_q, entering

    def loss(self, x):
        if self.objective == "meanfield":
            loc, scale = self.encoders[0](x)
            z = loc + scale * torch.randn((self.k, *loc.shape), device=loc.device)
            logits = self.decoders[0](z)
            nll = F.binary_cross_entropy_with_logits(logits, x.expand(logits.shape), reduction="none").sum(-1)
            kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1).sum(-1) - scale.log().sum(-1)
            return (nll.mean(0) + kl).sum()
        log_w, entering = self.log_weights(x)
        if self.objective in ("trace", "tracegraph", "stl"):
            return -log_w.mean(0).sum()
        if self.objective == "iwae":
            return -(torch.logsumexp(log_w, 0) - math.log(self.k)).sum()
        if self.objective == "renyi":
            return -((torch.logsumexp(0.5 * log_w, 0) - math.log(self.k)) / 0.5).sum()
        if self.objective == "dreg":
            w = torch.softmax(log_w.detach(), 0)
            for z in entering:
                z.register_hook(lambda g, w=w.unsqueeze(-1): g * w)
            return -(w * log_w).sum()
        raise ValueError(f"no hand-written step for {self.objective}")

    def __call__(self, x):
        loss = self.loss(x)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        return loss.item()


class GraphedBlock:
    """``steps`` training steps as ``svi_train.py`` runs them on CUDA: one CUDA graph of the whole
    step, replayed (``capture=False`` runs the same steps uncaptured: the CPU tests use it).

    The graph slices its minibatches from ``train`` by a counter on the device, so a block must
    not run past the end of an epoch: a new one starts (the same order again) before it would.
    """

    def __init__(self, step, optimizer, train: torch.Tensor, batch_size: int, steps: int,
                 capture: bool = True):
        if step.lowered is None or step.scale is not None:
            raise ValueError(f"no whole-step graph for this step ({step.prepare(train[:batch_size])}"
                             f"{', KL warm-up' if step.scale is not None else ''})")
        use_tensor_learning_rate(optimizer, capturable=capture)  # as Trainer does on CUDA
        self.graphed = GraphedSteps(step.lowered, optimizer, train, batch_size, True, capture)
        self.order = torch.randperm(len(train), device=train.device)
        self.per_epoch, self.steps, self.left = len(train) // batch_size, steps, 0
        if self.per_epoch < steps:
            raise ValueError(f"{len(train)} images hold fewer than {steps} batches of {batch_size}")

    def __call__(self) -> None:
        if self.left < self.steps:
            self.graphed.start_epoch(self.order)
            self.left = self.per_epoch
        self.graphed.run(self.steps)  # asynchronous: the caller synchronizes before reading clocks
        self.left -= self.steps


def main(argv=None):
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="a YAML config the flags below override (default: the defaults)")
    p.add_argument("--model", choices=["vae", "hvae"])
    p.add_argument("--hidden", type=int, nargs="+")
    p.add_argument("--upper-hidden", type=int, nargs="+")
    p.add_argument("--activation")
    p.add_argument("--latent-dim", type=int, nargs="+")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--priors", nargs="+", default=["normal"],
                   help="pyro-vae steps per prior; ratios to the first prior are reported too")
    p.add_argument("--prior-components", type=int, help="mog components or vamp pseudo-inputs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--variants", nargs="+", default=["trace"],
                   help="objectives (trace tracegraph meanfield stl iwae renyi dreg); NAME+eager "
                        "for the uncompiled step, NAME+graph for the whole-step CUDA graph "
                        "(--device cuda; NAME is timed too)")
    p.add_argument("--num-particles", type=int, default=5, help="K of iwae, renyi and dreg")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--steps", type=int, default=20, help="consecutive steps per timed block")
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    variants = []
    for variant in args.variants:
        name, _, mode = variant.partition("+")
        if mode not in ("", "eager", "graph"):
            p.error(f"--variants {variant}: write NAME, NAME+eager or NAME+graph")
        if mode == "graph" and device.type != "cuda":
            p.error(f"--variants {variant} times the whole-step CUDA graph that svi_train.py uses on "
                    f"CUDA; it needs --device cuda (on {device.type} svi_train.py launches each step "
                    f"from the host, which {name} times)")
        if mode == "graph" and name not in args.variants + variants:
            variants.append(name)  # the graph's ratio is to the host-launched step of the same run
        variants.append(variant)
    pyro.set_rng_seed(0)
    overrides = {k: v for k, v in {"model": args.model, "hidden": args.hidden,
                                   "upper_hidden": args.upper_hidden, "activation": args.activation,
                                   "latent_dim": args.latent_dim, "batch_size": args.batch_size,
                                   }.items() if v is not None}
    base = make_config(overrides, args.config)
    components = {"prior_components": args.prior_components} if args.prior_components else {}
    x = torch.bernoulli(torch.full((args.batch_size, 784), 0.13)).to(device)
    train_data = torch.rand(1000, 784).to(device)

    # the graph variants' training set: enough batches that an epoch spans several timed blocks
    epoch_data = torch.rand(8 * args.steps * args.batch_size, 784, device=device) \
        if any(v.endswith("+graph") for v in variants) else None
    steps, blocks, pairs = {}, {}, {}
    for prior in args.priors:
        mixture = components if prior in ("mog", "vamp") else {}  # only mixtures read it
        template = build_model(replaced(base, prior=prior, **mixture), train_data=train_data).to(device)
        for variant in variants:
            name, _, mode = variant.partition("+")
            multi = name in ("iwae", "dreg", "renyi")
            k = args.num_particles if multi else 1
            cfg = replaced(base, prior=prior, **mixture, elbo=name, num_particles=k,
                           alpha=0.5 if name == "renyi" else None, compile=mode != "eager")
            model = copy.deepcopy(template)
            key = variant if len(args.priors) == 1 else f"{prior}/{variant}"
            optimizer = make_optimizer(cfg, model)
            steps[key] = make_step(cfg, model, optimizer)
            steps[key].prepare(x)
            if mode == "graph":
                try:
                    blocks[key] = GraphedBlock(steps[key], optimizer, epoch_data, args.batch_size, args.steps)
                except ValueError as e:
                    p.error(f"--variants {variant}: {e}")
            if prior == "normal" and f"hand/{name}" not in steps:
                nets = copy.deepcopy(template)
                steps[f"hand/{name}"] = HandWritten(nets, name, k, make_optimizer(cfg, nets))
            pairs[key] = (prior, variant, f"hand/{name}")

    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)

    def block(step):
        return lambda: [step(x) for _ in range(args.steps)]

    times = interleaved({k: blocks.get(k) or block(step) for k, step in steps.items()}, args.rounds,
                        warmup=max(1, args.warmup // args.steps), sync=sync)
    results = {"device": str(device), "batch_size": args.batch_size, "threads": torch.get_num_threads(),
               "torch": torch.__version__, "pyro": pyro.__version__, "config": base.to_flat(),
               "num_particles": args.num_particles, "rounds": args.rounds,
               "steps_per_round": args.steps, "variants": {}}
    sizes = "-".join(map(str, [784, *base.model.hidden, *base.model.latent_dim]))
    print(f"device {device}, {base.model.name} {sizes} {base.model.activation}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, {args.rounds} rounds x {args.steps} steps, "
          f"K = {args.num_particles} for iwae/renyi/dreg")
    first = args.priors[0]
    print(f"{'variant':<22}{'ms/step':>10}{'hand ms':>10}{'ratio':>9}{'ratio IQR':>16}"
          + (f"{'vs ' + first:>12}" if len(args.priors) > 1 else ""))
    for key, (prior, variant, hand) in pairs.items():
        ms = 1e3 * statistics.median(times[key]) / args.steps
        entry = {"ms_per_step": ms, "step": steps[key].prepare(x)}
        if key in blocks:
            entry["step"] = f"one CUDA graph of the whole step ({entry['step']})"
        line = f"{key:<22}{ms:>10.3f}"
        if hand in times:
            summary = ratio_summary(times[key], times[hand])
            summary.pop("seconds")
            entry.update(hand_ms_per_step=1e3 * statistics.median(times[hand]) / args.steps, **summary)
            line += (f"{entry['hand_ms_per_step']:>10.3f}{summary['ratio']:>9.3f}"
                     f"{summary['ratio_q1']:>8.3f}-{summary['ratio_q3']:.3f}")
        else:
            line += f"{'':>10}{'':>9}{'':>16}"
        if prior != first:
            same = ratio_summary(times[key], times[f"{first}/{variant}"])["ratio"]
            entry[f"ratio_to_{first}"] = same
            line += f"{same:>12.3f}"
        if key in blocks:
            host = ratio_summary(times[key], times[key.removesuffix("+graph")])
            entry.update(ratio_to_host=host["ratio"], ratio_to_host_q1=host["ratio_q1"],
                         ratio_to_host_q3=host["ratio_q3"])
            line += f"  {host['ratio']:.3f} x the host-launched step"
        results["variants"][key] = entry
        print(line)
    if args.json:
        write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
