"""Pyro's own examples/vae/ss_vae_M2.py, condensed to its essentials and run with plain Pyro (no
pyro-vae): is the tutorial's 100-label accuracy (0.9319) reachable with today's torch and Pyro?
The reference check beside configs/papers/ss_vae_100_labels.yaml (docs/results.md, "Labels").
Written from the example
(custom MLP init N(0, 1e-3) on hidden layers; grey-level MNIST /255 scored by a Bernoulli with
validation off, as the example does; encoder_z scale = exp; ClippedSoftmax/ClippedSigmoid outputs;
TraceEnum_ELBO with the guide enumerated in parallel; aux loss as its own SVI step with
Trace_ELBO; one supervised batch per epoch (100 labels), 249 unsupervised batches of 200; Adam lr
4.2e-4, betas (0.95, 0.999); validation = last 10k of the training set).
With "echo" it also runs, as the example does, the auxiliary loss's SVI step on every unsupervised
batch: that loss has no term there (y is not observed), so the step only replays Adam's momentum
on a zero gradient (the example's optimizer is shared by both losses).
usage: python benchmarks/pyro_ss_vae_m2.py SEED EPOCHS [BATCH_SIZE [echo]] (MNIST from $PYRO_VAE_DATA, else
./data, torchvision's layout; one line per epoch: test and validation accuracy of q(y | x))"""
import os
import sys
import time

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, config_enumerate
from pyro.optim import Adam
from torch import nn
from torchvision.datasets import MNIST

seed, epochs = int(sys.argv[1]), int(sys.argv[2])
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 200
echo = len(sys.argv) > 4 and sys.argv[4] == "echo"
pyro.set_rng_seed(seed)
np.random.seed(seed)
pyro.enable_validation(False)


def mlp(sizes, out=None):
    layers = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        lin = nn.Linear(a, b)
        lin.weight.data.normal_(0, 0.001)
        lin.bias.data.normal_(0, 0.001)
        layers += [lin, nn.Softplus()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


class M2(nn.Module):
    def __init__(self, z=50, h=500, eps=1e-7):
        super().__init__()
        self.eps = eps
        self.encoder_y = mlp([784, h, 10])
        self.encoder_z = mlp([794, h, 2 * z])
        self.decoder = mlp([z + 10, h, 784])
        self.z = z

    def model(self, xs, ys=None):
        pyro.module("ss_vae", self)
        with pyro.plate("data"):
            zs = pyro.sample("z", dist.Normal(xs.new_zeros(xs.shape[0], self.z), 1.).to_event(1))
            ys = pyro.sample("y", dist.OneHotCategorical(xs.new_ones(xs.shape[0], 10) / 10.), obs=ys)
            shape = torch.broadcast_shapes(zs.shape[:-1], ys.shape[:-1])
            loc = torch.sigmoid(self.decoder(torch.cat([zs.expand(*shape, zs.shape[-1]), ys.expand(*shape, 10)], -1)))
            loc = loc.clamp(self.eps, 1 - self.eps)
            pyro.sample("x", dist.Bernoulli(loc).to_event(1), obs=xs)

    def guide(self, xs, ys=None):
        with pyro.plate("data"):
            if ys is None:
                alpha = torch.softmax(self.encoder_y(xs), -1).clamp(self.eps, 1 - self.eps)
                ys = pyro.sample("y", dist.OneHotCategorical(alpha))
            shape = torch.broadcast_shapes(xs.shape[:-1], ys.shape[:-1])
            out = self.encoder_z(torch.cat([xs.expand(*shape, 784), ys.expand(*shape, 10)], -1))
            loc, raw = out[..., :self.z], out[..., self.z:]
            pyro.sample("z", dist.Normal(loc, torch.exp(raw)).to_event(1))

    def model_classify(self, xs, ys=None):
        pyro.module("ss_vae", self)
        with pyro.plate("data"):
            if ys is not None:
                alpha = torch.softmax(self.encoder_y(xs), -1).clamp(self.eps, 1 - self.eps)
                with pyro.poutine.scale(scale=46.0):
                    pyro.sample("y_aux", dist.OneHotCategorical(alpha), obs=ys)

    def guide_classify(self, xs, ys=None):
        pass


root = os.environ.get("PYRO_VAE_DATA", "data")
train = MNIST(root, train=True, download=False)
test = MNIST(root, train=False, download=False)
x_all = train.data.reshape(-1, 784).float() / 255
y_all = torch.nn.functional.one_hot(train.targets, 10).float()
x_tr, y_tr, x_va, y_va = x_all[:50000], y_all[:50000], x_all[50000:], y_all[50000:]
x_te, y_te = test.data.reshape(-1, 784).float() / 255, torch.nn.functional.one_hot(test.targets, 10).float()
sup = []
labels = y_tr.argmax(1).numpy()
for c in range(10):
    idx = np.where(labels == c)[0]
    np.random.shuffle(idx)
    sup += list(idx[:10])
sup = np.array(sup)
unsup = np.setdiff1d(np.arange(50000), sup)
xs_sup, ys_sup = x_tr[sup], y_tr[sup]
x_un = x_tr[unsup]

m2 = M2()
opt = Adam({"lr": 0.00042, "betas": (0.95, 0.999)})
svi = SVI(m2.model, config_enumerate(m2.guide, "parallel"), opt, loss=TraceEnum_ELBO(max_plate_nesting=1))
aux = SVI(m2.model_classify, m2.guide_classify, opt, loss=Trace_ELBO())


def accuracy(x, y):
    with torch.no_grad():
        return (m2.encoder_y(x).argmax(1) == y.argmax(1)).float().mean().item()


periodic = int(50000 / 100)
for epoch in range(1, epochs + 1):
    start = time.time()
    order = torch.randperm(len(x_un))
    unsup_batches = len(x_un) // batch
    total = unsup_batches + 1
    b_un = 0
    for i in range(total):
        if i % periodic == 1:  # the example's one supervised batch per epoch (all 100 labels)
            perm = torch.randperm(len(xs_sup))
            svi.step(xs_sup[perm], ys_sup[perm])
            aux.step(xs_sup[perm], ys_sup[perm])
        else:
            idx = order[b_un * batch:(b_un + 1) * batch]
            b_un += 1
            svi.step(x_un[idx])
            if echo:  # the example steps every loss on every batch: here the auxiliary loss has
                aux.step(x_un[idx])  # no term, so Adam steps every parameter on a zero gradient
    print(f"epoch {epoch} test {accuracy(x_te, y_te):.4f} valid {accuracy(x_va, y_va):.4f} ({time.time() - start:.0f} s)",
          flush=True)
