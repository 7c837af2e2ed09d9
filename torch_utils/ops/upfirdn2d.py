"""Upsample, FIR-filter and downsample 2-D images: the `upfirdn2d` op of StyleGAN2-ADA.

Along each axis it does what `scipy.signal.upfirdn` does, with explicit padding:

1. upsample by inserting `up - 1` zeros after every sample (length H * up);
2. pad with `pad0` zeros before and `pad1` after (negative values crop);
3. convolve with the FIR filter f (true convolution; `flip_filter=True` correlates),
   keeping only the fully overlapping ("valid") outputs;
4. keep every `down`-th sample.

The output length per axis is (H * up + pad0 + pad1 - len(f)) // down + 1. A 2-D filter
[fh, fw] is applied as one 2-D convolution; a 1-D filter is applied along x and then y
(a separable filter, the product of the two 1-D ones). `gain` scales the result.

The PyTorch path never materialises the zero-inserted image: upsampling is a strided
transposed depthwise convolution, downsampling a strided depthwise convolution, zero
padding happens inside the convolution where it can, and large rank-1 2-D filters are
split into two 1-D passes. All steps are built from differentiable PyTorch ops (any-order gradients).
"""

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

Scaling = Union[int, Sequence[int]]
Padding = Union[int, Sequence[int]]

#----------------------------------------------------------------------------

def _parse_scaling(scaling: Scaling, name: str) -> Tuple[int, int]:
    """An up/down factor as (sx, sy); int or [x, y], each an int >= 1."""
    if isinstance(scaling, (int, np.integer)) and not isinstance(scaling, bool):
        scaling = [int(scaling), int(scaling)]
    if not isinstance(scaling, (list, tuple)) or len(scaling) != 2 or \
            not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in scaling):
        raise ValueError(f'upfirdn2d: {name} must be an int >= 1 or a list [x, y] of such ints, got {scaling!r}')
    return int(scaling[0]), int(scaling[1])

def _parse_padding(padding: Padding) -> Tuple[int, int, int, int]:
    """Padding as (x0, x1, y0, y1) from an int, [x, y] or [x0, x1, y0, y1]."""
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
        padding = [int(padding)] * 2
    if not isinstance(padding, (list, tuple)) or len(padding) not in (2, 4) or \
            not all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in padding):
        raise ValueError(f'upfirdn2d: padding must be an int, [x, y] or [x0, x1, y0, y1] of ints, got {padding!r}')
    if len(padding) == 2:
        padding = [padding[0], padding[0], padding[1], padding[1]]
    return tuple(int(p) for p in padding)

def _get_filter_size(f: Optional[torch.Tensor]) -> Tuple[int, int]:
    """(fw, fh) of a filter made by setup_filter; (1, 1) for None."""
    if f is None:
        return 1, 1
    _check_filter(f)
    fw = f.shape[-1]
    fh = f.shape[0]
    return int(fw), int(fh)

def _check_filter(f):
    if not isinstance(f, torch.Tensor) or not f.is_floating_point():
        raise ValueError(f'upfirdn2d: the filter must be a floating-point torch.Tensor (see setup_filter), '
                         f'got {type(f).__name__}{" of dtype " + str(f.dtype) if isinstance(f, torch.Tensor) else ""}')
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(f'upfirdn2d: the filter must be 1-D [taps] or 2-D [fh, fw] and non-empty, '
                         f'got shape {list(f.shape)}; make it with setup_filter()')

#----------------------------------------------------------------------------

def setup_filter(
    f,                                  # Taps: array-like or tensor, 0/1/2-D; None = [1].
    device: torch.device = torch.device('cpu'),  # Where to put the result.
    normalize: bool = True,             # Scale so that the taps sum to 1.
    flip_filter: bool = False,          # Flip the taps.
    gain: float = 1,                    # Overall gain: a 2-D filter gets gain, 1-D gets sqrt(gain).
    separable: Optional[bool] = None,   # Keep 1-D (True) or expand to 2-D (False); None = 1-D if >= 8 taps.
) -> torch.Tensor:
    """Make a float32 FIR filter for upfirdn2d: 1-D [taps] (separable) or 2-D [fh, fw]."""
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2) or f.numel() == 0:
        raise ValueError(f'setup_filter: f must be a scalar, 1-D or 2-D and non-empty, got shape {list(f.shape)}')
    if f.ndim == 0:
        f = f[None]
    if separable is None:
        separable = (f.ndim == 1 and f.numel() >= 8)
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError(f'setup_filter: separable=True needs 1-D taps, got shape {list(f.shape)}')
    if normalize:
        total = f.sum()
        if total == 0:
            raise ValueError('setup_filter: the taps sum to 0 and cannot be normalized; pass normalize=False')
        f = f / total
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)

#----------------------------------------------------------------------------

def upfirdn2d(
    x:           torch.Tensor,              # Images [N, C, H, W], floating point.
    f:           Optional[torch.Tensor],    # Filter from setup_filter: [taps] or [fh, fw]; None = identity.
    up:          Scaling = 1,               # Upsampling factor: int or [x, y].
    down:        Scaling = 1,               # Downsampling factor: int or [x, y].
    padding:     Padding = 0,               # int, [x, y] or [x0, x1, y0, y1]; negative crops.
    flip_filter: bool = False,              # False = convolution (scipy), True = correlation.
    gain:        float = 1,                 # Scale of the output.
    impl:        str = 'cuda',              # 'cuda' (plugin on CUDA tensors) or 'ref' (PyTorch).
) -> torch.Tensor:
    """Upsample, pad, filter and downsample x; returns [N, C, H', W'] of x's dtype."""
    _check_images(x, 'upfirdn2d')
    if impl not in ('cuda', 'ref'):
        raise ValueError(f"upfirdn2d: impl must be 'cuda' or 'ref', got {impl!r}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    _check_filter(f)
    upx, upy = _parse_scaling(up, 'up')
    downx, downy = _parse_scaling(down, 'down')
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = f.shape[-1], f.shape[0]
    H, W = x.shape[2], x.shape[3]
    out_w = (W * upx + px0 + px1 - fw) // downx + 1
    out_h = (H * upy + py0 + py1 - fh) // downy + 1
    if out_w < 1 or out_h < 1 or W * upx + px0 + px1 < fw or H * upy + py0 + py1 < fh:
        raise ValueError(f'upfirdn2d: the output would be empty: input {H}x{W}, up {upx},{upy}, '
                         f'padding {[px0, px1, py0, py1]}, filter {fh}x{fw}; pad more or use a smaller filter')
    if impl == 'cuda' and x.is_cuda:
        plugin_op = _cuda_op()
        if plugin_op is not None:
            return plugin_op(x, f, (upx, upy), (downx, downy), (px0, px1, py0, py1), flip_filter, gain)
    return _upfirdn2d_torch(x, f, (upx, upy), (downx, downy), (px0, px1, py0, py1), flip_filter, gain)

def _check_images(x, op):
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 4:
        what = f'shape {list(x.shape)} dtype {x.dtype}' if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f'{op}: x must be a 4-D floating-point tensor [N, C, H, W], got {what}')

#----------------------------------------------------------------------------

def _upfirdn2d_torch(x, f, up, down, padding, flip_filter, gain):
    """The PyTorch path (arguments already parsed). Any-order differentiable."""
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = padding
    f = f.to(x.dtype)
    if not flip_filter:
        # The steps below correlate; flipping the taps turns that into convolution.
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        # Measured on CPU: one 2-D depthwise pass beats two 1-D passes up to 4x4 taps or so.
        fx_fy = _split_rank1(f) if min(f.shape) >= 6 else None
        if fx_fy is None:
            if gain != 1:
                f = f * gain
            return _fir_axis_pair(x, f, upx, upy, downx, downy, px0, px1, py0, py1)
        fx, fy = fx_fy
    else:
        fx = fy = f
    if gain != 1:
        fx = fx * gain
    x = _fir_axis_pair(x, fx[None, :], upx, 1, downx, 1, px0, px1, 0, 0)
    return _fir_axis_pair(x, fy[:, None], 1, upy, 1, downy, 0, 0, py0, py1)

def _split_rank1(f: torch.Tensor) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """(fx, fy) with f == outer(fy, fx) when the 2-D filter f [fh, fw] has rank 1; else None.

    Two 1-D passes cost fw + fh multiply-adds per pixel instead of fw * fh. Checked only on
    CPU (on a GPU the check would synchronise) and never when f itself needs a gradient.
    """
    if f.device.type != 'cpu' or f.requires_grad or f.numel() > 1024 or min(f.shape) == 1:
        return None
    with torch.no_grad():
        r, c = divmod(int(f.abs().argmax()), f.shape[1])
        pivot = f[r, c]
        if pivot == 0:
            return None
        fy = f[:, c].clone()
        fx = f[r, :] / pivot
        if not torch.allclose(torch.outer(fy, fx), f, rtol=1e-6, atol=1e-7 * float(pivot.abs())):
            return None
    return fx, fy

def _fir_axis_pair(x, w2d, upx, upy, downx, downy, px0, px1, py0, py1):
    """Zero-insert, pad, correlate (valid) with the taps w2d [kh, kw], subsample: one conv."""
    N, C, H, W = x.shape
    kh, kw = w2d.shape
    weight = w2d[None, None].expand(C, 1, kh, kw)
    if upx == 1 and upy == 1:
        if kh == 1 and kw == 1:
            # A single tap: padding and subsampling, then a scale unless it is exactly 1.
            x = _pad(x, px0, px1, py0, py1)[:, :, ::downy, ::downx]
            return x if (not w2d.requires_grad and float(w2d[0, 0]) == 1) else x * w2d[0, 0]
        # The symmetric part of the zero padding is done by the convolution itself, which
        # saves a padded copy of the image (and its gradient) in the common cases.
        sx, sy = max(min(px0, px1), 0), max(min(py0, py1), 0)
        x = _pad(x, px0 - sx, px1 - sx, py0 - sy, py1 - sy)
        return F.conv2d(x, weight, stride=(downy, downx), padding=(sy, sx), groups=C)
    # A strided transposed convolution is zero insertion followed by a full convolution
    # with the taps, so it takes the flipped (convolution) taps and returns the full
    # result; padding then selects the window that the valid correlation would see.
    y = F.conv_transpose2d(x, weight.flip([2, 3]), stride=(upy, upx), groups=C)
    y = _pad(y, px0 - kw + 1, px1 - kw + upx, py0 - kh + 1, py1 - kh + upy)
    if downx > 1 or downy > 1:
        y = y[:, :, ::downy, ::downx]
    return y

def _pad(x, x0, x1, y0, y1):
    """Zero-pad the last two dims (negative amounts crop, as a view when only cropping)."""
    if min(x0, x1, y0, y1) < 0:
        H, W = x.shape[2], x.shape[3]
        x = x[:, :, max(-y0, 0): H - max(-y1, 0), max(-x0, 0): W - max(-x1, 0)]
    if max(x0, x1, y0, y1) > 0:
        x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    return x

#----------------------------------------------------------------------------

def filter2d(x: torch.Tensor, f: Optional[torch.Tensor], padding: Padding = 0, flip_filter: bool = False,
             gain: float = 1, impl: str = 'cuda') -> torch.Tensor:
    """Filter x [N, C, H, W] with f, padded so the output keeps the input size (plus padding)."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)

def upsample2d(x: torch.Tensor, f: Optional[torch.Tensor], up: Scaling = 2, padding: Padding = 0,
               flip_filter: bool = False, gain: float = 1, impl: str = 'cuda') -> torch.Tensor:
    """Upsample x [N, C, H, W] by `up` with filter f: output [N, C, H*up, W*up] (plus padding).

    The gain is multiplied by upx * upy to keep the mean brightness of the zero-inserted image.
    """
    upx, upy = _parse_scaling(up, 'up')
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2,
         py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=(upx, upy), padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)

def downsample2d(x: torch.Tensor, f: Optional[torch.Tensor], down: Scaling = 2, padding: Padding = 0,
                 flip_filter: bool = False, gain: float = 1, impl: str = 'cuda') -> torch.Tensor:
    """Downsample x [N, C, H, W] by `down` with filter f: output [N, C, H/down, W/down] (plus padding)."""
    downx, downy = _parse_scaling(down, 'down')
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2,
         py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=(downx, downy), padding=p, flip_filter=flip_filter, gain=gain, impl=impl)

#----------------------------------------------------------------------------

# The CUDA plugin: one kernel (upfirdn2d.h) that correlates with 2-D taps. upfirdn2d is
# linear in x, so its gradient is upfirdn2d again (the adjoint), which gives any order.

def _cuda_kernel():
    """The plugin's kernel function, or None when the plugin cannot be built (one warning)."""
    import os  # pylint: disable=import-outside-toplevel
    from .. import custom_ops  # pylint: disable=import-outside-toplevel
    plugin = custom_ops.get_plugin('upfirdn2d_plugin', sources=['upfirdn2d.cpp', 'upfirdn2d.cu'],
                                   headers=['upfirdn2d.h'], source_dir=os.path.dirname(__file__))
    if plugin is None:
        return None
    def kernel(x, taps, upx, upy, downx, downy, px0, px1, py0, py1, gain):
        with torch.cuda.device(x.device):
            return plugin.upfirdn2d(x, taps.to(x.device), upx, upy, downx, downy, px0, px1, py0, py1, gain,
                                    torch.cuda.current_stream(x.device).cuda_stream)
    return kernel

def _cuda_op():
    """upfirdn2d through the plugin (same arguments as _upfirdn2d_torch), or None."""
    kernel = _cuda_kernel()
    if kernel is None:
        return None
    return lambda x, f, up, down, padding, flip_filter, gain: upfirdn2d_by_kernel(kernel, x, f, up, down, padding,
                                                                                 flip_filter, gain)

def reference_kernel(x, f, upx, upy, downx, downy, px0, px1, py0, py1, gain):
    """The plugin kernel's contract in PyTorch: correlation with the 2-D taps f [fh, fw]."""
    return _upfirdn2d_torch(x, f.to(x.dtype), (upx, upy), (downx, downy), (px0, px1, py0, py1), True, gain)

def upfirdn2d_by_kernel(kernel, x, f, up, down, padding, flip_filter, gain):
    """upfirdn2d through a kernel with the plugin's contract; differentiable to any order."""
    if f.ndim == 1:
        f = torch.outer(f, f)
    taps = (f if flip_filter else f.flip([0, 1])).to(torch.float32).contiguous()
    return _KernelUpFirDn2d.apply(x, (kernel, taps, up, down, padding, gain))

def _adjoint_cfg(cfg, in_h, in_w, out_h, out_w):
    """Arguments of the upfirdn2d that is the adjoint (gradient) of the one cfg describes.

    Per axis, out[o] = sum_k taps[k] xu[o*d + k - p0]; its adjoint zero-inserts by d,
    correlates with the reversed taps after padding K - 1 - p0 in front, and keeps every
    u-th sample, which needs (in - 1) * u + 1 samples: that fixes the back padding.
    """
    kernel, taps, (upx, upy), (downx, downy), (px0, px1, py0, py1), gain = cfg
    fh, fw = taps.shape
    pad = (fw - 1 - px0, (in_w - 1) * upx + 1 - out_w * downx + px0,
           fh - 1 - py0, (in_h - 1) * upy + 1 - out_h * downy + py0)
    return (kernel, taps.flip([0, 1]), (downx, downy), (upx, upy), pad, gain)

class _KernelUpFirDn2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, cfg):  # pylint: disable=arguments-differ
        kernel, taps, (upx, upy), (downx, downy), (px0, px1, py0, py1), gain = cfg
        y = kernel(x, taps, upx, upy, downx, downy, px0, px1, py0, py1, gain)
        ctx.adjoint = _adjoint_cfg(cfg, x.shape[2], x.shape[3], y.shape[2], y.shape[3])
        return y

    @staticmethod
    def backward(ctx, dy):  # pylint: disable=arguments-differ
        return _KernelUpFirDn2d.apply(dy, ctx.adjoint), None

#----------------------------------------------------------------------------
