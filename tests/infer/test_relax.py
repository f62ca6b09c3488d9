"""Continuous relaxations (pyro_vae.infer.relax): the Concrete densities in logit space, finite where
torch's value-space ones break; the relaxed ELBO's limit as T -> 0 against sums over every code
of tiny Bernoulli and categorical models; its gradient as the pathwise derivative;
straight-through; compiled == eager with an annealed temperature; the refusals."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from support import assert_one_line_error, run_script
from support.relax_toys import BernoulliToy, CategoricalToy, TwoLayerBernoulliToy
from torch.distributions import kl_divergence
from torch.distributions.relaxed_bernoulli import LogitRelaxedBernoulli as TorchLogitRelaxedBernoulli
from torch.distributions.relaxed_bernoulli import RelaxedBernoulli
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical, RelaxedOneHotCategorical

from pyro_vae.config import make_config
from pyro_vae.core.errors import ConfigError
from pyro_vae.infer.importance import trace_particles
from pyro_vae.infer.lowering import differentiable_loss, tensor_items
from pyro_vae.infer.objectives import model_structure
from pyro_vae.infer.relax import (
    ExpRelaxedOneHot,
    LogitRelaxedBernoulli,
    Relaxation,
    relaxed_distribution,
    temperature_at,
)
from pyro_vae.models import build_model
from pyro_vae.training.step import make_optimizer, make_step, scheduled_values

F64 = torch.float64


def relaxed(toy, temperature, straight_through=False, **options):
    """``toy``'s model and guide under a :class:`Relaxation` (``options``: its scoring, shift)."""
    relaxation = Relaxation(torch.tensor(temperature, dtype=F64), straight_through, **options)
    return relaxation(toy.model), relaxation(toy.guide)


# --- the densities -------------------------------------------------------------------------------

def test_densities_are_torchs_where_torchs_are_finite():
    torch.manual_seed(0)
    temperature = torch.tensor(0.7, dtype=F64)
    a, b = torch.randn(4, 3, dtype=F64), torch.randn(4, 3, dtype=F64)
    y = ExpRelaxedOneHot(temperature, a).rsample((5,))
    assert torch.allclose(ExpRelaxedOneHot(temperature, b).log_prob(y),
                          ExpRelaxedCategorical(temperature, logits=b).log_prob(y), atol=1e-12)
    y = LogitRelaxedBernoulli(temperature, a).rsample((5,))
    assert torch.allclose(LogitRelaxedBernoulli(temperature, b).log_prob(y),
                          TorchLogitRelaxedBernoulli(temperature, logits=b).log_prob(y), atol=1e-12)


def test_low_temperature_and_large_logits_stay_finite():
    """At T = 0.1 with large logits the relaxed value is exactly 0 or 1 (or has exact zeros on
    the simplex) in float32: a density of the value is then wrong (torch's RelaxedBernoulli clamps
    the value, tens of nats off) or NaN (RelaxedOneHotCategorical takes log 0); the density of the
    logit stays finite and right, and so do the whole relaxed ELBO and its gradients."""
    torch.manual_seed(0)
    temperature, logits = torch.tensor(0.1), 30 * torch.randn(1000).sign()
    y = LogitRelaxedBernoulli(temperature, logits).rsample()
    value = torch.sigmoid(y)
    assert ((value == 0) | (value == 1)).all()  # saturated

    def log_ratio(t, a, y):  # the model's (logits -a) over the guide's (logits a), at y
        return LogitRelaxedBernoulli(t, -a).log_prob(y) - LogitRelaxedBernoulli(t, a).log_prob(y)

    exact = log_ratio(temperature.double(), logits.double(), y.double())
    assert torch.allclose(log_ratio(temperature, logits, y).double(), exact, rtol=1e-5)
    clamped = (RelaxedBernoulli(temperature, logits=-logits).log_prob(value)
               - RelaxedBernoulli(temperature, logits=logits).log_prob(value))
    assert (clamped.double() - exact).abs().max() > 10
    logits = 10 * torch.randn(100, 5)
    y = ExpRelaxedOneHot(temperature, logits).rsample()
    assert (y.exp() == 0).any()
    assert not torch.isfinite(RelaxedOneHotCategorical(temperature, logits=logits, validate_args=False)
                              .log_prob(y.exp())).all()
    assert torch.isfinite(ExpRelaxedOneHot(temperature, -logits).log_prob(y)).all()
    for toy in (BernoulliToy(x_dim=20, latent_dim=[6], scale=30.0), CategoricalToy(x_dim=20, scale=30.0)):
        x = torch.bernoulli(torch.full((8, 20), 0.5))
        for straight_through in (False, True):
            relaxation = Relaxation(torch.tensor(0.1), straight_through)
            with tensor_items():
                loss = differentiable_loss(Trace_ELBO(), relaxation(toy.model), relaxation(toy.guide), x)
            grads = torch.autograd.grad(loss, list(toy.parameters()))
            assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)


# --- the relaxed ELBO as T -> 0 ------------------------------------------------------------------

def relaxed_terms(toy, x, temperature, straight_through=False, samples=4000, **options):
    """(K, B) terms of the relaxed ELBO from the same noise (seed 0): log p(x | z) and
    log p_T(z) - log q_T(z | x) summed over the latent sites (as ``options`` score them)."""
    model, guide = relaxed(toy, temperature, straight_through, **options)
    torch.manual_seed(0)
    traces = trace_particles(model, guide, x, num_samples=samples)
    site = traces.model.nodes["x"]
    reconstruction = site["fn"].log_prob(site["value"])
    latent = sum(trace.nodes[name]["fn"].log_prob(trace.nodes[name]["value"]) * sign
                 for name in ("z",) for trace, sign in ((traces.model, 1), (traces.guide, -1)))
    return reconstruction.detach(), latent.detach()


@pytest.mark.parametrize("toy_class", [BernoulliToy, CategoricalToy])
def test_relaxed_elbo_converges_to_the_discrete_reconstruction_plus_the_relaxed_kl(toy_class):
    """As T -> 0 the relaxed sample tends to the discrete one drawn from the same noise, so
    E log p(x | z_T) tends to the discrete E_q log p(x | z) (summed over every code here). The
    latent term log p_T(z) - log q_T(z | x) does not depend on T at all (per draw: the density
    ratio of two Concretes of one temperature is a function of the noise alone), and its mean,
    the relaxed KL, exceeds the discrete KL (the discrete code is a function of the relaxed one:
    data processing): the relaxed ELBO's limit is a lower bound on the discrete ELBO, below it by
    that gap, which no temperature closes."""
    toy = toy_class(dtype=F64)
    torch.manual_seed(1)
    x = torch.bernoulli(torch.full((4, 5), 0.4, dtype=F64))
    with torch.no_grad():
        exact = toy.exact(x)
    hard, latent = relaxed_terms(toy, x, 1.0, straight_through=True)  # the discrete z, from the same noise
    samples = hard.shape[0]
    stderr = hard.std(0) / math.sqrt(samples)
    assert ((hard.mean(0) - exact["reconstruction"]).abs() < 4 * stderr).all()
    errors = []
    for temperature in (1.0, 0.3, 0.1, 0.03, 0.01):
        reconstruction, latent_t = relaxed_terms(toy, x, temperature)
        assert torch.allclose(latent_t, latent, rtol=0, atol=1e-12)  # exactly T-invariant
        errors.append((reconstruction - hard).abs().mean().item())
    assert all(later < 0.5 * earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.01
    relaxed_kl = -latent.mean(0)
    gap = relaxed_kl - exact["kl"]
    assert (gap > 4 * latent.std(0) / math.sqrt(samples)).all(), gap


@pytest.mark.parametrize("toy_class", [BernoulliToy, CategoricalToy])
@pytest.mark.parametrize("temperature", [1.0, 0.1])
def test_meanfield_under_relax_is_the_relaxed_reconstruction_minus_the_discrete_kl(toy_class, temperature):
    """``meanfield`` trains Jang et al.'s objective: the likelihood at the relaxed sample, and the
    KL of the discrete q and p in closed form, equal to the sum over every code (toy.exact),
    for the same noise, to float64 rounding; so as T -> 0 it tends to the discrete ELBO, where
    Maddison et al.'s relaxed ELBO stays below it (the test above). The plain Concretes still
    have no KL (an unmarked pair)."""
    toy = toy_class(dtype=F64)
    torch.manual_seed(1)
    x = torch.bernoulli(torch.full((4, 5), 0.4, dtype=F64))
    relaxation = Relaxation(torch.tensor(temperature, dtype=F64), scoring="discrete_kl")
    model, guide = relaxation(toy.model), relaxation(toy.guide)
    torch.manual_seed(0)
    with tensor_items():
        loss = differentiable_loss(TraceMeanField_ELBO(max_plate_nesting=1), model, guide, x)
    torch.manual_seed(0)
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    site = model_trace.nodes["x"]
    reconstruction = site["fn"].log_prob(site["value"]).sum()
    with torch.no_grad():
        exact_kl = toy.exact(x)["kl"].sum()
    assert loss.item() == pytest.approx((exact_kl - reconstruction).item(), rel=1e-12)
    fn = guide_trace.nodes["z"]["fn"]
    unmarked = relaxed_distribution(toy.latent(toy.encoder_logits(x)), torch.tensor(temperature, dtype=F64))
    with pytest.raises(NotImplementedError):
        kl_divergence(unmarked, fn)


def test_meanfield_under_relax_refuses_a_guide_that_is_not_mean_field():
    x = torch.bernoulli(torch.full((2, 5), 0.5))
    with pytest.raises(ConfigError, match="meanfield' is not sound for model"):
        model_structure(TwoLayerBernoulliToy(), make_config({"relax": "concrete", "elbo": "meanfield"}), x)


# --- the REBAR code's objective: the discrete log-mass at the relaxed value, the shifted sample ---

@pytest.mark.parametrize("family", [LogitRelaxedBernoulli, ExpRelaxedOneHot])
def test_mass_scoring_is_the_discrete_log_mass_linear_in_the_relaxed_value(family):
    """``mass`` scores y by the discrete distribution's log-mass, linear in z: at a vertex (z one
    of the discrete values) it is that value's log-probability, and between vertices the
    interpolation of theirs; the logits of ``shift`` do not enter it."""
    torch.manual_seed(0)
    temperature, logits = torch.tensor(0.5, dtype=F64), torch.randn(7, 4, dtype=F64)
    relaxed = family(temperature, logits, scoring="mass", shift=True)
    if family is LogitRelaxedBernoulli:
        discrete, big = dist.Bernoulli(logits=logits), torch.full((7, 4), 40.0, dtype=F64)
        for vertex, y in ((1.0, big), (0.0, -big)):  # sigmoid(+-40) is 1 or 0 to float64 rounding
            assert torch.allclose(relaxed.log_prob(y), discrete.log_prob(torch.full_like(logits, vertex)),
                                  rtol=0, atol=1e-12)
        y = relaxed.rsample((3,))
        z = torch.sigmoid(y)
        one = torch.ones((), dtype=F64)
        expected = z * dist.Bernoulli(logits=logits).log_prob(one) + \
            (1 - z) * dist.Bernoulli(logits=logits).log_prob(1 - one)
    else:
        discrete = dist.OneHotCategorical(logits=logits)
        for k in range(4):
            vertex = torch.eye(4, dtype=F64)[k].expand(7, 4)
            y = torch.where(vertex > 0, 0.0, -1e4).to(F64)  # log of the vertex, up to exp(-1e4) = 0
            assert torch.allclose(relaxed.log_prob(y), discrete.log_prob(vertex), rtol=0, atol=1e-12)
        y = relaxed.rsample((3,))
        expected = (y.exp() * logits.log_softmax(-1)).sum(-1)
    assert torch.allclose(relaxed.log_prob(y), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("family", [LogitRelaxedBernoulli, ExpRelaxedOneHot])
def test_the_shifted_sample_is_the_rebar_codes(family):
    """``shift`` draws y = (a + noise) / T + T / (T + 1) a, as ``_random_sample_soft`` with
    ``muprop_relaxation`` does in Tucker et al.'s code: from the same noise, the unshifted draw
    plus T / (T + 1) a (a log-softmax of it for a categorical); and its density is that of the
    Concrete of the logits a (1 + T^2 / (T + 1)), the draw's own distribution."""
    temperature, logits = torch.tensor(0.5, dtype=F64), torch.randn(6, 3, dtype=F64)
    torch.manual_seed(0)
    plain = family(temperature, logits).rsample((4,))
    torch.manual_seed(0)
    shifted = family(temperature, logits, shift=True).rsample((4,))
    expected = plain + temperature / (temperature + 1) * logits
    if family is ExpRelaxedOneHot:
        expected = expected.log_softmax(-1)
    assert torch.allclose(shifted, expected, rtol=0, atol=1e-12)
    sharper = family(temperature, logits * (1 + temperature ** 2 / (temperature + 1)))
    assert torch.allclose(family(temperature, logits, shift=True).log_prob(shifted), sharper.log_prob(shifted),
                          rtol=0, atol=1e-12)


@pytest.mark.parametrize("toy_class", [BernoulliToy, CategoricalToy])
@pytest.mark.parametrize("shift", [False, True])
def test_the_mass_objective_tends_to_the_discrete_elbo(toy_class, shift):
    """Scored by the discrete log-mass, the relaxed ELBO of one noise draw tends, as T -> 0, to the
    discrete ELBO of the code that noise gives (the relaxed value tends to a vertex, where the
    log-mass is the discrete log-probability), and its mean over draws to the exact ELBO, summed
    over every code (within 4 standard errors): no gap remains, unlike Maddison et al.'s relaxed
    ELBO (above). At T = 1 (unshifted) it is above the discrete ELBO, by 20 to 40 standard errors
    here (it is no bound: the decoder reads fractional codes): a check that the test can fail."""
    toy = toy_class(dtype=F64)
    torch.manual_seed(1)
    x = torch.bernoulli(torch.full((4, 5), 0.4, dtype=F64))
    with torch.no_grad():
        exact = toy.exact(x)["elbo"]

    def relaxed_elbo(temperature, shift=shift):
        reconstruction, latent = relaxed_terms(toy, x, temperature, scoring="mass", shift=shift)
        return reconstruction + latent

    cold = relaxed_elbo(0.005)
    stderr = cold.std(0) / math.sqrt(cold.shape[0])
    assert ((cold.mean(0) - exact).abs() < 4 * stderr).all(), (cold.mean(0) - exact) / stderr
    if not shift:
        warm = relaxed_elbo(1.0)
        assert ((warm.mean(0) - exact) > 10 * warm.std(0) / math.sqrt(warm.shape[0])).all()


# --- the gradient ---------------------------------------------------------------------------------

@pytest.mark.parametrize("toy_class", [BernoulliToy, CategoricalToy, TwoLayerBernoulliToy])
def test_relaxed_gradient_is_the_pathwise_derivative_of_the_relaxed_objective(toy_class):
    """With the noise held fixed the relaxed objective is a smooth function of the parameters:
    its autograd gradient (what the step uses) equals central finite differences, so Pyro took
    every relaxed site as reparameterized (a score-function term would not appear in a finite
    difference at fixed noise)."""
    toy = toy_class().double()
    x = torch.bernoulli(torch.full((3, 5), 0.5, dtype=F64))
    model, guide = relaxed(toy, 0.5)
    elbo = Trace_ELBO(num_particles=2, vectorize_particles=True, max_plate_nesting=1)

    def loss():
        torch.manual_seed(0)
        with tensor_items():
            return differentiable_loss(elbo, model, guide, x)

    params = list(toy.parameters())
    grads = torch.autograd.grad(loss(), params)
    step = 1e-6
    with torch.no_grad():
        for p, g in zip(params, grads):
            for i in range(min(3, p.numel())):
                entry = p.view(-1)[i].item()
                p.view(-1)[i] = entry + step
                up = loss()
                p.view(-1)[i] = entry - step
                down = loss()
                p.view(-1)[i] = entry
                assert (up - down).item() / (2 * step) == pytest.approx(g.view(-1)[i].item(), rel=1e-5, abs=1e-7)


# --- straight-through -----------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["bernoulli", "one-hot"])
def test_straight_through_hands_the_program_the_discrete_value_with_the_relaxed_gradient(family):
    logits = torch.randn(50, 4, requires_grad=True)
    weights = torch.randn(50, 4)

    def program():
        fn = dist.Bernoulli(logits=logits) if family == "bernoulli" else dist.OneHotCategorical(logits=logits)
        return pyro.sample("z", fn.to_event(1))

    values, grads = {}, {}
    for straight_through in (False, True):
        torch.manual_seed(0)
        values[straight_through] = Relaxation(torch.tensor(0.5), straight_through)(program)()
        grads[straight_through], = torch.autograd.grad((weights * values[straight_through]).sum(), logits)
    soft, hard = values[False], values[True]
    assert ((hard == 0) | (hard == 1)).all() and not ((soft == 0) | (soft == 1)).all()
    if family == "bernoulli":
        assert torch.equal(hard, (soft > 0.5).float())
    else:
        assert torch.equal(hard.sum(-1), torch.ones(50)) and torch.equal(hard.argmax(-1), soft.argmax(-1))
    assert torch.equal(grads[True], grads[False])  # the relaxed sample's gradient


# --- the compiled step --------------------------------------------------------------------------

@pytest.mark.parametrize("toy_class, options", [
    (BernoulliToy, {"elbo": "trace"}), (CategoricalToy, {"elbo": "trace", "straight_through": True}),
    (BernoulliToy, {"elbo": "iwae", "num_particles": 3}), (CategoricalToy, {"elbo": "stl"}),
    (TwoLayerBernoulliToy, {"elbo": "dreg", "num_particles": 3}), (BernoulliToy, {"elbo": "meanfield"}),
    (CategoricalToy, {"elbo": "meanfield", "straight_through": True}),
    (BernoulliToy, {"relax": "concrete-mass", "relax_shift": True, "elbo": "trace"}),
    (CategoricalToy, {"relax": "concrete-mass", "elbo": "iwae", "num_particles": 3}),
    (BernoulliToy, {"relax_shift": True, "elbo": "meanfield"}),
], ids=lambda o: getattr(o, "__name__", None) or "+".join(map(str, o.values())))
def test_compiled_steps_equal_eager_ones_while_the_temperature_anneals(toy_class, options):
    cfg = make_config({"relax": "concrete", "temperature": 1.0, "temperature_anneal": 0.2,
                       "temperature_min": 0.3, **options})
    compiled_model, eager_model = toy_class(x_dim=30), toy_class(x_dim=30)
    compiled = make_step(cfg, compiled_model, make_optimizer(cfg, compiled_model))
    eager = make_step(make_config({**cfg.to_flat(), "compile": False}), eager_model,
                      make_optimizer(cfg, eager_model))
    x = torch.bernoulli(torch.full((6, 30), 0.3))
    assert compiled.prepare(x).startswith("compiled") and eager.prepare(x) == "eager (compile=False)"
    temperatures = []
    for step in range(6):
        values = scheduled_values(cfg, step, steps_per_epoch=3)
        temperatures.append(values["temperature"])
        compiled.set_inputs(values)
        eager.set_inputs(values)
        torch.manual_seed(step)
        a = compiled(x)
        torch.manual_seed(step)
        b = eager(x)
        assert math.isclose(a, b, rel_tol=1e-6)  # the eager loss is summed from Python floats
    assert len(set(temperatures)) == 6 and temperatures[-1] < 0.5
    assert len(compiled.lowered.graphs) == 1  # the temperature is an input, not a constant
    for (name, p), q in zip(compiled_model.named_parameters(), eager_model.parameters()):
        assert torch.equal(p, q), name  # bit for bit after six Adam steps


def test_temperature_schedule():
    cfg = make_config({"relax": "concrete", "temperature": 1.0, "temperature_anneal": 1e-3,
                       "temperature_min": 0.5})
    assert temperature_at(0, cfg.objective) == 1.0
    assert temperature_at(100, cfg.objective) == pytest.approx(math.exp(-0.1))
    assert temperature_at(10**6, cfg.objective) == 0.5
    assert temperature_at(10**6, make_config({"relax": "concrete"}).objective) == pytest.approx(2 / 3)


# --- what is refused, and the structure the objective is checked against ------------------------

@pytest.mark.parametrize("options, phrases", [
    ({"elbo": "vimco", "num_particles": 3, "estimator": "score"},
     ["relax='concrete' makes the discrete sites reparameterized, which elbo='vimco' does not train",
      "trace or tracegraph or meanfield or iwae"]),
    ({"elbo": "traceenum"}, ["which elbo='traceenum' does not train"]),
    ({"estimator": "disarm"}, ["estimator='disarm' estimates the gradient of discrete sites, which "
                               "relax='concrete' replaces by a reparameterized relaxation"]),
    ({"estimator": "score", "baseline": "avg"}, ["baseline reduces the variance", "drop baseline"]),
    ({"temperature_anneal": -1.0}, ["temperature_anneal must be 0"]),
    ({"temperature_anneal": 0.1, "temperature": 0.4}, ["temperature_min 0.5 is above temperature 0.4"]),
    ({"temperature": 0.0}, ["temperature must be positive"]),
    ({"temperature_min": 0.1}, ["temperature_min applies only with temperature_anneal R > 0"]),
    ({"relax": "none", "temperature": 0.5}, ["temperature applies only with relax='concrete'"]),
    ({"relax": "none", "straight_through": True}, ["straight_through applies only with relax='concrete'"]),
    ({"relax": "gumbel"}, ["unknown relax 'gumbel'; choose one of: none, concrete, concrete-mass"]),
    ({"relax": "none", "relax_shift": True}, ["relax_shift applies only with relax='concrete'"]),
    ({"relax": "concrete-mass", "elbo": "meanfield"},
     ["relax='concrete-mass' scores the latents by their discrete log-mass, which meanfield replaces",
      "use elbo trace, tracegraph, iwae or renyi, or relax='concrete'"]),
    ({"relax": "concrete-mass", "elbo": "stl"}, ["stl's dropped score term no longer has mean zero"]),
])
def test_refusals_at_validation(options, phrases):
    with pytest.raises(ConfigError) as error:
        make_config({"relax": "concrete", **options})
    message = str(error.value)
    assert "\n" not in message and all(p in message for p in phrases), message


def test_default_objective_under_relax_is_trace():
    assert make_config({"relax": "concrete", "estimator": "score"}).objective.elbo == "trace"
    assert make_config({"estimator": "score"}).objective.elbo == "tracegraph"
    # a reparameterized objective is no longer refused for a score-function estimator: the probe
    # of the relaxed model decides (a discrete model's estimator names nothing it relaxes)
    make_config({"relax": "concrete", "estimator": "score", "elbo": "iwae", "num_particles": 2})


def test_the_start_up_probe_runs_under_the_relaxation():
    x = torch.bernoulli(torch.full((2, 5), 0.5))
    toy = BernoulliToy()
    iwae = {"elbo": "iwae", "num_particles": 2}
    with pytest.raises(ConfigError, match="needs reparameterized guide sites"):
        model_structure(toy, make_config(iwae), x)  # discrete z: a score-function site
    structure = model_structure(toy, make_config({**iwae, "relax": "concrete"}), x)
    assert structure.discrete_sites == ["z"]  # the run's structure is the discrete model's


class CategoricalIndexModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(3))

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(logits=self.logits.expand(x.shape[0], 3)))
            logits = y.unsqueeze(-1).float().expand(*y.shape, x.shape[-1])
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Categorical(logits=self.logits.expand(x.shape[0], 3)))


def test_refusals_at_start_up():
    x = torch.bernoulli(torch.full((2, 784), 0.5))
    cfg = make_config({"relax": "concrete", "hidden": [8], "latent_dim": 2})
    with pytest.raises(ConfigError) as error:
        model_structure(build_model(cfg), cfg, x)
    assert str(error.value) == ("relax='concrete' relaxes discrete latent sites, and model 'vae' has none "
                                "(its latent sites z are continuous): drop relax")
    with pytest.raises(ConfigError) as error:
        model_structure(CategoricalIndexModel(), make_config({"relax": "concrete"}), x)
    assert "cannot relax site 'y'" in str(error.value) and "Categorical index" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_command_refuses_in_one_line_naming_flags(capsys, data_dir, tmp_path):
    out = tmp_path / "run"
    status, stderr = run_script(capsys, "svi_train", "--relax", "concrete", "--elbo", "traceenum",
                                "--data-dir", data_dir, "--out", out)
    assert_one_line_error(status, stderr, "--relax concrete makes the discrete sites reparameterized, which "
                                          "--elbo traceenum does not train; use --elbo trace or tracegraph")
    status, stderr = run_script(capsys, "svi_train", "--temperature", "0.5", "--data-dir", data_dir, "--out", out)
    assert_one_line_error(status, stderr, "--temperature applies only with --relax concrete, and relax is 'none'")
    status, stderr = run_script(capsys, "svi_train", "--relax", "concrete", "--limit-train", "64", "--limit-test", "16",
                                "--batch-size", "32", "--hidden", "16", "--latent-dim", "2", "--no-plots",
                                "--data-dir", data_dir, "--out", out)
    assert_one_line_error(status, stderr, "--relax concrete relaxes discrete latent sites, and model 'vae' has none")
    assert not (out / "metrics.jsonl").exists()  # refused before any epoch
