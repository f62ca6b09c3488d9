"""The gradient-variance diagnostic on a Bernoulli-latent user model (the enumerable sigmoid
belief net of :mod:`support.bernoulli_toy`, on MNIST): each discrete estimator is measured, the
reparameterized ones are skipped with the reason, and VIMCO's and DisARM's encoder gradients are
quieter than the plain score function's."""

import json

from pyro_vae.studies import run_diagnostic

TOY = {"model": "support.bernoulli_toy:BernoulliToy", "latent_dim": [6, 3], "batch_size": 8}


def test_discrete_estimators_at_initialisation(data_dir, tmp_path):
    lines = []
    paths = run_diagnostic(None, {**TOY, "data_dir": data_dir, "out": str(tmp_path)},
                           estimators=["reparam", "score", "vimco", "arm", "disarm"], repeats=30,
                           log=lines.append)
    rows = {r["estimator"]: r for r in json.loads(paths["json"].read_text())["rows"]}
    assert list(rows) == ["score", "vimco", "arm", "disarm"]
    assert "  reparam    skipped: the guide samples z2, z1 without reparameterization" in lines[1]
    assert rows["vimco"]["num_particles"] == 5 and rows["disarm"]["num_particles"] == 1
    for name in ("vimco", "disarm"):  # measured: ~100 and ~300 times quieter
        assert rows[name]["encoder_variance"] < rows["score"]["encoder_variance"] / 10, rows
    assert "| disarm | disarm | 1 |" in paths["markdown"].read_text()
