"""The gradient-variance diagnostic on a Bernoulli-latent user model (the enumerable sigmoid
belief net of :mod:`support.bernoulli_toy`, on MNIST): each discrete estimator is measured, the
reparameterized ones are skipped with the reason, and VIMCO's, DisARM's and the Concrete
relaxation's encoder gradients are quieter than the plain score function's."""

import json

from pyro_vae.studies import run_diagnostic

TOY = {"model": "support.bernoulli_toy:BernoulliToy", "latent_dim": [6, 3], "batch_size": 8}


def test_discrete_estimators_at_initialisation(data_dir, tmp_path):
    lines = []
    paths = run_diagnostic(None, {**TOY, "data_dir": data_dir, "out": str(tmp_path)},
                           estimators=["reparam", "score", "vimco", "arm", "disarm", "concrete"], repeats=30,
                           log=lines.append)
    rows = {r["estimator"]: r for r in json.loads(paths["json"].read_text())["rows"]}
    assert list(rows) == ["score", "vimco", "arm", "disarm", "concrete"]
    assert "  reparam    skipped: the guide samples z2, z1 without reparameterization" in lines[1]
    assert rows["vimco"]["num_particles"] == 5 and rows["disarm"]["num_particles"] == 1
    for name in ("vimco", "disarm", "concrete"):  # measured: ~100 and ~300 times quieter
        assert rows[name]["encoder_variance"] < rows["score"]["encoder_variance"] / 10, rows
    assert "| disarm | disarm | 1 |" in paths["markdown"].read_text()


def test_the_concrete_row_is_measured_relaxed_and_refused_on_a_continuous_guide(data_dir, tmp_path):
    lines = []
    paths = run_diagnostic(None, {"latent_dim": 2, "hidden": [16], "batch_size": 8, "data_dir": data_dir,
                                  "out": str(tmp_path)}, estimators=["reparam", "concrete"], repeats=3,
                           log=lines.append)
    rows = [r["estimator"] for r in json.loads(paths["json"].read_text())["rows"]]
    assert rows == ["reparam"]
    assert any(line.startswith("  concrete   skipped:") and "discrete" in line for line in lines), lines


def test_rebar_and_relax_rows_on_one_layer_and_their_refusal_on_two(data_dir, tmp_path):
    """REBAR and RELAX measured on a one-layer Bernoulli guide (their control variate as it starts),
    quieter than the plain score function; skipped with the reason on two layers."""
    lines = []
    paths = run_diagnostic(None, {**TOY, "latent_dim": [6], "data_dir": data_dir, "out": str(tmp_path)},
                           estimators=["score", "rebar", "relax"], repeats=30, log=lines.append)
    rows = {r["estimator"]: r for r in json.loads(paths["json"].read_text())["rows"]}
    assert list(rows) == ["score", "rebar", "relax"]
    for name in ("rebar", "relax"):
        assert rows[name]["encoder_variance"] < rows["score"]["encoder_variance"] / 10, rows
    lines.clear()
    run_diagnostic(None, {**TOY, "data_dir": data_dir, "out": str(tmp_path / "two")},
                   estimators=["score", "rebar"], repeats=3, log=lines.append)
    assert any(line.startswith("  rebar      skipped: estimator='rebar' here takes one layer") for line in lines), lines
