"""Semi-supervised data: the balanced label choice, the labelled/unlabelled split, and the
labelled images every step takes."""

import pytest
import torch

from pyro_vae.core.errors import ConfigError
from pyro_vae.data import VAEData
from pyro_vae.data.labels import balanced_choice, keep_labels, one_hot
from pyro_vae.training.labelled_draws import LabelledDraws, labelled_per_step


def _data(n=600, classes=10, seed=0) -> VAEData:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(classes, (n,), generator=g)
    train = torch.rand(n, 784, generator=g)
    return VAEData("toy", train, train[:50].round(), train_labels=labels, test_labels=labels[:50],
                   dynamic_binarization=True)


def test_balanced_choice_takes_the_same_number_of_each_class_drawn_from_the_seed():
    labels = _data().train_labels
    chosen = balanced_choice(labels, 100, seed=3)
    assert len(chosen) == 100 and len(set(chosen.tolist())) == 100
    assert torch.equal(torch.bincount(labels[chosen], minlength=10), torch.full((10,), 10))
    assert torch.equal(chosen, balanced_choice(labels, 100, seed=3))  # the seed decides
    assert not torch.equal(chosen, balanced_choice(labels, 100, seed=4))


def test_the_labels_left_over_go_one_each_to_different_classes():
    labels = _data().train_labels
    counts = torch.bincount(labels[balanced_choice(labels, 23, seed=0)], minlength=10)
    assert counts.sum() == 23 and sorted(counts.tolist()) == [2] * 7 + [3] * 3


def test_a_class_with_too_few_images_is_refused_in_one_line():
    labels = torch.tensor([0] * 50 + [1] * 3)
    with pytest.raises(ConfigError, match="4 labelled images of class 1, but the training split has 3"):
        balanced_choice(labels, 8, seed=0)


def test_keep_labels_moves_the_labelled_images_out_of_the_training_split():
    data = _data()
    split = keep_labels(data, 100, seed=1, classes=10)
    index = split.labelled.index
    assert len(split.train) == 500 and len(split.labelled) == 100 and split.labelled.classes == 10
    assert torch.equal(split.labelled.x, data.train[index])
    assert torch.equal(split.labelled.y, one_hot(data.train_labels[index], 10))
    rest = torch.ones(600, dtype=torch.bool)
    rest[index] = False
    assert torch.equal(split.train, data.train[rest]) and torch.equal(split.train_labels, data.train_labels[rest])
    assert torch.equal(split.test, data.test)  # evaluation splits keep all their labels


@pytest.mark.parametrize("change, message", [
    (dict(train_labels=None), "has no labels"),
    (dict(classes=5), "labels up to 9, more than the model's 5 classes"),
    (dict(count=600), "between 1 and 599"),
])
def test_data_that_cannot_be_split_is_refused_in_one_line(change, message):
    data, count, classes = _data(), change.pop("count", 100), change.pop("classes", 10)
    if change:
        data = VAEData("toy", data.train, data.test, **change)
    with pytest.raises(ConfigError, match=message):
        keep_labels(data, count, seed=0, classes=classes)


def test_every_step_takes_its_share_and_an_epoch_sees_each_labelled_image_in_turn():
    split = keep_labels(_data(), 100, seed=0, classes=10)
    per_step = labelled_per_step(split, batch_size=50, given=None)
    assert per_step == 10  # ceil(50 x 100 / 500)
    assert labelled_per_step(split, batch_size=50, given=3) == 3
    draws = LabelledDraws(split, per_step)
    torch.manual_seed(0)
    draws.start_epoch(num_batches=10, device=torch.device("cpu"))  # 100 draws: one shuffle
    assert sorted(draws.order.tolist()) == list(range(100))
    draws.start_epoch(num_batches=25, device=torch.device("cpu"))  # 250: two shuffles and a half
    counts = torch.bincount(draws.order, minlength=100)
    assert counts.min() >= 2 and counts.max() <= 3 and counts.sum() == 250
    x, y = draws.batch(3)
    index = draws.order[30:40]
    assert x.shape == (10, 784) and set(x.unique().tolist()) <= {0.0, 1.0}  # binarized afresh
    assert torch.equal(y, split.labelled.y[index])
