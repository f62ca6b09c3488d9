"""The discrete families (sbn, categorical) and the traceable one-hot categorical: shapes and
architectures as the papers have them, networks that broadcast over particles and enumeration
dimensions, compiled == eager, the config keys and their refusals, and the start-up check that
refuses a model failing under vectorized particles before any epoch."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from support import TINY_RUN, quiet
from support.compiled import assert_compiled_equals_eager
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx
from torch.nn import functional as F

from pyro_vae.config import Config, make_config
from pyro_vae.core.errors import ConfigError
from pyro_vae.infer.importance import log_weights, trace_particles
from pyro_vae.infer.lowering import READS_A_VALUE
from pyro_vae.infer.objectives import build_objective, model_structure
from pyro_vae.models import build_model
from pyro_vae.models.discrete import OneHotCategorical, one_hot
from pyro_vae.models.sbn import SigmoidBeliefNet
from pyro_vae.training.trainer import Trainer, train

B = 5
SBN = {"model": "sbn", "latent_dim": [6]}
SBN2 = {"model": "sbn", "latent_dim": [6, 4], "sbn_mapping": "nonlinear", "hidden": [8]}
CATEGORICAL = {"model": "categorical", "latent_dim": [3], "categories": 4, "hidden": [16]}
USER = "support.discrete_user_models"
TINY = {k: v for k, v in TINY_RUN.items() if k != "hidden"}  # the user models here take no hidden


@pytest.fixture
def x():
    return torch.bernoulli(torch.full((B, 784), 0.3))


def traces(model, x):
    guide = poutine.trace(model.guide).get_trace(x)
    return poutine.trace(poutine.replay(model.model, trace=guide)).get_trace(x), guide


def test_fixed_shape_one_hot_is_torchs_and_traces():
    index = torch.randint(0, 7, (3, 4, 5))
    assert torch.equal(one_hot(index, 7), F.one_hot(index, 7).float())
    logits = torch.randn(4, 3, 7)
    torch.manual_seed(0)
    ours = OneHotCategorical(logits=logits).sample((2,))
    torch.manual_seed(0)
    assert torch.equal(ours, dist.OneHotCategorical(logits=logits).sample((2,)))  # same draws
    expanded = OneHotCategorical(logits=logits[0, 0]).expand((B,))
    assert type(expanded) is OneHotCategorical and expanded.sample().shape == (B, 7)
    assert isinstance(expanded, dist.OneHotCategorical)  # what Pyro and the probe recognize
    assert torch.equal(OneHotCategorical(logits=logits).mode, F.one_hot(logits.argmax(-1), 7).float())

    def draw(sampler, value):
        return (sampler(logits=value).sample() * value).sum()

    with pyro.validation_enabled(False):
        graph = make_fx(lambda v: draw(OneHotCategorical, v))(logits)
        with pytest.raises(RuntimeError, match="_local_scalar_dense"):  # F.one_hot reads the data
            make_fx(lambda v: draw(dist.OneHotCategorical, v))(logits)
    torch.manual_seed(3)
    replayed = graph(logits)
    torch.manual_seed(3)
    assert torch.equal(replayed, draw(OneHotCategorical, logits))


def test_sbn_is_rebars_linear_and_nonlinear_net(x):
    linear = build_model(make_config({"model": "sbn"}))  # the benchmark's one-layer linear SBN
    shapes = [tuple(p.shape) for p in linear.parameters()]
    assert shapes == [(200, 784), (200,), (784, 200), (784,), (200,)]  # q, p(x|z1), prior logits
    nonlinear = build_model(make_config({"model": "sbn", "sbn_mapping": "nonlinear"}))
    layers = [(m.in_features, m.out_features) for m in nonlinear.encoders[0].modules() if isinstance(m, nn.Linear)]
    assert layers == [(784, 200), (200, 200), (200, 200)]
    assert [type(m) for m in nonlinear.encoders[0].net][1] is nn.Tanh
    w = linear.encoders[0].output_layer.weight  # TF variance scaling: std sqrt(2.6/784) cut at 2 std
    bound = 2 * math.sqrt(2.6 / 784)
    assert w.abs().max() <= bound and abs(w.std().item() / math.sqrt(2 / 784) - 1) < 0.05
    assert not linear.encoders[0].output_layer.bias.any() and not linear.prior.logits.any()
    mean = torch.rand(784) * 0.8 + 0.1
    linear.init_from_data(mean)  # REBAR's centred input and train_bias
    assert torch.equal(linear.x_mean, mean)
    torch.testing.assert_close(linear.decoders[0].output_layer.bias, torch.logit(mean))
    model, guide = traces(linear, x)
    q = guide.nodes["z1"]["fn"].base_dist
    torch.testing.assert_close(q.logits, linear.encoders[0](x - mean))
    z1 = guide.nodes["z1"]["value"]
    torch.testing.assert_close(model.nodes["x"]["fn"].base_dist.logits, linear.decoders[0](2 * z1 - 1))


@pytest.mark.parametrize("options", [SBN, SBN2, CATEGORICAL], ids=["sbn", "sbn2", "categorical"])
def test_sites_shapes_and_broadcasting(options, x):
    model = build_model(make_config(options))
    model_trace, guide_trace = traces(model, x)
    names = [f"z{i + 1}" for i in range(len(options["latent_dim"]))] if options["model"] == "sbn" else ["z"]
    shapes = {"z": (3, 4)} if options["model"] == "categorical" else \
        {f"z{i + 1}": (d,) for i, d in enumerate(options["latent_dim"])}
    assert [n for n, s in guide_trace.nodes.items() if s["type"] == "sample"] == ["data", *names]
    for name in names:
        for trace in (model_trace, guide_trace):
            fn = trace.nodes[name]["fn"]
            assert fn.batch_shape == (B,) and fn.event_shape == shapes[name] and fn.support.is_discrete
            assert not fn.has_rsample
    # K particles at once, as the test ELBO and log p(x) draw them: (K, B) log-weights
    weights = log_weights(trace_particles(model.model, model.guide, x, num_samples=3))
    assert weights.shape == (3, B) and torch.isfinite(weights).all()
    # enumeration's leading (S, 1) dims: the model at a top value of shape (S, 1, B, ...)
    top = names[-1]
    value = guide_trace.nodes[top]["value"].expand(2, 1, B, *shapes[top])
    conditioned = poutine.trace(poutine.condition(model.model, data={top: value})).get_trace(x)
    assert conditioned.nodes["x"]["fn"].batch_shape == (2, 1, B)


@pytest.mark.parametrize("options", [SBN, SBN2, CATEGORICAL], ids=["sbn", "sbn2", "categorical"])
def test_compiled_tracegraph_step_is_the_eager_one(options, x):
    cfg = make_config(options)
    assert cfg.model.estimator == "score" and cfg.objective.elbo == "tracegraph"  # the family's defaults
    model = build_model(cfg)
    elbo, params = build_objective(cfg), list(model.parameters())
    assert_compiled_equals_eager(elbo, model.model, model.guide, params, x)


def test_family_defaults_and_the_estimator_default():
    sbn, categorical, vae = (make_config({"model": m}) for m in ("sbn", "categorical", "vae"))
    assert (sbn.model.latent_dim, sbn.model.sbn_mapping, sbn.model.discrete_prior) == ([200], "linear", "learned")
    assert (categorical.model.latent_dim, categorical.model.categories, categorical.model.hidden,
            categorical.model.discrete_prior) == ([20], 10, [512, 256], "uniform")
    assert (vae.model.estimator, vae.objective.elbo) == ("reparam", "trace")  # unchanged
    assert Config.default("estimator") is None  # the family decides
    saved = vae.to_flat()  # a saved run's config reads back the same
    assert make_config(saved) == vae and saved["estimator"] == "reparam"
    assert isinstance(build_model(make_config({"model": "sbn", "latent_dim": [6, 4, 3]})), SigmoidBeliefNet)
    assert not build_model(make_config({**CATEGORICAL, "discrete_prior": "uniform"})).prior.logits.requires_grad
    assert build_model(make_config({**CATEGORICAL, "discrete_prior": "learned"})).prior.logits.requires_grad


@pytest.mark.parametrize("options, phrases", [
    ({"model": "sbn", "prior": "vamp"}, ["prior is not read by model='sbn'", "Bernoulli", "discrete_prior"]),
    ({"model": "categorical", "prior": "mog"}, ["prior is not read by model='categorical'"]),
    ({"model": "sbn", "estimator": "reparam"}, ["estimator='reparam' cannot train model='sbn'", "score"]),
    ({"model": "categorical", "estimator": "reparam"}, ["no reparameterization"]),
    ({"model": "sbn", "hidden": [50]}, ["hidden [50] is not read by sbn_mapping='linear'"]),
    ({"model": "sbn", "activation": "relu"}, ["activation is not read by model='sbn'"]),
    ({"model": "sbn", "categories": 3}, ["categories is not read by model='sbn'"]),
    ({"model": "categorical", "arch": "conv"}, ["arch is not read by model='categorical'"]),
    ({"model": "categorical", "upper_hidden": [9]}, ["upper_hidden is not read"]),
    ({"model": "categorical", "logvar_range": [-6, 2]}, ["logvar_range is not read"]),
    ({"model": "vae", "sbn_mapping": "nonlinear"}, ["sbn_mapping is read by model='sbn' only"]),
    ({"model": "hvae", "discrete_prior": "learned"}, ["discrete_prior is not read by model='hvae'"]),
    ({"model": "vae", "categories": 3}, ["categories is not read by model='vae'"]),
    ({"model": "categorical", "latent_dim": [20, 10]}, ["has 1 latent layer(s)"]),
    ({"model": "categorical", "categories": 1}, ["categories must be at least 2"]),
    ({"model": "categorical", "elbo": "meanfield"}, ["needs a reparameterized guide"]),
])
def test_refusals_in_one_line(options, phrases):
    with pytest.raises(ConfigError) as e:
        make_config(options)
    assert "\n" not in str(e.value)
    for phrase in phrases:
        assert phrase in str(e.value)


def test_a_prior_module_is_refused_for_a_discrete_family():
    with pytest.raises(ConfigError, match="takes no prior module"):
        build_model(make_config(SBN), prior=nn.Linear(1, 1))


def test_user_models_receive_categories_and_refuse_sbn_mapping(monkeypatch):
    class Discrete(nn.Module):
        def __init__(self, latent_dim, categories, discrete_prior):
            super().__init__()
            self.given = (latent_dim, categories, discrete_prior)

        def model(self, x): ...

        def guide(self, x): ...

    monkeypatch.setattr("pyro_vae.models.import_model", lambda path: Discrete)
    built = build_model(Config.from_flat(model="my:Discrete", categories=5, discrete_prior="learned"))
    assert built.given == ([50], 5, "learned")
    with pytest.raises(ConfigError, match="sbn_mapping is read by model='sbn' only"):
        make_config({"model": f"{USER}:TorchOneHotVAE", "sbn_mapping": "nonlinear"})


def test_a_model_failing_under_particles_is_refused_at_start_up(data_dir, tmp_path, x):
    cfg = make_config({"model": f"{USER}:UnbroadcastM2", "latent_dim": [2]})
    model = build_model(cfg)
    state = torch.get_rng_state()
    with pytest.raises(ConfigError) as e:
        model_structure(model, cfg, x)
    message = str(e.value)
    assert "\n" not in message and "the guide fails with 2 particles drawn at once, after its site 'y'" in message
    assert "(K, B, ...)" in message and torch.equal(torch.get_rng_state(), state)  # isolated
    with pytest.raises(ConfigError, match="2 particles drawn at once"):  # before any epoch: nothing saved
        train({**TINY, "data_dir": data_dir, "model": f"{USER}:UnbroadcastM2",
               "out": str(tmp_path / "run")}, log=quiet, progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_torch_one_hot_runs_eagerly_with_the_reason(data_dir):
    lines = []
    trainer = Trainer(make_config({**TINY, "data_dir": data_dir, "model": f"{USER}:TorchOneHotVAE",
                                   "latent_dim": [2]}), in_memory=True, log=lines.append, progress=False)
    how = trainer.step.prepare(torch.bernoulli(trainer.data.train[:32]))
    assert how.startswith("eager") and READS_A_VALUE in how and "\n" not in how
    ours = Trainer(make_config({**TINY, "data_dir": data_dir, **CATEGORICAL}), in_memory=True,
                   log=quiet, progress=False)
    assert ours.step.prepare(torch.bernoulli(ours.data.train[:32])).startswith("compiled")
