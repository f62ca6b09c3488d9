import pytest
from pyro.infer import Trace_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO

from pyro_vae.config import Config, make_config
from pyro_vae.core.errors import ConfigError
from pyro_vae.infer.elbos import IWAE_ELBO, STL_ELBO, DReG_ELBO, RenyiBound
from pyro_vae.infer.objectives import OBJECTIVES, build_objective, register_objective


@pytest.mark.parametrize("name, cls", [("trace", Trace_ELBO), ("meanfield", TraceMeanField_ELBO)])
def test_registry_builds_pyro_objectives(name, cls):
    elbo = build_objective(Config.from_flat(elbo=name))
    assert isinstance(elbo, cls) and elbo.max_plate_nesting == 1


def test_unknown_objective_lists_the_valid_ones():
    cfg = Config()
    cfg.objective.elbo = "bogus"  # bypasses validation on purpose
    with pytest.raises(ConfigError, match="unknown elbo 'bogus'; choose one of: trace, tracegraph, meanfield"):
        build_objective(cfg)


def test_registering_an_objective_makes_it_a_valid_choice():
    @register_objective("mine", description="a test's objective", multi_sample=False)
    def _mine(objective):  # the config's objective section
        return Trace_ELBO(num_particles=objective.num_particles)

    try:
        assert build_objective(make_config({"elbo": "mine", "num_particles": 3})).num_particles == 3
        assert OBJECTIVES.get("mine").capabilities["score_function"]  # a default capability
    finally:
        OBJECTIVES.remove("mine")
    assert "mine" not in OBJECTIVES


@pytest.mark.parametrize("options, message", [
    ({"estimator": "score", "elbo": "meanfield"}, "elbo='meanfield' needs a reparameterized guide"),
    ({"estimator": "score", "elbo": "dreg", "num_particles": 5}, "elbo='dreg' needs a reparameterized"),
    ({"baseline": "avg"}, "baselines reduce the variance of score-function gradients only"),
    ({"estimator": "score", "elbo": "trace", "baseline": "nn"}, "elbo='trace' ignores baselines"),
    ({"elbo": "renyi", "alpha": -0.5, "num_particles": 5}, "gives an upper bound"),
    ({"elbo": "iwae"}, "K-sample bound: pass num_particles K with K >= 2"),
    ({"elbo": "renyi", "num_particles": 5}, "elbo='renyi' needs alpha"),
    ({"elbo": "iwae", "num_particles": 5, "alpha": 0.5}, "alpha applies to elbo='renyi' only"),
    ({"elbo": "tail-adaptive"}, "TraceTailAdaptive_ELBO returns inf"),
])
def test_incompatible_combinations_are_refused_with_advice(options, message):
    with pytest.raises(ConfigError, match=message):
        make_config(options)


@pytest.mark.parametrize("options, cls", [
    ({"estimator": "score"}, TraceGraph_ELBO), ({"elbo": "iwae", "num_particles": 5}, IWAE_ELBO),
    ({"elbo": "renyi", "alpha": 0.5, "num_particles": 5}, RenyiBound),
    ({"elbo": "dreg", "num_particles": 5}, DReG_ELBO), ({"elbo": "stl"}, STL_ELBO),
])
def test_registry_builds_the_multi_sample_and_score_objectives(options, cls):
    elbo = build_objective(make_config(options))
    assert isinstance(elbo, cls) and elbo.num_particles == options.get("num_particles", 1)


def test_particles_are_vectorized_for_pyro_objectives():
    assert build_objective(make_config({"num_particles": 4})).vectorize_particles
    assert not build_objective(make_config()).vectorize_particles  # K = 1: no extra plate
