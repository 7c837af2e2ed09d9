"""Fused multiply-add `fma(a, b, c) = a * b + c` with broadcasting (StyleGAN2-ADA's `fma`).

One `torch.addcmul` call: one output buffer instead of a temporary for a * b, and
PyTorch's own backward, which sums the gradient over broadcast dimensions and is
differentiable to any order.
"""

import torch

#----------------------------------------------------------------------------

def fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """a * b + c for tensors that broadcast together; the result has the broadcast shape."""
    for name, t in (('a', a), ('b', b), ('c', c)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f'fma: {name} must be a torch.Tensor, got {type(t).__name__}')
    try:
        torch.broadcast_shapes(a.shape, b.shape, c.shape)
    except RuntimeError:
        raise ValueError(f'fma: shapes {list(a.shape)}, {list(b.shape)} and {list(c.shape)} do not broadcast') from None
    return torch.addcmul(c, a, b)

#----------------------------------------------------------------------------
