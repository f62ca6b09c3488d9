"""The data section: which dataset, where its files are, and how much of it a run uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from pyro_vae.config.sections.base import Section, setting
from pyro_vae.core.choices import choices
from pyro_vae.core.errors import ConfigError


@dataclass
class DataSection(Section):
    """The dataset: which one (``pyro_vae.data`` publishes the names), where its files are, and how
    much of it a run uses."""

    section: ClassVar[str] = "data"

    dataset: str = setting(
        "mnist", choices="dataset", file_path=True, help="{names} | path/to/file.npz | path/to/folder",
        doc="`mnist` (grey levels, binarized afresh every batch), `binarized-mnist` (the fixed "
            "Larochelle binarization), `fashion-mnist`, a dataset registered with "
            "`register_dataset`, or your own: a `.npz` file of arrays `train`, `test` (and "
            "`valid`, labels), or a folder with `train/` and `test/` image folders (see "
            "[Your own data](models.md#your-own-data))")
    binarize: Optional[str] = setting(
        None, choices=("dynamic", "fixed", "none"), shown="`dynamic` for `bernoulli`, else `none`",
        help="dynamic | fixed | none: grey-level data binarized afresh every batch, once (a fixed "
             "draw), or kept as 8-bit grey levels (for a grey-level likelihood)",
        doc="how grey-level data (MNIST, Fashion-MNIST, your own 8-bit images) reach the model: "
            "`dynamic` (pixels drawn as Bernoulli(grey level) afresh every batch, evaluation "
            "splits once with a fixed seed), `fixed` (one fixed draw for every split) or `none` "
            "(the 8-bit grey levels themselves, for `logistic`, `logistic-mixture`, `gaussian` "
            "or `continuous-bernoulli`; gaussian and continuous-bernoulli see them dequantized). "
            "Data that are binary already (`binarized-mnist`) need none")
    image_size: Optional[list[int]] = setting(
        None, shown="as they are",
        help="a folder dataset: resize and centre-crop every image to H W (one number: square)",
        doc="for `--dataset path/to/folder`: every image resized (shorter side) and centre-cropped "
            "to `H W` (one number for a square); without it all images must have one size")
    channels: Optional[int] = setting(
        None, minimum=1, shown="the images' own",
        help="a folder dataset: 1 converts the images to grey, 3 to RGB",
        doc="for `--dataset path/to/folder`: 1 converts every image to grey, 3 to RGB (default: "
            "as the files are)")
    stream: str = setting(
        "auto", choices=("auto", "always", "never"),
        help="auto | always | never: keep the training images in host memory and copy each batch to "
             "the device (auto: on a CUDA device, when they would fill more than a quarter of it)",
        doc="`auto`: on a CUDA device whose free memory the training split would fill beyond a "
            "quarter, the training images stay in host memory and DataLoader workers gather each "
            "batch into pinned memory for the device (the same batches in the same order); "
            "`always` or `never` force the choice. The run's first lines say which it took")
    data_dir: Optional[str] = setting(
        None, path=True, shown="`$PYRO_VAE_DATA`, else `./data`",
        help="dataset directory (else $PYRO_VAE_DATA, else ./data)",
        doc="where the dataset files are, or are downloaded to")
    limit_train: Optional[int] = setting(
        None, minimum=1, shown="all", help="use only the first N training examples",
        doc="train on the first N training images only (quick runs, tests)")
    limit_test: Optional[int] = setting(
        None, minimum=1, shown="all", help="use only the first N test (and validation) examples",
        doc="evaluate on the first N test images only (and the first N validation images)")
    valid_size: Optional[int] = setting(
        None, minimum=1, shown="none",
        help="hold out the last N training images as a validation split (mnist, fashion-mnist; "
             "binarized-mnist has its own)",
        doc="hold out the last N training images as a validation split (`mnist`, `fashion-mnist`; "
            "binarized once, like the test split, and left out of training); `binarized-mnist` "
            "has its own 10,000. With a validation split every epoch reports `valid_elbo` and the "
            "best epoch is kept as `best.pt`")

    labels: Optional[int] = setting(
        None, minimum=1, shown="none",
        help="semi-supervised: keep the labels of N training images (balanced across classes, "
             "drawn from --seed); the rest are unlabelled (a model with a label site y: ssvae)",
        doc="N: semi-supervised training. N training images keep their labels, the same number of "
            "each class (Kingma et al. 2014), drawn from `seed`; the others lose theirs. Every step "
            "trains on `batch_size` unlabelled images and `labelled_batch_size` labelled ones; "
            "each epoch reports the classification accuracy of q(y | x) (see "
            "[Models: labels](models.md#labels-semi-supervised-and-conditional-models))")

    def own_validation(self) -> Optional[int]:
        """The size of the dataset's own validation split (None: none, or its owner is not
        imported)."""
        return _capability(self.dataset, "validation")

    def has_validation(self) -> bool:
        """Whether a run on this section has a validation split."""
        return self.valid_size is not None or bool(self.own_validation())

    def rules(self) -> None:
        folder = "/" in self.dataset and not self.dataset.endswith(".npz")
        for key in ("image_size", "channels"):
            if getattr(self, key) is not None and not folder:
                raise ConfigError(f"{key} applies to a folder of images (--dataset path/to/folder), and "
                                  f"dataset is {self.dataset!r}; drop {key}")
        if self.image_size is not None and (len(self.image_size) not in (1, 2) or min(self.image_size) < 1):
            raise ConfigError(f"image_size is H W (or one size for a square), positive; got {self.image_size}")
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"channels is 1 (grey) or 3 (RGB), got {self.channels}")
        if self.valid_size is None:
            return
        own = self.own_validation()
        if own:
            raise ConfigError(f"{self.dataset} has its own validation split ({own:,} images); "
                              "drop valid_size")
        size = _capability(self.dataset, "train_size")
        if size is not None and self.valid_size >= size:
            raise ConfigError(f"valid_size {self.valid_size} leaves no training images "
                              f"({size:,} in all)")


def _capability(dataset: str, capability: str):
    datasets = choices("dataset")
    if datasets is None or dataset not in datasets:
        return None
    return datasets.get(dataset).capabilities[capability]
