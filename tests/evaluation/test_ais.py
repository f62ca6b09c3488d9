"""Annealed importance sampling and BDMC: exact on the linear-Gaussian model, T = 1 is importance
sampling, HMC leaves its target invariant, every model and prior runs, the command writes its
files and compares with eval.json."""

import json
import math

import numpy as np
import pytest
import torch
from support import quiet, run_script
from support.linear_gaussian import LinearGaussianVAE

from pyro_vae.config import make_config
from pyro_vae.core.distributed import stream_seed
from pyro_vae.core.errors import ConfigError
from pyro_vae.evaluation import STARTS, estimate_ais, estimate_bdmc, evaluation_context
from pyro_vae.evaluation.annealing import AnnealingPath, LatentLayout, sigmoid_schedule
from pyro_vae.evaluation.hmc import STEP_SIZE_MAX, STEP_SIZE_MIN, Point, adapt_step_size, hmc_transition
from pyro_vae.evaluation.traced_ends import TracedEnds
from pyro_vae.infer.importance import log_importance_weights
from pyro_vae.models import build_model
from pyro_vae.models.priors import PRIORS

CPU = torch.device("cpu")


def mean_and_se(a):
    a = np.asarray(a, dtype=np.float64)
    return a.mean(), a.std(ddof=1) / math.sqrt(len(a))


def test_sigmoid_schedule_runs_from_0_to_1_increasing():
    betas = sigmoid_schedule(100)
    assert betas[0] == 0.0 and betas[-1] == 1.0 and len(betas) == 101
    assert all(b > a for a, b in zip(betas, betas[1:]))
    assert sigmoid_schedule(1) == [0.0, 1.0]


def test_one_step_is_importance_sampling_from_the_guide():
    """T = 1: no transition, one weight log p(x, z) - log q(z | x) per chain at z ~ q: exactly
    the importance-weighted estimate with K = C (same stream, same draws: the one batch's, named
    by the seed and its first image's index)."""
    vae = LinearGaussianVAE()
    x = vae.sample_data(12)
    _, points = estimate_ais(vae, x, num_steps=1, num_chains=7, seed=3, log=quiet)
    torch.manual_seed(stream_seed("chains", 3, 0))
    with torch.no_grad():
        log_w = log_importance_weights(vae.model, vae.guide, x, num_samples=7)
    expected = torch.logsumexp(log_w, 0) - math.log(7)
    np.testing.assert_allclose(points.log_px, expected.numpy(), rtol=0, atol=1e-5)
    assert np.isnan(points.acceptance).all()  # no transition was made


@pytest.mark.parametrize("start", ["guide", "prior"])
def test_ais_converges_to_the_exact_log_likelihood(start):
    """The guide is deliberately poor, so T = 1 falls far short; T = 300 is within a few standard
    errors of the exact log p(x) (its remaining bias is downward: a stochastic lower bound)."""
    vae = LinearGaussianVAE()
    x = vae.sample_data(40)
    exact = vae.exact_log_likelihood(x).detach().numpy()
    short = estimate_ais(vae, x, 1, num_chains=8, num_leapfrog=5, start=start, log=quiet)[1].log_px
    long = estimate_ais(vae, x, 300, num_chains=8, num_leapfrog=5, start=start, log=quiet)[1]
    error, se = mean_and_se(long.log_px - exact)
    assert abs(error) < 4 * se + 0.02, (error, se)
    assert np.abs(short - exact).mean() > 5 * np.abs(long.log_px - exact).mean()
    assert 0.5 < np.mean(long.acceptance) < 1.0


def test_bdmc_bounds_sandwich_the_exact_value_and_tighten_with_longer_chains():
    vae = LinearGaussianVAE()
    gaps = {}
    for steps in (10, 300):
        summary, points = estimate_bdmc(vae, 40, 3, CPU, steps, num_chains=4, num_leapfrog=5, log=quiet)
        exact = vae.exact_log_likelihood(points.x).detach().numpy()
        below, se_below = mean_and_se(exact - points.lower.log_px)
        above, se_above = mean_and_se(points.upper.log_px - exact)
        assert below > -3 * se_below and above > -3 * se_above, (steps, below, above)
        assert summary["lower"] <= summary["upper"]
        gaps[steps] = summary["gap"]
    assert gaps[300] < 0.25 * gaps[10], gaps


def test_hmc_leaves_a_gaussian_target_invariant():
    """Chains started at exact draws of N(mu, diag(s^2)) keep its mean and variance after 25
    transitions (2,000 independent chains: standard errors s / sqrt(C) and s^2 sqrt(2 / C))."""
    torch.manual_seed(0)
    mu, s = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.5, 2.0, 1.0])
    chains = 2000

    def log_density(z):
        log_prob = torch.distributions.Normal(mu, s).log_prob(z).sum(-1)
        return Point(z, log_prob, -(z - mu) / s ** 2)

    point = log_density(mu + s * torch.randn(chains, 1, 3))
    step = torch.full((1,), 0.4)
    rates = []
    for _ in range(25):
        point, accept = hmc_transition(point, log_density, step, num_leapfrog=5)
        rates.append(accept.float().mean().item())
    z = point.z.reshape(chains, 3)
    assert ((z.mean(0) - mu).abs() < 4 * s / math.sqrt(chains)).all(), z.mean(0)
    assert ((z.var(0) - s ** 2).abs() < 4 * s ** 2 * math.sqrt(2 / chains)).all(), z.var(0)
    assert 0.3 < np.mean(rates) < 1.0  # it moved: not a chain that rejects everything


def test_step_size_adapts_toward_the_target_acceptance_within_its_bounds():
    steps = torch.tensor([0.1, 0.1, STEP_SIZE_MAX, STEP_SIZE_MIN])
    accept = torch.tensor([[True, False, True, False]] * 4)
    accept[:, 0] = True  # image 0: all accepted; image 1: none
    new = adapt_step_size(steps, accept)
    assert new[0] == pytest.approx(0.102) and new[1] == pytest.approx(0.098)
    assert new[2] == STEP_SIZE_MAX and new[3] == STEP_SIZE_MIN


@pytest.mark.parametrize("options", [
    {"model": "hvae", "hidden": [16], "upper_hidden": [8], "latent_dim": [6, 3]},
    *({"hidden": [16], "latent_dim": 4, "prior": prior,
       **({"prior_components": 3} if prior in ("mog", "vamp") else {})} for prior in PRIORS),
], ids=["hvae", *PRIORS])
def test_every_model_and_prior_runs_and_one_step_is_importance_sampling(options):
    """The two-layer model's two sites are one flat state; every shipped prior (mixtures and
    flows included) gives the gradients HMC needs."""
    model = build_model(make_config(options), train_data=torch.rand(10, 784))
    x = torch.bernoulli(torch.full((3, 784), 0.3))
    summary, points = estimate_ais(model, x, 5, num_chains=4, num_leapfrog=2, seed=1, log=quiet)
    assert np.isfinite(points.log_px).all() and summary["acceptance_rate"] > 0
    _, one = estimate_ais(model, x, 1, num_chains=4, seed=1, log=quiet)
    torch.manual_seed(stream_seed("chains", 1, 0))
    with torch.no_grad(), model.fixed_prior():
        log_w = log_importance_weights(model.model, model.guide, x, num_samples=4)
    np.testing.assert_allclose(one.log_px, (torch.logsumexp(log_w, 0) - math.log(4)).numpy(), atol=1e-4)
    summary, points = estimate_bdmc(model, 3, 784, CPU, 5, num_chains=2, num_leapfrog=2, log=quiet)
    assert np.isfinite(points.gap).all()


def test_evaluation_leaves_the_weights_trainable():
    vae = LinearGaussianVAE()
    estimate_ais(vae, vae.sample_data(3), 3, num_chains=2, log=quiet)
    assert all(p.requires_grad for p in vae.parameters())


def test_non_real_latents_are_refused_with_the_reason():
    import pyro
    import pyro.distributions as dist

    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Gamma(torch.ones(2), 1.0).to_event(1))

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Gamma(torch.ones(2), 1.0).to_event(1))

    path = AnnealingPath(model, guide, torch.zeros(3, 2), 2)
    with pytest.raises(ConfigError, match="needs real-valued sites; site 'z'"):
        path.sample_start()


def test_layout_flattens_and_restores_every_site():
    layout = LatentLayout(("a", "b"), ((2,), (3, 2)))
    values = {"a": torch.randn(4, 5, 2), "b": torch.randn(4, 5, 3, 2)}
    flat = layout.flatten(values)
    assert flat.shape == (4, 5, 8)
    back = layout.unflatten(flat)
    assert all(torch.equal(back[k], values[k]) for k in values)


def test_the_command_writes_ais_and_bdmc_results_and_compares_with_iwae(small_run, capsys, tmp_path):
    from pyro_vae.training.trainer import train
    train(small_run, log=quiet, progress=False)
    run = small_run["out"]
    common = ["--limit", "6", "--data-dir", small_run["data_dir"]]
    assert run_script(capsys, "evaluate", run, "--num-samples", "50", *common)[0] == 0
    status, _ = run_script(capsys, "evaluate", run, "--method", "ais", "--ais-steps", "4",
                           "--ais-chains", "3", "--leapfrog", "2", *common)
    assert status == 0
    summary = json.loads((tmp_path / "run" / "eval_ais.json").read_text())
    iwae = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert summary["num_points"] == 6 and summary["ais_steps"] == 4 and summary["ais_chains"] == 3
    with np.load(tmp_path / "run" / "eval_ais_points.npz") as points:
        diff = points["log_px"] - points["iwae_log_px"]
        assert len(points["khat"]) == 6
    assert summary["iwae"]["ais_minus_iwae"] == pytest.approx(diff.mean(), abs=1e-4)
    assert summary["iwae"]["iwae_log_likelihood"] == pytest.approx(iwae["log_likelihood"], abs=1e-4)
    bins = summary["iwae"]["khat"]["bins"]
    assert list(bins) == ["<= 0.7", "0.7-1", "1-1.5", "> 1.5"]
    assert sum(b["num_points"] for b in bins.values()) == 6
    elsewhere = tmp_path / "elsewhere"  # --out DIR without an eval.json: the run directory's
    assert run_script(capsys, "evaluate", run, "--method", "ais", "--ais-steps", "2", "--ais-chains",
                      "2", "--leapfrog", "1", "--out", str(elsewhere), *common)[0] == 0
    assert json.loads((elsewhere / "eval_ais.json").read_text())["iwae"]["num_samples"] == 50
    status, _ = run_script(capsys, "evaluate", run, "--method", "bdmc", "--ais-steps", "3",
                           "--ais-chains", "2", "--leapfrog", "1", *common)
    assert status == 0
    bdmc = json.loads((tmp_path / "run" / "eval_bdmc.json").read_text())
    assert bdmc["num_points"] == 6 and bdmc["gap"] == pytest.approx(bdmc["upper"] - bdmc["lower"])


@pytest.mark.parametrize("args, message", [
    (["--ais-steps", "10"], "--ais-steps is for --method ais or bdmc"),
    (["--method", "ais", "--num-samples", "10"], "--num-samples is for --method iwae"),
    (["--method", "ais", "--ais-steps", "0"], "--ais-steps must be at least 1"),
    (["--method", "bdmc", "--split", "valid"], "bdmc evaluates images it simulates"),
])
def test_flag_mistakes_are_one_line_errors(capsys, tmp_path, args, message):
    status, err = run_script(capsys, "evaluate", tmp_path, *args)
    assert status == 2 and message in err and "Traceback" not in err


def test_out_of_memory_halves_the_batch_of_images_and_retries(monkeypatch):
    import pyro_vae.evaluation.ais as ais_module
    real = ais_module.anneal

    def small_memory(path, z, *args, **kwargs):
        if z.shape[1] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(path, z, *args, **kwargs)

    monkeypatch.setattr(ais_module, "anneal", small_memory)
    vae = LinearGaussianVAE()
    messages = []
    summary, points = estimate_ais(vae, vae.sample_data(7), 3, num_chains=2, batch_size=8, log=messages.append)
    assert [m for m in messages if m.startswith("out of memory")] == [
        "out of memory: retrying with 4 images per batch", "out of memory: retrying with 2 images per batch"]
    assert len(points.log_px) == 7 and np.isfinite(points.log_px).all()


def test_the_memory_budget_sets_the_images_per_batch():
    """Three particles' activations per chain (forward, the gradient's graph, the carried
    gradients): ten images' worth of budget is ten images, twice the chains half as many."""
    from pyro_vae.evaluation import particle_bytes
    from pyro_vae.evaluation.ais import images_per_batch
    model = build_model(make_config({"hidden": [32], "latent_dim": 4}))
    x = torch.zeros(50, 784)
    per_image = 3 * 16 * particle_bytes(model, x[:1])
    assert images_per_batch(model, x, 16, 100, 10 * per_image) == 10
    assert images_per_batch(model, x, 32, 100, 10 * per_image) == 5
    assert images_per_batch(model, x, 16, 100, "100GiB") == 100
    assert images_per_batch(model, x, 16, 100, "1KiB") == 1


def test_no_comparison_with_an_eval_json_of_another_checkpoint(tmp_path):
    from pyro_vae.evaluation.evaluate_ais import compare_with_iwae
    from pyro_vae.runs import write_result
    summary = {"split": "test", "epoch": 3, "checkpoint": "last", "checkpoint_sha256": "ab12"}
    write_result(tmp_path, "eval", {**summary, "num_samples": 10},
                 {"log_px": np.array([-3.0, -2.0]), "khat": np.array([0.9, 0.2])})
    same, arrays = compare_with_iwae(tmp_path, summary, np.array([-2.5, -2.0, -1.0]))
    assert same["num_points"] == 2 and same["ais_minus_iwae"] == pytest.approx(0.25)
    assert same["khat"]["bins"] == {"<= 0.7": {"num_points": 1, "ais_minus_iwae": 0.0},
                                    "0.7-1": {"num_points": 1, "ais_minus_iwae": 0.5},
                                    "1-1.5": {"num_points": 0, "ais_minus_iwae": None},
                                    "> 1.5": {"num_points": 0, "ais_minus_iwae": None}}
    np.testing.assert_array_equal(arrays["iwae_log_px"], [-3.0, -2.0])
    np.testing.assert_array_equal(arrays["khat"], [0.9, 0.2])
    assert compare_with_iwae(tmp_path, {**summary, "checkpoint_sha256": "cd34"}, np.zeros(2)) is None
    assert compare_with_iwae(tmp_path, {**summary, "split": "valid"}, np.zeros(2)) is None
    assert compare_with_iwae(tmp_path / "elsewhere", summary, np.zeros(2)) is None


@pytest.mark.parametrize("start", STARTS)
@pytest.mark.parametrize("options", [{"hidden": [16], "latent_dim": 4},
                                     {"model": "hvae", "hidden": [16], "upper_hidden": [8], "latent_dim": [6, 3]},
                                     {"hidden": [16], "latent_dim": 4, "prior": "vamp", "prior_components": 3}],
                         ids=["vae", "hvae", "vamp"])
def test_the_traced_energy_equals_the_pyro_traced_one(options, start):
    """The graph traced once and replayed at new points gives the log-densities and gradients
    of Pyro's traces there."""
    model = build_model(make_config(options), train_data=torch.rand(10, 784))
    x = torch.bernoulli(torch.full((5, 784), 0.3))
    messages = []
    with evaluation_context(model, CPU, seed=0):
        traced = TracedEnds.of(model, messages.append)
        path = AnnealingPath(model.model, model.guide, x, 3, start, traced=traced)
        z = path.sample_start()
        for point in (z, z + 0.3 * torch.randn_like(z), z - 1.0):
            for mine, pyros in zip(path.ends(point), path.pyro_ends(point)):
                torch.testing.assert_close(mine, pyros, rtol=0, atol=1e-5)
    assert not messages and traced.problem is None and len(traced.graphs) == 1
    assert traced.operations() > 10


@pytest.mark.parametrize("model", ["linear", "vae"])
def test_ais_with_the_traced_energy_gives_the_numbers_of_pyro_traces(model):
    if model == "linear":
        vae, x = LinearGaussianVAE(), LinearGaussianVAE().sample_data(7)
    else:
        vae = build_model(make_config({"hidden": [16], "latent_dim": 4}))
        x = torch.bernoulli(torch.full((7, 784), 0.3))
    runs = [estimate_ais(vae, x, 20, num_chains=4, num_leapfrog=3, batch_size=3, seed=2, log=quiet,
                         traced=traced)[1] for traced in (True, False)]
    np.testing.assert_allclose(runs[0].log_px, runs[1].log_px, rtol=0, atol=1e-5)
    np.testing.assert_allclose(runs[0].acceptance, runs[1].acceptance, rtol=0, atol=1e-6)


def test_a_model_that_cannot_be_traced_runs_with_pyro_traces_and_says_so():
    """The flow prior's spline picks bins by boolean masks (shapes that depend on the data)."""
    model = build_model(make_config({"hidden": [16], "latent_dim": 4, "prior": "flow", "flow_depth": 2}))
    x = torch.bernoulli(torch.full((3, 784), 0.3))
    messages = []
    _, traced = estimate_ais(model, x, 4, num_chains=2, num_leapfrog=2, seed=1, log=messages.append)
    _, plain = estimate_ais(model, x, 4, num_chains=2, num_leapfrog=2, seed=1, log=quiet, traced=False)
    assert sum("could not be traced" in m for m in messages) == 1
    np.testing.assert_array_equal(traced.log_px, plain.log_px)


def test_the_batch_default_depends_on_the_device():
    from pyro_vae.evaluation import default_batch
    assert default_batch("cpu") == 100 and default_batch("cuda") == 5000
    vae = LinearGaussianVAE()
    summary, _ = estimate_ais(vae, vae.sample_data(3), 1, num_chains=2, log=quiet)
    assert summary["batch_size"] == 100  # the CPU's, as before


def test_out_of_memory_while_tracing_the_energy_halves_the_batch_and_keeps_the_graph(monkeypatch):
    """Running out of memory while the graph is traced (tracing wraps whatever fails) is the
    batch's size, not the model's fault: the batch is halved and the smaller one is traced."""
    real = AnnealingPath.pyro_ends

    def small_memory(self, z):
        if len(self.x) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, z)
    monkeypatch.setattr(AnnealingPath, "pyro_ends", small_memory)
    vae = LinearGaussianVAE()
    messages = []
    _, points = estimate_ais(vae, vae.sample_data(4), 3, num_chains=2, batch_size=4, log=messages.append)
    assert [m for m in messages if not m.startswith("AIS: 2 of")] == [
        "out of memory: retrying with 2 images per batch"]  # and nothing about tracing failing
    assert len(points.log_px) == 4 and np.isfinite(points.log_px).all()
