"""Training images that stay in host memory: each batch gathered by ``DataLoader`` workers into
pinned memory and copied to the device as the step needs it, for data too large to hold on the
device as one tensor (CIFAR-10 is 600 MB in float32, a folder of your own may be far more).

A run streams when ``stream`` says so: ``auto`` (the default) streams on a CUDA device when the
training split would take more than :data:`DEVICE_SHARE` of the device's free memory, never on the
CPU (where the data are in host memory anyway); ``always`` and ``never`` force the choice. The
batches are the same images in the same order as the in-memory path's (the epoch's permutation is
drawn as there and cut into the same batches): only where they wait differs. The evaluation splits
move to the device as before.
"""

from __future__ import annotations

from typing import Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset

STREAM = ("auto", "always", "never")
DEVICE_SHARE = 0.25  # of the device's free memory, at most, for the training split in auto
WORKERS = 2  # DataLoader worker processes gathering batches on a CUDA run


class _Rows(Dataset):
    """Rows of a host tensor, fetched a batch at a time (``__getitems__``: one gather per batch)."""

    def __init__(self, x: torch.Tensor):
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.x[index]

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return self.x[torch.as_tensor(indices)]


def _keep(batch: torch.Tensor) -> torch.Tensor:
    return batch


def decide(stream: str, train: torch.Tensor, device: torch.device) -> tuple[bool, Optional[str]]:
    """Whether to stream the training split ``train`` to ``device``, and a note saying why (for the
    run's log), under the ``stream`` setting (see the module docstring)."""
    size = train.numel() * train.element_size()
    if stream == "never" or (stream == "auto" and device.type != "cuda"):
        return False, None
    if stream == "always":
        return True, f"training images streamed from host memory ({size / 2**20:.0f} MB; stream always)"
    free, _ = torch.cuda.mem_get_info(device)
    if size <= DEVICE_SHARE * free:
        return False, None
    return True, (f"training images streamed from host memory: {size / 2**30:.2f} GB would take more than "
                  f"{DEVICE_SHARE:.0%} of the device's {free / 2**30:.2f} GB free")


class HostBatches:
    """The batches of an epoch from ``train`` in host memory to ``device`` (see the module
    docstring): ``epoch(batches)`` yields, for each index tensor of ``batches``, those rows on the
    device."""

    def __init__(self, train: torch.Tensor, device: torch.device):
        self.device = device
        cuda = device.type == "cuda"
        self.train = train.pin_memory() if cuda and not train.is_pinned() else train
        self.workers = WORKERS if cuda else 0

    def epoch(self, batches: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        # its own generator: a DataLoader draws its workers' base seed from the global stream
        # otherwise, which would shift every later binarization and particle of the run
        loader = DataLoader(_Rows(self.train), batch_sampler=[b.cpu().tolist() for b in batches],
                            collate_fn=_keep, num_workers=self.workers, pin_memory=self.device.type == "cuda",
                            generator=torch.Generator())
        for x in loader:
            yield x.to(self.device, non_blocking=True)
