"""The check every objective's compiled step must pass: the graph traced once
(:class:`~pyro_vae.infer.lowering.LoweredStep`) gives the eager step's loss and gradients for the
same seed, and fresh noise on every call."""

import torch

from pyro_vae.infer.lowering import LoweredStep, differentiable_loss, tensor_items


def assert_compiled_equals_eager(elbo, model, guide, params, x, inputs=(), seeds=(1, 2),
                                 random: bool = True) -> LoweredStep:
    """Trace ``elbo``'s step for ``model``/``guide`` (``inputs``: the step's StepInput handlers,
    already wrapped around them) and compare it with the eager loss and gradients at each seed
    (loss to 1e-6, gradients to 1e-5 relative); ``random``: the step draws noise, fresh on every
    call (False: an exact sum, the same every time). ``x``: the step's data, or a tuple of its
    inputs (a semi-supervised step's ``(x, x_labelled, y_labelled)``). Returns the compiled step."""
    params = list(params)
    batch = x if isinstance(x, tuple) else (x,)
    lowered = LoweredStep(elbo, model, guide, params, list(inputs))
    lowered.compile(*batch)  # traces: a fallback to eager would raise here
    for seed in seeds:  # the same draws from the same seed
        torch.manual_seed(seed)
        loss, grads = lowered(*batch)
        torch.manual_seed(seed)
        with tensor_items():
            eager_loss = differentiable_loss(elbo, model, guide, *batch)
        eager_grads = torch.autograd.grad(eager_loss, params, allow_unused=True)
        torch.testing.assert_close(loss, eager_loss.detach(), rtol=1e-6, atol=0)
        for g, e in zip(grads, eager_grads):
            assert (g is None) == (e is None)
            if g is not None:
                torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5 * e.abs().max().item())
    torch.manual_seed(seeds[0])
    first, _ = lowered(*batch)
    assert torch.equal(first, lowered(*batch)[0]) != random  # new noise each step, or none
    return lowered
