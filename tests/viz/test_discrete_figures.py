"""Every figure and the end-of-run evaluation on models with discrete latents: the shipped sbn and
categorical, and a user model with a categorical index site (whose mean torch gives as NaN). A
figure with no meaning for a discrete code (the manifold) is skipped with one line, never a crash."""

import json

import pytest
from support import TINY_RUN

import pyro_vae
from pyro_vae.training.trainer import train
from pyro_vae.viz import plot_run

FIGURES = {"samples.png", "reconstructions.png", "latent_space.png", "learning_curves.png"}
RUN = {**{k: v for k, v in TINY_RUN.items() if k not in ("hidden", "latent_dim")}, "plots": True,
       "eval_samples": 30}


@pytest.mark.parametrize("options, per_site", [
    ({"model": "sbn", "latent_dim": [2, 2], "sbn_mapping": "nonlinear", "hidden": [8], "baseline": "nn"},
     {"z1": 2, "z2": 2}),
    ({"model": "categorical", "latent_dim": [2], "categories": 3, "hidden": [16]}, {"z": 2}),
    ({"model": "support.discrete_user_models:IndexCategoricalVAE"}, {"y": 1}),
], ids=["sbn2-nonlinear-nvil", "categorical", "user-index-site"])
def test_a_tiny_run_draws_every_figure_and_counts_active_units(data_dir, tmp_path, options, per_site):
    lines = []
    trainer = train({**RUN, **options, "data_dir": data_dir, "out": str(tmp_path / "run")},
                    log=lines.append, progress=False)
    figures = {p.name for p in (tmp_path / "run" / "figures").iterdir()}
    assert figures == FIGURES  # the top layer has 2 units or fewer, but is discrete: no manifold
    top = trainer.structure.top
    if top.size == 2:
        skipped = [line for line in lines if line.startswith("manifold figure skipped")]
        assert len(skipped) == 1 and f"{top.name!r} is discrete" in skipped[0], lines
    summary = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert summary["latent_dim_per_site"] == per_site
    assert set(summary["active_units_per_site"]) == set(per_site)
    assert summary["active_units"] <= summary["latent_dim"] == sum(per_site.values())
    trusted = [options["model"]] if ":" in options["model"] else []  # reopened from its directory
    redrawn = plot_run(tmp_path / "run", trusted_imports=trusted)
    assert {p.name for p in redrawn} == FIGURES


def test_the_python_api_draws_a_discrete_run_trained_in_memory(data_dir, tmp_path):
    run = pyro_vae.train("sbn", data_dir=data_dir, latent_dim=[2], verbose=False,
                         **{k: v for k, v in RUN.items() if k not in ("plots", "eval_samples")})
    paths = pyro_vae.plot_run(run, out=tmp_path / "figures")
    assert {p.name for p in paths} == FIGURES == {p.name for p in (tmp_path / "figures").iterdir()}
