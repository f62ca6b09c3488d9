"""The estimators for discrete (Bernoulli) guides against exact gradients, their variance, their
compiled step and their refusals, on a sigmoid belief net small enough to enumerate
(:mod:`support.bernoulli_toy`: 3 latent units and 5 pixels, one layer or 3 + 2 in two layers).

Each unbiasedness test draws R = 20,000 independent gradients in one vectorized call (R copies of
the parameters, each seeing the same two images) and declares the mean equal to the exact
gradient when every element (up to 56) lies within 5 standard errors: a true statement fails
with probability ~3e-5, and the seeds are fixed, so the outcome is reproducible. The standard
errors are also checked to be small against the gradient itself, so a biased estimator cannot
pass by being noisy.
"""

import math
import re

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceGraph_ELBO
from support import assert_one_line_error, run_script
from support.bernoulli_toy import BernoulliToy
from support.compiled import assert_compiled_equals_eager

from pyro_vae.config import make_config
from pyro_vae.core.errors import ConfigError
from pyro_vae.infer.elbos import ARM_ELBO, REBAR_ELBO, VIMCO_ELBO, DisARM_ELBO
from pyro_vae.infer.objectives import build_objective, model_structure
from pyro_vae.models import build_model

Z_MAX, DRAWS = 5.0, 20_000
LAYERS = {"one-layer": [3], "two-layer": [3, 2]}
X = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0, 1.0]])  # every pixel on somewhere


class PlainIWAEScore(VIMCO_ELBO):
    """The K-sample bound's plain score-function gradient: every sample's score term weighted by
    the whole bound L (no baseline), what VIMCO improves on."""

    def control_variates(self, log_w):
        return torch.zeros_like(log_w)


def draw_gradients(elbo, layers, draws=DRAWS, warm_up=0, **options):
    """``(draws, P)``: one flattened gradient (encoder, then decoder) per parameter copy."""
    pyro.clear_param_store()
    toy = BernoulliToy(latent_dim=layers, copies=draws, **options)
    x = X.repeat(draws, 1)
    for _ in range(warm_up + 1):  # a baseline's decaying average settles first
        toy.zero_grad(set_to_none=True)
        elbo.loss_and_grads(toy.model, toy.guide, x)
    return torch.cat([p.grad.reshape(draws, -1) for p in toy.gradient_params()], 1)


def exact_gradient(layers, k=None):
    """The exact gradient of minus the ELBO (or of the K-sample bound) at the toy's parameters."""
    toy = BernoulliToy(latent_dim=layers)
    objective = toy.exact_elbo(X) if k is None else toy.exact_iwae(X, k)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(-objective, toy.gradient_params())])


def encoder_variance(grads, layers):
    """Summed per-element variance of the encoder's gradient (the leading elements)."""
    size = sum(p[0].numel() for p in BernoulliToy(latent_dim=layers).encoder.values())
    return grads[:, :size].var(0).sum().item()


ESTIMATORS = {  # name: (objective, toy options, K of the exact bound (None: the ELBO), warm-up calls)
    "score/trace": (Trace_ELBO, {}, None, 0),
    "score/tracegraph": (TraceGraph_ELBO, {}, None, 0),
    "score/tracegraph+avg": (TraceGraph_ELBO, {"baseline": "avg"}, None, 20),
    "score/tracegraph+nn": (TraceGraph_ELBO, {"baseline": "nn"}, None, 20),
    "score/tracegraph+nn-only": (TraceGraph_ELBO, {"baseline": "nn-only"}, None, 20),
    "score/iwae-K3": (lambda: PlainIWAEScore(num_particles=3), {}, 3, 0),
    "vimco-K3": (lambda: VIMCO_ELBO(num_particles=3), {}, 3, 0),
    "arm": (ARM_ELBO, {}, None, 0),
    "disarm": (DisARM_ELBO, {}, None, 0),
    "disarm-2groups": (lambda: DisARM_ELBO(num_particles=2), {}, None, 0),
    "rebar": (REBAR_ELBO, {"estimator": "rebar"}, None, 0),
    "relax": (REBAR_ELBO, {"estimator": "relax", "relax_output_std": 1.0}, None, 0),  # its network on
}
ONE_LAYER_ONLY = ("rebar", "relax")


def cases(names):
    """(estimator, layers) pairs: REBAR and RELAX take one Bernoulli layer."""
    return [(n, layers) for n in names for layers in LAYERS if n not in ONE_LAYER_ONLY or layers == "one-layer"]


@pytest.mark.parametrize("name, layers", cases(ESTIMATORS))
def test_gradient_is_unbiased(name, layers):
    make_elbo, options, k, warm_up = ESTIMATORS[name]
    torch.manual_seed(0)
    grads = draw_gradients(make_elbo(), LAYERS[layers], warm_up=warm_up, **options)
    exact = exact_gradient(LAYERS[layers], k)
    se = grads.std(0) / math.sqrt(len(grads))
    z = (grads.mean(0) - exact) / se
    assert z.abs().max() < Z_MAX, (name, layers, z)
    assert se.max() < 0.1 * exact.abs().max()  # precise enough to see a bias


@pytest.mark.parametrize("layers", LAYERS)
def test_vimco_and_disarm_are_quieter_than_the_score_function(layers):
    """At the same number of model evaluations: VIMCO against the K-sample bound's plain score
    gradient, DisARM (L + 1 evaluations) against the score-function ELBO gradient averaged over
    L + 1 samples, and DisARM against ARM (DisARM is ARM with the noise integrated out)."""
    sizes = LAYERS[layers]
    torch.manual_seed(1)
    var = {name: encoder_variance(draw_gradients(elbo, sizes), sizes) for name, elbo in {
        "score-K3": PlainIWAEScore(num_particles=3), "vimco-K3": VIMCO_ELBO(num_particles=3),
        "score": Trace_ELBO(num_particles=len(sizes) + 1, vectorize_particles=True),
        "arm": ARM_ELBO(), "disarm": DisARM_ELBO()}.items()}
    assert var["vimco-K3"] < 0.5 * var["score-K3"], var
    assert var["disarm"] < 0.5 * var["score"], var
    assert var["disarm"] < var["arm"], var


@pytest.mark.parametrize("estimator", ONE_LAYER_ONLY)
def test_rebar_and_relax_tune_their_control_variate_to_lower_the_variance(estimator):
    """40 Adam steps on the control variate alone (the encoder and decoder held) lower the
    encoder gradient's variance, measured on the same 20,000 draws before and after: REBAR by
    tuning eta and the temperature, RELAX by its network as well (from 2.73 to 2.53 and to 1.80
    when written; a difference of 10% is far beyond the noise of a variance over 20,000 draws,
    about 1% here)."""
    pyro.clear_param_store()
    toy = BernoulliToy(latent_dim=[3], copies=DRAWS, estimator=estimator)
    x, elbo = X.repeat(DRAWS, 1), REBAR_ELBO()

    def variance():
        torch.manual_seed(1)
        toy.zero_grad(set_to_none=True)
        elbo.loss_and_grads(toy.model, toy.guide, x)
        grads = torch.cat([p.grad.reshape(DRAWS, -1) for p in toy.gradient_params()], 1)
        return encoder_variance(grads, [3])

    before = variance()
    tuner = torch.optim.Adam(toy.control_variate.parameters(), lr=0.05)
    for step in range(40):
        torch.manual_seed(100 + step)
        toy.zero_grad(set_to_none=True)
        elbo.loss_and_grads(toy.model, toy.guide, x)
        tuner.step()
    assert variance() < 0.95 * before


COMPILED = {"vimco": lambda: VIMCO_ELBO(num_particles=3), "arm": ARM_ELBO, "disarm": DisARM_ELBO,
            "disarm-2groups": lambda: DisARM_ELBO(num_particles=2), "rebar": REBAR_ELBO, "relax": REBAR_ELBO}


@pytest.mark.parametrize("name, layers", cases(COMPILED))
def test_compiled_step_gives_the_eager_loss_and_gradients(name, layers):
    pyro.clear_param_store()
    options = {"estimator": name, "relax_output_std": 1.0} if name in ONE_LAYER_ONLY else {}
    toy, elbo = BernoulliToy(latent_dim=LAYERS[layers], **options), COMPILED[name]()
    x, params = X.repeat(2, 1), list(toy.parameters())
    assert_compiled_equals_eager(elbo, toy.model, toy.guide, params, x)


def test_the_loss_is_minus_the_elbo_or_the_bound():
    """The loss value estimates -ELBO (arm, disarm, rebar) or minus the K-sample bound (vimco)."""
    toy = BernoulliToy(latent_dim=[3, 2])
    x = X.repeat(20_000, 1)
    for elbo, exact in ((DisARM_ELBO(), toy.exact_elbo(X)), (ARM_ELBO(), toy.exact_elbo(X)),
                        (VIMCO_ELBO(num_particles=3), toy.exact_iwae(X, 3))):
        loss = elbo.loss(toy.model, toy.guide, x) / 20_000
        assert math.isclose(loss, -exact.item(), rel_tol=0.01), (type(elbo).__name__, loss, exact)
    toy = BernoulliToy(latent_dim=[3], estimator="rebar")  # rebar, relax: one layer
    loss = REBAR_ELBO().loss(toy.model, toy.guide, x) / 20_000
    assert math.isclose(loss, -toy.exact_elbo(X).item(), rel_tol=0.01), loss


def test_disarm_is_the_default_objective_of_its_estimator():
    assert make_config({"estimator": "disarm"}).objective.elbo == "disarm"
    assert make_config({"estimator": "arm"}).objective.elbo == "arm"
    cfg = make_config({"model": "support.bernoulli_toy:BernoulliToy", "latent_dim": [3, 2],
                       "estimator": "disarm", "num_particles": 2})
    elbo = build_objective(cfg)
    assert isinstance(elbo, DisARM_ELBO) and elbo.num_particles == 2
    toy = build_model(cfg)
    assert model_structure(toy, cfg, torch.bernoulli(torch.full((2, 784), 0.5))).discrete_sites == ["z2", "z1"]


@pytest.mark.parametrize("options, message", [
    ({"estimator": "disarm", "elbo": "iwae", "num_particles": 5},
     "estimator='disarm' is its own objective (elbo='disarm', the default with it), and elbo='iwae'"),
    ({"estimator": "arm", "elbo": "trace"}, "estimator='arm' is its own objective"),
    ({"estimator": "reparam", "elbo": "disarm"}, "elbo='disarm' estimates the gradient of Bernoulli sites"),
    ({"estimator": "disarm", "baseline": "nn"}, "elbo='disarm' needs no baseline"),
    ({"estimator": "score", "elbo": "vimco"}, "elbo='vimco' is a K-sample bound"),
    ({"estimator": "score", "elbo": "vimco", "num_particles": 5, "baseline": "avg"},
     "elbo='vimco' ignores baselines"),
    ({"model": "sbn", "elbo": "rebar"},
     "elbo='rebar' trains the control variate that estimator='rebar' builds into the model"),
    ({"estimator": "rebar", "elbo": "relax"}, "estimator='rebar' is its own objective"),
    ({"estimator": "relax", "num_particles": 2}, "elbo='relax' draws one sample per image"),
    ({"estimator": "rebar", "baseline": "avg"}, "elbo='rebar' needs no baseline"),
])
def test_impossible_combinations_are_refused(options, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config(options)


@pytest.mark.parametrize("estimator", ["arm", "disarm"])
def test_a_normal_guide_is_refused_at_start_up(estimator):
    cfg = make_config({"estimator": estimator, "hidden": [8], "latent_dim": [2]})
    model = build_model(cfg)
    with pytest.raises(ConfigError) as error:
        model_structure(model, cfg, torch.bernoulli(torch.full((2, 784), 0.5)))
    assert str(error.value) == (
        f"estimator={estimator!r} is for Bernoulli latent sites (e.g. model='sbn'), but model 'vae' "
        "samples 'z' from a Normal in its guide: use estimator='reparam' or estimator='score' there")
    with pytest.raises(ValueError, match="need every latent site of the guide to be Bernoulli; z is not"):
        DisARM_ELBO().loss(model.model, model.guide, torch.bernoulli(torch.full((2, 784), 0.5)))


def test_rebar_refuses_what_it_cannot_train_at_start_up():
    """Two Bernoulli layers, and a Bernoulli site without the control variate (a user model that
    does not build one), each refused with the way out, before any step."""
    x = torch.bernoulli(torch.full((2, 784), 0.5))
    cfg = make_config({"model": "sbn", "latent_dim": [4, 3], "estimator": "rebar"})
    with pytest.raises(ConfigError, match=re.escape(
            "estimator='rebar' here takes one layer of Bernoulli latents, and model 'sbn' has 2 (z2, z1): "
            "use one latent_dim, or estimator='disarm' for several layers")):
        model_structure(build_model(cfg), cfg, x)
    cfg = make_config({"model": "support.bernoulli_toy:BernoulliToy", "latent_dim": [3], "estimator": "relax"})
    toy = build_model(cfg)
    toy.control_variate = None  # a user model that passes no control variate
    with pytest.raises(ConfigError, match=re.escape("estimator='relax' needs a control variate in the "
                                                    "guide's site 'z1'")):
        model_structure(toy, cfg, x)


def test_the_command_line_refuses_in_one_line(capsys):
    status, err = run_script(capsys, "svi_train", "--estimator", "disarm", "--elbo", "iwae")
    assert_one_line_error(status, err, "--estimator disarm is its own objective", "drop --elbo")
