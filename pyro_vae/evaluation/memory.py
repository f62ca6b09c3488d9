"""How much memory an evaluation may use, and what to do when it runs out.

The importance-weighted estimate (:mod:`.iwae`) draws its K particles per data point in chunks,
and AIS (:mod:`.ais`) its chains in batches of images; both sizes follow from one budget for the
activations (:func:`memory_budget`: by default 1 GiB on the CPU, a share of the free memory on
CUDA) divided by what one particle costs, measured on the model itself (:func:`particle_bytes`).
The chunk size decides how the random stream is cut, so the budget is chosen to be reproducible
(a power of two) rather than as large as possible. Where the budget still overshoots, a CUDA
out-of-memory error halves the work and retries (:func:`halved_after_out_of_memory`,
:func:`release_memory`). One module for both estimators, so that they count and retry alike.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import nn

from pyro_vae.core.options import option
from pyro_vae.core.workload import show_bytes
from pyro_vae.infer.importance import log_weights, trace_particles
from pyro_vae.models.sites import isolated, sample_sites

# The memory budget "auto" (see memory_budget): on the CPU the long-standing 1 GiB, so CPU results
# are what they always were; on CUDA this share of the free memory, rounded down to a power of two.
AUTO_MEMORY = "auto"
CPU_MEMORY_BUDGET = 2**30
CUDA_FREE_SHARE = 0.5
# The out-of-memory error of the caching allocator: torch.cuda.OutOfMemoryError since torch 1.13,
# also named torch.OutOfMemoryError in recent versions (the same class); a RuntimeError either way.
OutOfMemoryError = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def parse_memory(text: str | int) -> int:
    """'2GiB', '512MB', '1e9' or an int -> bytes ("auto" is :func:`memory_budget`'s)."""
    if isinstance(text, int):
        return text
    units = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "kb": 10**3, "mb": 10**6, "gb": 10**9, "b": 1}
    s = text.strip().lower().replace(" ", "")
    number, factor = s, 1
    for unit, unit_factor in units.items():
        if s.endswith(unit):
            number, factor = s[: -len(unit)], unit_factor
            break
    value = float(number) * factor
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite size")
    return int(value)


def power_of_two_below(n: float) -> int:
    """The largest power of two <= ``n`` (1 for less)."""
    return 2 ** max(0, int(n).bit_length() - 1)


def memory_budget(max_memory: int | str, device: torch.device,
                  log: Optional[Callable[[str], None]] = None) -> int:
    """Bytes of activations one chunk of particles (AIS: one batch of chains) may use.

    An explicit size (``max_memory="8GiB"``; ``--max-memory 8GiB``) is taken as it is. "auto":
    on the CPU 1 GiB, the budget pyro-vae always had, so CPU numbers stay what they were. On
    CUDA a 1 GiB budget cuts K = 5000 for 100 images into ~18 chunks, each a Pyro trace on the
    host, so the GPU idles between them; "auto" takes half of the free memory instead (``torch.cuda.mem_get_info``, plus
    what PyTorch's caching allocator holds unused, e.g. after training in the same process):
    the other half is headroom for what the budget does not count (the allocator's rounding and
    fragmentation, the K x B log-weights and their copies, cuBLAS workspaces, and
    :func:`particle_bytes` errs large anyway). It is rounded down to a power of two, so that
    a little more or less free memory gives the same chunks, hence the same numbers (the chunk
    size decides how the random stream is cut); ``max_memory`` of that size reproduces them
    anywhere. ``log``: where to say what "auto" chose on CUDA."""
    if not (isinstance(max_memory, str) and max_memory.strip().lower() == AUTO_MEMORY):
        return parse_memory(max_memory)
    if device.type != "cuda":
        return CPU_MEMORY_BUDGET
    free = torch.cuda.mem_get_info(device)[0]
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)  # cached, unused
    budget = power_of_two_below(CUDA_FREE_SHARE * free)
    if log is not None:
        log(f"memory budget: {show_bytes(budget)} (half of the {show_bytes(free)} free on "
            f"{device}, rounded down to a power of two; {option('max_memory')} sets it)")
    return budget


def particle_bytes(model, x: torch.Tensor) -> int:
    """Bytes that one particle of one data point costs, measured on the model itself: the outputs
    of every leaf module (forward hooks) while the guide and model run with two particles on one
    data point and the log-weights are computed, per particle, plus three floats per value of
    every sample site (values, log-density terms) and per mixture component, doubled for
    temporaries. Modules that run once per data point (the encoder of x) count half: an
    overestimate that keeps the budget safe."""
    floats = [0]

    def count(_module, _inputs, output):
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        floats[0] += sum(o.numel() for o in outputs if torch.is_tensor(o))

    leaves = [m for m in model.modules() if not list(m.children())] if isinstance(model, nn.Module) else []
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad(), isolated(x):
            traces = trace_particles(model.model, model.guide, x[:1], num_samples=2)
            log_weights(traces)
    finally:
        for h in hooks:
            h.remove()
    for trace in (traces.guide, traces.model):
        for site in sample_sites(trace):
            fn = site["fn"]
            mixture = getattr(fn, "mixture_distribution", None)
            components = mixture.logits.shape[-1] if mixture is not None else 1
            shape = torch.broadcast_shapes(site["value"].shape, fn.batch_shape + fn.event_shape)
            floats[0] += 3 * components * math.prod(shape)
    per_particle = floats[0] // 2
    return 2 * 4 * per_particle


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, OutOfMemoryError) or "out of memory" in str(error)


def halved_after_out_of_memory(error: BaseException, size: int, unit: str,
                               log: Callable[[str], None]) -> int:
    """The work size to retry with after ``error``: half of ``size``, said in the log; re-raises
    ``error`` if it is not an out-of-memory error or the size cannot shrink. The caller then
    leaves its ``except`` block (whose exception's traceback holds the failed attempt's
    tensors) and calls :func:`release_memory` before retrying."""
    if not is_out_of_memory(error) or size == 1:
        raise error
    size = max(1, size // 2)
    log(f"out of memory: retrying with {size} {unit}")
    return size


def release_memory(device: torch.device) -> None:
    """Give the CUDA caching allocator's free blocks back, so that a retry after an out-of-memory
    error finds unfragmented memory (nothing to do on the CPU)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
