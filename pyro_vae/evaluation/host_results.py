"""Each batch's results of the importance-weighted estimate, moved to the host and unpacked.

Everything of a batch stays on the device until it is done; then its columns (log p^(x), the
ELBO, the K log-weights, the site means) move to the host in one copy. On CUDA that copy does
not wait: it goes into pinned memory, and PSIS (float64, on the CPU: the largest single cost at
GPU speed) runs on a worker thread while the GPU draws the next batch's particles
(:class:`HostResults`). Apart from :mod:`.iwae`'s loop, so that the loop reads as the
estimator and this as the plumbing that keeps the GPU busy; both ways give the same numbers.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from pyro_vae.evaluation.psis import psis

# Batches whose results may wait for PSIS on the worker thread at once (HostResults): two keep
# the GPU and the CPU both busy; more would only hold more pinned memory.
PSIS_IN_FLIGHT = 2


def unpack(packed: np.ndarray, num_samples: int, diagnostics: bool,
           site_sizes: dict[str, int]) -> dict:
    """One batch's results from its packed columns (log p^(x), the ELBO, the K log-weights, the
    site means): copies of the small columns (so that the K log-weights are not kept alive by
    views of them), and PSIS's k-hat and ESS where ``diagnostics``."""
    result = {"log_px": packed[:, 0].copy(), "elbo": packed[:, 1].copy(), "means": {}}
    if diagnostics:
        result["khat"], result["ess"] = psis(packed[:, 2:2 + num_samples])
    column = 2 + num_samples
    for name, size in site_sizes.items():
        result["means"][name] = packed[:, column:column + size].copy()
        column += size
    return result


class HostResults:
    """Each batch's results on the host, in batch order (:func:`unpack`).

    Serial (``overlap`` False, the CPU's way): a batch is copied to the host and unpacked, PSIS
    included, before the next one starts. Overlapped (CUDA's): the copy goes into pinned host
    memory without waiting for it, and unpacking and PSIS run on one worker thread while the
    main thread queues the next batch's GPU work; at most PSIS_IN_FLIGHT batches wait for the
    worker. PSIS is the largest single cost at GPU speed (ArviZ fits each row in float64 on the
    CPU), so it then overlaps the GPU's work instead of following it. Both ways reach the same
    code with the same float32 columns: the numbers are identical.
    """

    def __init__(self, num_samples: int, diagnostics: bool, overlap: bool):
        self.num_samples, self.diagnostics, self.overlap = num_samples, diagnostics, overlap
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="psis") if overlap else None
        self.parts: list[Future | dict] = []
        self.waited = 0  # the parts before this index are resolved

    def add(self, packed: torch.Tensor, site_sizes: dict[str, int]) -> None:
        """Take one batch's packed ``(B, 2 + K + D)`` columns (on the device)."""
        args = (self.num_samples, self.diagnostics, site_sizes)
        if self.pool is None:
            self.parts.append(unpack(packed.cpu().numpy(), *args))  # the batch's one host transfer
            return
        copied = None
        if packed.is_cuda:
            host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
            host.copy_(packed, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record()
        else:  # the overlapped path on the CPU (tests): nothing to copy
            host = packed

        def work() -> dict:
            if copied is not None:
                copied.synchronize()
            return unpack(host.numpy(), *args)
        self.parts.append(self.pool.submit(work))
        while len(self.parts) - self.waited > PSIS_IN_FLIGHT:
            self.parts[self.waited] = self.parts[self.waited].result()
            self.waited += 1

    def results(self) -> list[dict]:
        """Every batch's :func:`unpack` result, in the order they were added."""
        return [part.result() if isinstance(part, Future) else part for part in self.parts]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
