"""``--elbo traceenum`` (pyro_vae.infer.elbos.enumerated, pyro_vae.infer.enumeration): the loss and
gradient equal the exact sum over every joint value, compiled equals eager, guides the user
marked are honoured, and what cannot be enumerated is refused at start-up with its size."""

import math
import warnings

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceGraph_ELBO
from support import assert_one_line_error, run_script
from support.compiled import assert_compiled_equals_eager
from support.enumerable_toys import BernoulliToy, CategoricalToy, MixedToy

from pyro_vae.config import make_config
from pyro_vae.core.errors import ConfigError
from pyro_vae.infer.elbos.enumerated import EnumeratedELBO, check_enumeration
from pyro_vae.infer.enumeration import JointSupport, describe_support, hide_pyro_enumeration_note
from pyro_vae.infer.objectives import build_objective, model_structure
from pyro_vae.infer.warmup import LatentScale
from pyro_vae.models import build_model
from pyro_vae.models.estimators import ScoreFunctionNormal
from pyro_vae.models.sites import LatentSite, Structure

TOYS = {"bernoulli": BernoulliToy, "categorical": CategoricalToy}
CFG = make_config({"elbo": "traceenum"})


@pytest.mark.parametrize("num_particles", [1, 3])
@pytest.mark.parametrize("toy", TOYS)
def test_the_loss_and_gradient_are_the_exact_sum_over_every_joint_value(toy, num_particles):
    toy = TOYS[toy]()
    x = toy.sample_data(5)
    params = list(toy.parameters())
    with pyro.validation_enabled(True):
        loss = EnumeratedELBO(num_particles=num_particles).differentiable_loss(toy.model, toy.guide, x)
    exact = -toy.exact_elbo(x)
    assert torch.allclose(loss, exact, rtol=1e-6)
    grads = torch.autograd.grad(loss, params)
    exact_grads = torch.autograd.grad(exact, params)
    for g, e in zip(grads, exact_grads):
        assert torch.allclose(g, e, rtol=1e-5, atol=1e-5 * e.abs().max().item())


def test_kl_warmup_scales_the_latent_terms_and_not_the_probabilities_of_the_sum():
    toy = CategoricalToy()
    x = toy.sample_data(4)
    scale = LatentScale(torch.tensor(0.3))
    loss = EnumeratedELBO().differentiable_loss(scale(toy.model), scale(toy.guide), x)
    assert torch.allclose(loss, -toy.exact_elbo(x, beta=0.3), rtol=1e-6)


def test_continuous_sites_are_sampled_beside_the_sum():
    """With q(z | x, y) the posterior p(z | x, y), every draw of z gives log p(x, y) exactly, so
    the ELBO is sum_y q(y | x) [log p(x, y) - log q(y | x)] with no noise at all."""
    toy = MixedToy(guide="exact")
    x = toy.sample_data(6)
    loss = EnumeratedELBO(num_particles=2).differentiable_loss(toy.model, toy.guide, x)
    assert torch.allclose(loss, -toy.exact_elbo(x), rtol=1e-5)


def test_the_joint_support_lists_every_value_once_in_product_order():
    fn = pyro.distributions.OneHotCategorical(logits=torch.zeros(4, 2, 3)).to_event(1)
    support = JointSupport(fn.base_dist, 1).enumerate_support(expand=False)
    assert support.shape == (9, 1, 2, 3)
    indices = support.argmax(-1).reshape(9, 2).tolist()
    assert indices == [[i, j] for i in range(3) for j in range(3)]
    bits = JointSupport(pyro.distributions.Bernoulli(logits=torch.zeros(4, 3)), 1).enumerate_support()
    assert bits.shape == (8, 4, 3) and len({tuple(v) for v in bits[:, 0].tolist()}) == 8


@pytest.mark.parametrize("options", [{"toy": "bernoulli"}, {"toy": "categorical"},
                                     {"toy": "mixed", "num_particles": 2}, {"toy": "categorical", "beta": 0.3}],
                         ids=lambda o: str(o))
def test_the_compiled_step_gives_the_eager_loss_and_gradients(options):
    toy = {**TOYS, "mixed": MixedToy}[options["toy"]]()
    x = toy.sample_data(5)
    elbo = EnumeratedELBO(num_particles=options.get("num_particles", 1))
    params = list(toy.parameters())
    scale = LatentScale(torch.tensor(options["beta"])) if "beta" in options else None
    model, guide = (scale(toy.model), scale(toy.guide)) if scale else (toy.model, toy.guide)
    assert_compiled_equals_eager(elbo, model, guide, params, x, [scale] if scale else [],
                                 random=options["toy"] == "mixed")  # else all summed exactly


def test_the_registered_objective_is_the_enumerated_elbo():
    assert isinstance(build_objective(make_config({"elbo": "traceenum", "num_particles": 2})), EnumeratedELBO)


# --- guides the user marked ---------------------------------------------------------------------

def test_a_guide_marked_by_its_user_is_enumerated_by_traceenum_and_sampled_by_the_others():
    marked = BernoulliToy(mark=True)
    x = marked.sample_data(4)
    exact = -marked.exact_elbo(x).item()
    assert math.isclose(EnumeratedELBO().loss(marked.model, marked.guide, x), exact, rel_tol=1e-6)
    with warnings.catch_warnings(record=True) as caught, pyro.validation_enabled(True):
        hide_pyro_enumeration_note()  # as on import (pytest resets the filters for each test)
        torch.manual_seed(0)
        elbos = [cls(num_particles=100, vectorize_particles=True, max_plate_nesting=1)
                 for cls in (Trace_ELBO, TraceGraph_ELBO)]
        samples = [elbo.loss(marked.model, marked.guide, x) for elbo in elbos for _ in range(20)]
    assert not [w for w in caught if "enumerat" in str(w.message)]  # Pyro's garbled note is off
    mean, sd = sum(samples) / len(samples), torch.tensor(samples).std().item()
    assert abs(mean - exact) < 4 * sd / math.sqrt(len(samples))  # the Monte Carlo ELBO, unbiased


def test_a_guide_marked_sequential_keeps_its_mark():
    class Sequential(BernoulliToy):
        def guide(self, x):
            pyro.module("toy", self)
            with pyro.plate("data", x.shape[0]):
                pyro.sample("z", self.posterior(x), infer={"enumerate": "sequential"})

    toy = Sequential()
    x = toy.sample_data(3)
    assert math.isclose(EnumeratedELBO().loss(toy.model, toy.guide, x), -toy.exact_elbo(x).item(), rel_tol=1e-6)


# --- refusals at start-up ----------------------------------------------------------------------

@pytest.mark.parametrize("toy, expected", [
    (lambda: CategoricalToy(latents=20, classes=10), "site 'z': 10^20 joint values (20 categorical "
                                                     "latents of 10 classes) cannot be enumerated; "
                                                     "use latent_dim=3 or fewer, or elbo='tracegraph'"),
    (lambda: BernoulliToy(units=20), "site 'z': 2^20 joint values (20 Bernoulli units) cannot be "
                                     "enumerated; use latent_dim=12 or fewer"),
])
def test_a_site_too_large_to_enumerate_is_refused_with_its_size(toy, expected):
    toy = toy()
    with pytest.raises(ConfigError) as e:
        model_structure(toy, CFG, toy.sample_data(2))
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_sites_whose_product_is_too_large_are_refused_together():
    sites = tuple(LatentSite(n, (3,), False, frozenset(), "Bernoulli", True, 8) for n in ("z1", "z2"))
    with pytest.raises(ConfigError, match=r"sites z1, z2: 8 x 8 = 64 joint values together cannot "
                                          r"be enumerated \(at most 32\)"):
        check_enumeration(CFG, Structure(sites, ("z1", "z2")), None, None, limit=32)
    assert describe_support(sites[0]) == "2^3 joint values (3 Bernoulli units)"
    layers = (LatentSite("z2", (20,), False, frozenset(), "Bernoulli", True, 2**20), sites[0])
    with pytest.raises(ConfigError, match=r"site 'z2': 2\^20 joint values \(20 Bernoulli units\) cannot be "
                                          r"enumerated \(at most 4096 per data point\); use elbo='tracegraph'"):
        check_enumeration(CFG, Structure(layers, ("z1", "z2")), None, None)


def test_a_model_without_a_discrete_site_is_refused():
    cfg = make_config({"elbo": "traceenum", "hidden": [8], "latent_dim": [2]})
    with pytest.raises(ConfigError, match="elbo='traceenum' sums over the discrete latent sites of the "
                                          "guide, but model 'vae' has none; use elbo='trace'"):
        model_structure(build_model(cfg), cfg, torch.bernoulli(torch.full((2, 784), 0.5)))


class ScoreFunctionMixedToy(MixedToy):
    def guide(self, x):
        pyro.module("toy", self)
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", pyro.distributions.OneHotCategorical(logits=x @ self.q_y.T))
            loc = (x - y @ self.b) @ self.q_M.T + self.q_shift
            pyro.sample("z", ScoreFunctionNormal(loc, 1.0).to_event(1))


def test_a_continuous_score_function_site_is_refused():
    toy = ScoreFunctionMixedToy()
    with pytest.raises(ConfigError, match="site 'z' of model .* is continuous and not reparameterized, "
                                          "and TraceEnum_ELBO would give it a score-function gradient"):
        model_structure(toy, CFG, toy.sample_data(2))


class FixedBatchToy(BernoulliToy):
    """A decoder that assumes z has shape (B, D): it fails on enumerated values."""

    def model(self, x):
        pyro.module("toy", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior())
            pyro.sample("x", pyro.distributions.Bernoulli(logits=self.decoder(z.reshape(len(x), -1))).to_event(1), obs=x)


def test_networks_that_do_not_broadcast_over_enumerated_values_are_refused_at_start_up():
    toy = FixedBatchToy()
    # the check with two particles drawn at once (what every objective's test ELBO needs) comes first
    with pytest.raises(ConfigError, match="fails (when its discrete sites are enumerated|with 2 particles "
                                          "drawn at once).*extra leading dim"):
        model_structure(toy, CFG, toy.sample_data(2))


def test_the_command_line_refusal_is_one_line_with_flags(capsys, data_dir, tmp_path):
    status, err = run_script(capsys, "svi_train", "--data-dir", data_dir, "--limit-train", "64",
                             "--limit-test", "16", "--batch-size", "32", "--hidden", "16", "--latent-dim", "2",
                             "--elbo", "traceenum", "--out", str(tmp_path / "run"), "--no-plots")
    assert_one_line_error(status, err, "--elbo traceenum sums over the discrete latent sites",
                          "use --elbo trace")


class ModelSideEnumerationToy(MixedToy):
    """Pyro's semi-supervised shape: y in the model only, to be enumerated there (issue 27)."""

    def guide(self, x):
        pyro.module("toy", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", pyro.distributions.Normal(x @ self.q_M.T, 1.0).to_event(1))


def test_model_side_enumeration_is_refused_by_the_site_rules_at_start_up():
    toy = ModelSideEnumerationToy()
    with pytest.raises(ConfigError, match=r"the model's latent sites \['y', 'z'\] and the guide's \['z'\] "
                                          "must be the same"):
        model_structure(toy, CFG, toy.sample_data(2))


def test_a_discrete_model_trains_compiled_under_traceenum_and_its_log_px_is_exact(data_dir):
    import pyro_vae as pv
    from pyro_vae.training.step import make_optimizer, make_step

    toy = CategoricalToy(x_dim=784)
    cfg = make_config({"elbo": "traceenum"})
    assert make_step(cfg, toy, make_optimizer(cfg, toy)).prepare(torch.zeros(32, 784)).startswith("compiled")
    data = pv.load_dataset("mnist", data_dir, limit_train=64, limit_test=16)
    run = pv.train(model=toy, data=data, elbo="traceenum", epochs=2, batch_size=32, verbose=False)
    assert run.history[-1]["train_loss"] < run.history[0]["train_loss"]
    ll = pv.log_likelihood(run.model, data.test, num_samples=1)
    assert ll.summary["exact"] and ll.summary["summed_exactly"] == ["z"]
    with torch.no_grad():
        exact = toy.exact_log_likelihood(data.test.reshape(len(data.test), -1)).numpy()
    assert abs(ll.log_likelihood - exact.mean()) < 1e-3
