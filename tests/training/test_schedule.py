import pytest

from pyro_vae.training.schedule import iwae_stage, learning_rate


def test_iwae_schedule_stages_last_3_to_the_i_epochs():
    stages = [iwae_stage(e) for e in range(1, 3281)]
    assert [stages.count(i) for i in range(8)] == [3 ** i for i in range(8)]
    assert stages == sorted(stages)
    assert iwae_stage(5000) == 7


def test_learning_rates():
    assert learning_rate("constant", 0.1, 99) == 0.1
    assert learning_rate("iwae", 1e-3, 1) == 1e-3
    assert learning_rate("iwae", 1e-3, 2) == pytest.approx(1e-3 * 10 ** (-1 / 7))
    assert learning_rate("iwae", 1e-3, 3280) == pytest.approx(1e-4)


def test_a_scaled_iwae_schedule_keeps_its_shape():
    stages = [iwae_stage(e, 0.1) for e in range(1, 329)]
    assert [stages.count(i) for i in range(8)] == [0, 0, 1, 3, 8, 24, 73, 219]
    assert stages == sorted(stages) and stages[-1] == 7
    assert learning_rate("iwae", 1e-3, 328, 0.1) == pytest.approx(1e-4)
    assert [iwae_stage(e, 1.0) for e in range(1, 100)] == [iwae_stage(e) for e in range(1, 100)]
