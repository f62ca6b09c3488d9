import pytest
from pyro.infer import JitTrace_ELBO, JitTraceMeanField_ELBO, Trace_ELBO, TraceMeanField_ELBO

from pyro_vae import objectives
from pyro_vae.config import Config, make_config
from pyro_vae.errors import ConfigError
from pyro_vae.objectives import OBJECTIVES, build_objective, register_objective


@pytest.mark.parametrize("name, jit, cls", [
    ("trace", False, Trace_ELBO), ("trace", True, JitTrace_ELBO),
    ("meanfield", False, TraceMeanField_ELBO), ("meanfield", True, JitTraceMeanField_ELBO),
])
def test_registry_builds_pyro_objectives(name, jit, cls):
    elbo = build_objective(Config(elbo=name, jit=jit))
    assert isinstance(elbo, cls) and elbo.max_plate_nesting == 1


def test_unknown_objective_lists_the_valid_ones():
    cfg = Config()
    cfg.elbo = "bogus"  # bypasses validation on purpose
    with pytest.raises(ConfigError, match="unknown elbo 'bogus'; choose one of: trace, meanfield"):
        build_objective(cfg)


def test_registering_an_objective_makes_it_a_valid_choice(monkeypatch):
    monkeypatch.setattr(objectives, "OBJECTIVES", dict(OBJECTIVES))

    @register_objective("mine")
    def _mine(cfg):
        return Trace_ELBO(num_particles=cfg.batch_size)

    assert build_objective(make_config({"elbo": "mine", "batch_size": 3})).num_particles == 3
    assert "mine" not in OBJECTIVES  # the package's registry itself was left alone
