"""Every gradient estimator against the exact ELBO gradient of a linear-Gaussian VAE.

Each test draws R independent gradients at fixed parameters; a mean is declared equal to its
target when every element lies within 5 standard errors (about 20 elements per test, so a true
statement fails with probability ~1e-5; the seeds are fixed, so the outcome is reproducible).
"""

import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO
from support.linear_gaussian import LinearGaussianVAE

from pyro_vae.infer.elbos import IWAE_ELBO, STL_ELBO, DReG_ELBO, RenyiBound

Z_MAX = 5.0


def draw_gradients(vae, elbo, x, repeats):
    """``(repeats, P)`` flattened gradients of the encoder and decoder parameters."""
    params = vae.gradient_params()
    out = []
    for _ in range(repeats):
        for p in vae.parameters():
            p.grad = None
        elbo.loss_and_grads(vae.model, vae.guide, x)
        out.append(torch.cat([p.grad.reshape(-1) for p in params]))
    return torch.stack(out)


def exact_gradient(vae, x):
    params = vae.gradient_params()
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(-vae.exact_elbo(x), params)])


def z_scores(samples, target):
    se = samples.std(0) / math.sqrt(len(samples))
    return (samples.mean(0) - target) / se


ESTIMATORS = {  # name: (VAE options, objective, repeats)
    "reparam/trace": ({}, lambda: Trace_ELBO(num_particles=10, vectorize_particles=True), 200),
    "reparam/meanfield": ({}, lambda: TraceMeanField_ELBO(num_particles=10, vectorize_particles=True), 200),
    "reparam/stl": ({}, lambda: STL_ELBO(num_particles=10), 200),
    "score/trace": ({"estimator": "score"}, lambda: Trace_ELBO(num_particles=20, vectorize_particles=True), 400),
    "score/tracegraph": ({"estimator": "score"},
                         lambda: TraceGraph_ELBO(num_particles=20, vectorize_particles=True), 400),
    "score/tracegraph+avg": ({"estimator": "score", "baseline": "avg"},
                             lambda: TraceGraph_ELBO(num_particles=20, vectorize_particles=True), 400),
    "score/tracegraph+nn": ({"estimator": "score", "baseline": "nn"}, lambda: TraceGraph_ELBO(), 800),
    "score/tracegraph+nn-only": ({"estimator": "score", "baseline": "nn-only"}, lambda: TraceGraph_ELBO(), 800),
}


def dreg_reference_gradients(vae, log_w: torch.Tensor):
    """DReG's gradients by their definition, from ``(K, B)`` log-weights whose log q is taken at
    stopped parameters: the encoder's are those of -sum stop(w~^2) log w, the decoder's those of
    -sum stop(w~) log w. Returns (w~, gradients: encoder's then decoder's)."""
    w = torch.softmax(log_w.detach(), dim=0)
    encoder, decoder = list(vae.encoder.values()), list(vae.decoder.values())
    return w, (torch.autograd.grad(-(w ** 2 * log_w).sum(), encoder, retain_graph=True)
               + torch.autograd.grad(-(w * log_w).sum(), decoder))


@pytest.mark.parametrize("name", ESTIMATORS)
def test_gradient_is_unbiased(name):
    options, make_elbo, repeats = ESTIMATORS[name]
    vae = LinearGaussianVAE(**options)
    x = vae.sample_data(4)
    exact = exact_gradient(vae, x)
    assert exact.abs().min() > 1e-2  # every element carries signal
    grads = draw_gradients(vae, make_elbo(), x, repeats)
    z = z_scores(grads, exact)
    assert z.abs().max() < Z_MAX, (name, z)


def test_score_function_variance_exceeds_reparameterized():
    x = LinearGaussianVAE().sample_data(4)
    reparam = draw_gradients(LinearGaussianVAE(), Trace_ELBO(), x, 300).var(0).sum()
    score = draw_gradients(LinearGaussianVAE(estimator="score"), Trace_ELBO(), x, 300).var(0).sum()
    # total variance estimates from 300 draws are within ~20% of the truth; measured ratio ~30
    assert score > 5 * reparam


def test_baselines_reduce_score_function_variance():
    x = LinearGaussianVAE().sample_data(4)
    plain = draw_gradients(LinearGaussianVAE(estimator="score"), TraceGraph_ELBO(), x, 300)
    avg = LinearGaussianVAE(estimator="score", baseline="avg", beta=0.95)
    draw_gradients(avg, TraceGraph_ELBO(), x, 100)  # let the decaying average settle
    averaged = draw_gradients(avg, TraceGraph_ELBO(), x, 300)
    assert averaged.var(0).sum() < 0.8 * plain.var(0).sum()
    # the nn baseline is the average plus a network on x fitted to the remaining cost
    nn_baseline = LinearGaussianVAE(estimator="score", baseline="nn", beta=0.95)
    fit = torch.optim.Adam(nn_baseline.baseline_net.parameters(), lr=0.01)
    for _ in range(300):
        TraceGraph_ELBO().loss_and_grads(nn_baseline.model, nn_baseline.guide, x)
        fit.step()
        nn_baseline.zero_grad()
    with_network = draw_gradients(nn_baseline, TraceGraph_ELBO(), x, 300)
    assert with_network.var(0).sum() < 0.8 * averaged.var(0).sum()
    # the network alone (nn-only), once fitted, does the average's work and the network's
    alone = LinearGaussianVAE(estimator="score", baseline="nn-only")
    fit = torch.optim.Adam(alone.baseline_net.parameters(), lr=0.05)
    for _ in range(300):
        TraceGraph_ELBO().loss_and_grads(alone.model, alone.guide, x)
        fit.step()
        alone.zero_grad()
    assert draw_gradients(alone, TraceGraph_ELBO(), x, 300).var(0).sum() < 0.8 * averaged.var(0).sum()


def test_iwae_and_dreg_gradients_agree_in_expectation():
    vae = LinearGaussianVAE()
    x = vae.sample_data(4)
    iwae = draw_gradients(vae, IWAE_ELBO(num_particles=5), x, 600)
    dreg = draw_gradients(vae, DReG_ELBO(num_particles=5), x, 600)
    se = torch.sqrt(iwae.var(0) / len(iwae) + dreg.var(0) / len(dreg))
    assert ((iwae.mean(0) - dreg.mean(0)) / se).abs().max() < Z_MAX
    # and DReG is the quieter estimator of the guide's gradient (its raison d'etre)
    n_enc = sum(p.numel() for p in vae.encoder.values())
    assert dreg[:, :n_enc].var(0).sum() < iwae[:, :n_enc].var(0).sum()


def test_iwae_bound_lies_between_elbo_and_log_likelihood_and_grows_with_k():
    vae = LinearGaussianVAE()
    x = vae.sample_data(4)
    elbo = vae.exact_elbo(x).item()
    log_px = vae.exact_log_likelihood(x).sum().item()
    means, ses = [], []
    for k in (1, 2, 10, 50):
        values = torch.tensor([-IWAE_ELBO(num_particles=k).loss(vae.model, vae.guide, x) for _ in range(400)])
        means.append(values.mean().item())
        ses.append(values.std().item() / math.sqrt(len(values)))
    assert abs(means[0] - elbo) < Z_MAX * ses[0]  # K = 1 is the ELBO
    for (m0, s0), (m1, s1) in zip(zip(means, ses), zip(means[1:], ses[1:])):
        assert m1 > m0 - Z_MAX * math.hypot(s0, s1)  # non-decreasing in K
    assert means[-1] > elbo + 10 * ses[-1]  # and strictly tighter by K = 50
    assert means[-1] < log_px + Z_MAX * ses[-1]  # still a lower bound


def test_renyi_family_end_points():
    vae = LinearGaussianVAE()
    x = vae.sample_data(4)
    torch.manual_seed(3)
    iwae = IWAE_ELBO(num_particles=7).loss(vae.model, vae.guide, x)
    torch.manual_seed(3)
    alpha0 = RenyiBound(alpha=0.0, num_particles=7).loss(vae.model, vae.guide, x)
    assert iwae == alpha0
    values = {a: torch.tensor([-RenyiBound(a, 10).loss(vae.model, vae.guide, x) for _ in range(300)]).mean()
              for a in (0.0, 0.5, 1.0)}
    assert values[0.0] > values[0.5] > values[1.0]  # the bound loosens as alpha grows to 1
    assert abs(values[1.0] - vae.exact_elbo(x)) < 1.0  # alpha = 1 is the ELBO (SE ~ 0.1)


def test_per_datapoint_bounds_are_scaled_outside_the_logsumexp():
    """Under a subsampled plate (scale N/B), the IWAE loss is N/B times the sum of the
    per-datapoint bounds, exactly; Pyro's RenyiELBO puts the scale inside the logsumexp."""
    vae = LinearGaussianVAE()
    x = vae.sample_data(4)
    N = 100

    # the same model and guide as vae's, with the data plate subsampled from N = 100
    def model(x):
        with pyro.plate("data", N, subsample=torch.arange(x.shape[0])):
            z = pyro.sample("z", pyro.distributions.Normal(torch.zeros(vae.d), 1.0).to_event(1))
            mean = z @ vae.decoder["W"].T + vae.decoder["b"]
            pyro.sample("x", pyro.distributions.Normal(mean, vae.sigma).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", N, subsample=torch.arange(x.shape[0])):
            loc = x @ vae.encoder["A"].T + vae.encoder["c"]
            pyro.sample("z", pyro.distributions.Normal(loc, vae.encoder["log_s"].exp()).to_event(1))

    torch.manual_seed(0)
    scaled = IWAE_ELBO(num_particles=6).loss(model, guide, x)
    torch.manual_seed(0)
    unscaled = IWAE_ELBO(num_particles=6).loss(vae.model, vae.guide, x)
    assert scaled == pytest.approx(N / 4 * unscaled, rel=1e-6)
    torch.manual_seed(0)
    pyro_renyi = pyro.infer.RenyiELBO(alpha=0, num_particles=6, vectorize_particles=True,
                                      max_plate_nesting=1).loss(model, guide, x)
    assert pyro_renyi != pytest.approx(scaled, rel=1e-3)


def test_new_objectives_train_with_pyro_svi():
    vae = LinearGaussianVAE()
    x = vae.sample_data(16)
    for elbo in (IWAE_ELBO(num_particles=5), DReG_ELBO(num_particles=5), STL_ELBO(num_particles=2),
                 RenyiBound(0.5, 5)):
        pyro.clear_param_store()
        model = LinearGaussianVAE()
        svi = pyro.infer.SVI(model.model, model.guide, pyro.optim.Adam({"lr": 0.05}), elbo)
        before = model.exact_elbo(x).item()
        for _ in range(100):
            svi.step(x)
        assert model.exact_elbo(x).item() > before + 1.0, type(elbo).__name__


def test_dreg_gradients_are_exactly_the_doubly_reparameterized_ones():
    """Same draws (same seed): DReG's encoder gradient is that of -sum stop(w~^2) log w and its
    decoder gradient that of -sum stop(w~) log w, with log q at fixed guide parameters."""
    from pyro_vae.infer.elbos.path import detach_parameters
    from pyro_vae.infer.importance import log_density, trace_particles

    vae = LinearGaussianVAE()
    x = vae.sample_data(4)
    torch.manual_seed(0)
    DReG_ELBO(num_particles=6).loss_and_grads(vae.model, vae.guide, x)
    dreg = [p.grad.clone() for p in vae.gradient_params()]
    torch.manual_seed(0)
    traces = trace_particles(vae.model, vae.guide, x, num_samples=6)
    z = traces.guide.nodes["z"]
    log_w = log_density(traces.model) - detach_parameters(z["fn"]).log_prob(z["value"])
    w, expected = dreg_reference_gradients(vae, log_w)
    assert w.max(0).values.min() < 0.9  # not one-hot: w~, w~^2 and w~^3 differ here
    for got, want in zip(dreg, expected):
        torch.testing.assert_close(got, want)


def test_stl_gradient_vanishes_at_the_exact_posterior():
    """With q equal to the true posterior, STL's guide gradient is zero on every draw ("sticking
    the landing"), while Trace_ELBO's is zero only on average. W has orthogonal columns, so the
    exact posterior is a diagonal Normal, inside the guide's family."""
    vae = LinearGaussianVAE()
    with torch.no_grad():
        vae.decoder["W"].copy_(torch.tensor([[1.2, 0.0], [0.0, -0.8], [0.0, 0.0]]))
        W, b, s2 = vae.decoder["W"], vae.decoder["b"], vae.sigma ** 2
        S = 1 / (1 + (W ** 2).sum(0) / s2)  # diagonal of (I + W^T W / sigma^2)^-1
        vae.encoder["A"].copy_(S[:, None] * W.T / s2)
        vae.encoder["c"].copy_(-vae.encoder["A"] @ b)
        vae.encoder["log_s"].copy_(0.5 * S.log())
    x = vae.sample_data(4)
    n_enc = sum(p.numel() for p in vae.encoder.values())
    stl = draw_gradients(vae, STL_ELBO(), x, 20)[:, :n_enc]
    trace = draw_gradients(vae, Trace_ELBO(), x, 20)[:, :n_enc]
    assert stl.abs().max() < 1e-5
    assert trace.abs().max() > 0.1
