"""TF32: float32 matrix products and convolutions on NVIDIA tensor cores, at a 10-bit mantissa.

TF32 makes the float32 matmuls of a training step several times faster on Ampere and later
GPUs, at about 1e-3 relative error per product: noise that stochastic gradients swamp, so
training may use it (``--tf32``, off by default). PyTorch's own default leaves cuBLAS matmuls in
full float32 but lets cuDNN convolutions use TF32; pyro-vae sets both either way, so that
``tf32: false`` means full float32 everywhere.

A log p(x) estimate is another matter: it is compared with published numbers and between runs
to a few hundredths of a nat, and TF32 has not been measured to change it by less than its
standard error. So every evaluation (IWAE, AIS, BDMC, the end of training's) runs with TF32
off, whatever training used, and the previous setting is restored afterwards
(:func:`~pyro_vae.evaluation.evaluation_context`).

PyTorch 2.9 added per-backend ``fp32_precision`` switches ("tf32", "ieee", "none": inherit) and
refuses to read the old ``allow_tf32`` flags once they are set; older versions have only the
flags. This module reads and writes only one of the two, whichever the installed torch has.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

# The switches of PyTorch >= 2.9: (object, attribute), object as a dotted path in torch.backends.
_NEW_SWITCHES = (("cuda.matmul", "fp32_precision"), ("cudnn.conv", "fp32_precision"),
                 ("cudnn.rnn", "fp32_precision"))
_OLD_SWITCHES = (("cuda.matmul", "allow_tf32"), ("cudnn", "allow_tf32"))


def _new_api() -> bool:
    return hasattr(torch.backends.cuda.matmul, "fp32_precision")


def _switches() -> tuple[tuple[object, str], ...]:
    def owner(path: str) -> object:
        obj = torch.backends
        for part in path.split("."):
            obj = getattr(obj, part)
        return obj
    names = _NEW_SWITCHES if _new_api() else _OLD_SWITCHES
    return tuple((owner(path), attribute) for path, attribute in names)


def tf32_state() -> tuple:
    """The current TF32 switches, as :func:`set_tf32_state` takes them back."""
    return tuple(getattr(obj, attribute) for obj, attribute in _switches())


def set_tf32_state(state: tuple) -> None:
    for (obj, attribute), value in zip(_switches(), state):
        setattr(obj, attribute, value)


def tf32_enabled() -> bool:
    """Whether cuBLAS float32 matmuls may use TF32 now."""
    value = tf32_state()[0]
    return value == "tf32" if _new_api() else bool(value)


@contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 on (``enabled``) or off for float32 matmuls and cuDNN convolutions inside the block;
    the previous switches are restored on leaving it. A no-op on the CPU, where nothing reads
    them."""
    before = tf32_state()
    if _new_api():
        set_tf32_state(("tf32" if enabled else "ieee",) * len(before))
    else:
        set_tf32_state((enabled,) * len(before))
    try:
        yield
    finally:
        set_tf32_state(before)
