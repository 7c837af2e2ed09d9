"""Bilinear `grid_sample` with second-order gradients: `grid_sample_gradfix` of StyleGAN2-ADA.

`grid_sample(input, grid)` is `F.grid_sample(input, grid, mode='bilinear',
padding_mode='zeros', align_corners=False)`. ADA's geometric augmentations sit between the
real images and D, so the R1 penalty differentiates through the input-gradient of this op.

Current PyTorch differentiates `grid_sampler_2d_backward` itself; that is checked once, on
first use, with a tiny probe and then used (second order for input and grid). Where it is
missing (older releases) a custom node supplies the second-order gradient with respect to
the incoming gradient, which is all R1 needs (the grid never requires a gradient there);
asking it for a second-order gradient with respect to the grid raises a clear error.
"""

from typing import List

import torch
import torch.nn.functional as F

# Kept for compatibility with code that sets `grid_sample_gradfix.enabled = True`.
enabled = True

_native_ok: List[bool] = []

#----------------------------------------------------------------------------

def grid_sample(input: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample input [N, C, H, W] at grid [N, Ho, Wo, 2] (x, y in [-1, 1]): returns [N, C, Ho, Wo]."""
    _check_args(input, grid)
    if _native_double_backward():
        return _sample(input, grid)
    return _GridSample.apply(input, grid)

def _check_args(x, grid):
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        what = f'shape {list(x.shape)} dtype {x.dtype}' if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f'grid_sample: input must be a 4-D floating-point tensor [N, C, H, W], got {what}')
    if not isinstance(grid, torch.Tensor) or grid.ndim != 4 or grid.shape[3] != 2 or grid.shape[0] != x.shape[0]:
        what = f'shape {list(grid.shape)}' if isinstance(grid, torch.Tensor) else type(grid).__name__
        raise ValueError(f'grid_sample: grid must be [N, Ho, Wo, 2] with N = {x.shape[0]}, got {what}')
    if grid.dtype != x.dtype:
        raise ValueError(f'grid_sample: grid has dtype {grid.dtype} but input has {x.dtype}; cast one to the other')

def _sample(x, grid):
    return F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=False)

def _native_double_backward() -> bool:
    """Whether this PyTorch differentiates grid_sample's backward (probed once, on CPU)."""
    if not _native_ok:
        try:
            x = torch.ones([1, 1, 2, 2], dtype=torch.float64, requires_grad=True)
            g = torch.zeros([1, 1, 1, 2], dtype=torch.float64, requires_grad=True)
            gx, = torch.autograd.grad(_sample(x, g).sum(), x, create_graph=True)
            torch.autograd.grad(gx.square().sum(), g, allow_unused=True)
            _native_ok.append(True)
        except RuntimeError:
            _native_ok.append(False)
    return _native_ok[0]

#----------------------------------------------------------------------------

def _backward(dy, x, grid, need_x, need_grid):
    """(d input, d grid) of bilinear/zeros/align_corners=False grid_sample."""
    return torch.ops.aten.grid_sampler_2d_backward(dy, x, grid, 0, 0, False, [need_x, need_grid])

class _GridSample(torch.autograd.Function):
    """grid_sample whose backward is itself differentiable with respect to the incoming gradient."""

    @staticmethod
    def forward(ctx, x, grid):  # pylint: disable=arguments-differ
        ctx.save_for_backward(x, grid)
        return _sample(x, grid)

    @staticmethod
    def backward(ctx, dy):  # pylint: disable=arguments-differ
        x, grid = ctx.saved_tensors
        dx, dgrid = _GridSampleBackward.apply(dy, x, grid, ctx.needs_input_grad[1])
        return (dx if ctx.needs_input_grad[0] else None), (dgrid if ctx.needs_input_grad[1] else None)

class _GridSampleBackward(torch.autograd.Function):
    """The backward of grid_sample; its own backward covers the incoming-gradient path.

    d input = S^T dy is linear in dy, with S the sampling matrix fixed by the grid, so its
    adjoint is S: grid_sample of the incoming second-order gradient. It does not depend on
    the input at all. d grid and the grid-dependence of S would need second derivatives of
    the bilinear weights, which this fallback does not provide.
    """

    @staticmethod
    def forward(ctx, dy, x, grid, need_grid):  # pylint: disable=arguments-differ
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(grid)
        dx, dgrid = _backward(dy, x, grid, True, need_grid)
        return dx, (dgrid if need_grid else torch.zeros_like(grid))

    @staticmethod
    def backward(ctx, ddx, ddgrid):  # pylint: disable=arguments-differ
        grid, = ctx.saved_tensors
        if ddgrid is not None or (ddx is not None and ctx.needs_input_grad[2]):
            raise RuntimeError('grid_sample_gradfix: this PyTorch has no second-order gradient of grid_sample '
                               'through the grid; only the input-gradient path that R1 uses is supported. '
                               'Upgrade PyTorch (2.x differentiates grid_sample twice natively).')
        d_dy = _GridSample.apply(ddx, grid) if ddx is not None and ctx.needs_input_grad[0] else None
        return d_dy, None, None, None

#----------------------------------------------------------------------------
