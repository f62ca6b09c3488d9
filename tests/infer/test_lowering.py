"""The compiled step (pyro_vae.infer.lowering): the same loss and gradients as Pyro's eager step, the
random stream untouched by compiling, and an eager fallback, with the reason, where tracing would
be wrong."""

import math

import pyro
import pytest
import torch
from support import REPO
from support.compiled import assert_compiled_equals_eager

from pyro_vae.config import make_config
from pyro_vae.infer.lowering import LoweredStep, LoweringFailed
from pyro_vae.infer.objectives import build_objective
from pyro_vae.models import build_model
from pyro_vae.training.trainer import make_optimizer, make_step

SMALL = {"hidden": [32], "latent_dim": [4]}
HVAE = {"model": "hvae", "latent_dim": [6, 3], "hidden": [20], "upper_hidden": [10]}
CASES = [
    {"elbo": "trace"}, {"elbo": "meanfield"}, {"elbo": "tracegraph", "estimator": "score"},
    {"elbo": "trace", "estimator": "score"}, {"elbo": "iwae", "num_particles": 3},
    {"elbo": "dreg", "num_particles": 3}, {"elbo": "stl"}, {"elbo": "stl", "num_particles": 2},
    {"elbo": "renyi", "alpha": 0.5, "num_particles": 3}, {"elbo": "meanfield", "num_particles": 2},
    {**HVAE, "elbo": "trace"}, {**HVAE, "elbo": "stl"}, {**HVAE, "elbo": "dreg", "num_particles": 3},
    {**HVAE, "elbo": "iwae", "num_particles": 2}, {**HVAE, "elbo": "tracegraph", "estimator": "score"},
    {**HVAE, "elbo": "tracegraph", "estimator": "score", "baseline": "nn-only"},  # the network alone compiles
    {"prior": "vamp", "prior_components": 4, "elbo": "iwae", "num_particles": 2},
    {"prior": "mog", "prior_components": 3}, {"prior": "flow", "flow": "affine", "flow_depth": 2},
    {"prior": "learned-normal", "elbo": "dreg", "num_particles": 2},
    {"model": "examples.custom_model:StyleContentVAE", "latent_dim": [4], "elbo": "stl"},
]


def build(options, batch=5):
    user_model = ":" in options.get("model", "")  # takes no hidden: --hidden would be refused
    cfg = make_config({**{k: v for k, v in SMALL.items() if not (user_model and k == "hidden")}, **options})
    model = build_model(cfg, train_data=torch.rand(10, 784))
    x = torch.bernoulli(torch.full((batch, 784), 0.3, dtype=torch.float32))
    return cfg, model, build_objective(cfg), x


@pytest.fixture(autouse=True)
def fresh_param_store(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))  # for examples.custom_model
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


@pytest.mark.parametrize("options", CASES, ids=lambda o: "+".join(map(str, o.values())))
def test_compiled_step_gives_the_eager_loss_and_gradients(options):
    _, model, elbo, x = build(options)
    params = list(model.parameters())
    assert_compiled_equals_eager(elbo, model.model, model.guide, params, x)


def test_compiling_leaves_the_random_stream_where_it_was():
    _, model, elbo, x = build({"elbo": "iwae", "num_particles": 2})
    lowered = LoweredStep(elbo, model.model, model.guide, list(model.parameters()))
    before = torch.get_rng_state()
    lowered.compile(x)
    assert torch.equal(torch.get_rng_state(), before)
    lowered.compile(x)  # cached per shape: no second trace
    lowered.compile(x[:3])
    assert len(lowered.graphs) == 2


def test_compiled_training_steps_equal_eager_ones():
    """Whole steps (gradients, Adam), compiled vs eager from the same seed and weights."""
    cfg, model, _, x = build({"elbo": "dreg", "num_particles": 3})
    twin = build_model(cfg, train_data=torch.rand(10, 784))
    twin.load_state_dict(model.state_dict())
    compiled = make_step(cfg, model, make_optimizer(cfg, model))
    eager = make_step(make_config({**cfg.to_flat(), "compile": False}), twin, make_optimizer(cfg, twin))
    assert compiled.prepare(x).startswith("compiled") and eager.prepare(x) == "eager (compile=False)"
    for seed in range(3):
        torch.manual_seed(seed)
        a = compiled(x)
        torch.manual_seed(seed)
        b = eager(x)
        assert math.isclose(a, b, rel_tol=1e-6)
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.allclose(p, q, atol=1e-6), name


@pytest.mark.parametrize("options, reason", [
    ({"estimator": "score", "elbo": "tracegraph", "baseline": "avg"}, "--baseline avg keeps a decaying average"),
    ({"estimator": "score", "elbo": "tracegraph", "baseline": "nn"}, "--baseline nn keeps a decaying average"),
    ({"prior": "flow", "flow_depth": 2}, "the shape of some results depends on the data"),
])
def test_what_cannot_be_traced_runs_eagerly_and_says_why(options, reason):
    cfg, model, _, x = build(options)
    step = make_step(cfg, model, make_optimizer(cfg, model))
    assert step.prepare(x).startswith("eager (") and reason in step.prepare(x)
    assert step.lowered is None and math.isfinite(step(x))


class ValueDependentVAE(torch.nn.Module):
    """A user model whose Python control flow reads a tensor's value: not traceable."""

    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.zeros(3))

    def model(self, x):
        pyro.module("m", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", pyro.distributions.Normal(self.loc, 1.0).to_event(1))
            if z.sum() > 0:  # data-dependent branch
                z = z * 2
            pyro.sample("x", pyro.distributions.Bernoulli(logits=z.sum(-1, keepdim=True).expand(x.shape)).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("m", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", pyro.distributions.Normal(self.loc, 1.0).to_event(1))


def test_a_model_that_reads_tensor_values_falls_back_to_eager():
    from pyro_vae.training.trainer import SVIStep

    model = ValueDependentVAE()
    step = SVIStep(model, build_objective(make_config({"elbo": "trace"})),
                   torch.optim.Adam(model.parameters()))
    x = torch.bernoulli(torch.full((4, 784), 0.5))
    with pytest.raises(LoweringFailed, match="reads a tensor's value in Python"):
        step.lowered.compile(x)
    assert "could not be traced" in step.prepare(x) and math.isfinite(step(x))


def test_a_modelling_error_found_by_validation_propagates_from_compiling():
    _, model, elbo, x = build({})
    lowered = LoweredStep(elbo, model.model, model.guide, list(model.parameters()))
    with pytest.raises(ValueError, match="Bernoulli"):
        lowered.compile(x * 0.5)  # observations outside {0, 1}: Pyro's validation says so
