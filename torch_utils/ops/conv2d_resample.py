"""2-D convolution with optional FIR up/downsampling: `conv2d_resample` of StyleGAN2-ADA.

Definition (what every path below computes; the padding p is first widened so that the
resampling filter is centred, exactly as upsample2d / downsample2d do):

    up > 1:   p += [(fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2]
    down > 1: p += [(fw - down + 1) // 2, (fw - down) // 2, (fh - down + 1) // 2, (fh - down) // 2]

    y = upfirdn2d(x, f if up > 1 else None, up=up, padding=p, gain=up**2)   # zero insertion + FIR
    y = conv(y, w)                         # valid; correlation (F.conv2d) when flip_weight,
                                           # true convolution otherwise
    if down > 1: y = upfirdn2d(y, f, down=down)                            # FIR + subsample

All steps are linear and shift-invariant, so they may be reordered; the fast paths do:

- no resampling: one F.conv2d (padding folded in when symmetric);
- up: a strided transposed convolution (the zero-inserted image is never built and the
  conv costs as much as at the input resolution), then the FIR filter at the output;
- down: the FIR filter, then a strided convolution (only kept outputs are computed);
- 1x1 kernels: the conv runs at the lower of the two resolutions.

Convolutions go through conv2d_gradfix, so `no_weight_gradients()` applies.
"""

from typing import Optional

import torch

from . import conv2d_gradfix
from . import upfirdn2d
from .upfirdn2d import Padding

#----------------------------------------------------------------------------

def conv2d_resample(
    x:           torch.Tensor,              # Input [N, Cin, H, W], floating point.
    w:           torch.Tensor,              # Weight [Cout, Cin/groups, kh, kw], x's dtype.
    f:           Optional[torch.Tensor] = None,  # FIR filter (setup_filter) for resampling; None = [1].
    up:          int = 1,                   # Integer upsampling factor.
    down:        int = 1,                   # Integer downsampling factor.
    padding:     Padding = 0,               # Padding of the upsampled image: int, [x, y] or [x0, x1, y0, y1].
    groups:      int = 1,                   # Grouped convolution.
    flip_weight: bool = True,               # True = correlation (like F.conv2d), False = convolution.
    flip_filter: bool = False,              # False = FIR convolution, True = FIR correlation.
) -> torch.Tensor:
    """Convolve x with w, upsampling and/or downsampling with the FIR filter f. Returns [N, Cout, H', W']."""
    _check_args(x, w, f, up, down, groups)
    out_ch, in_per_group, kh, kw = w.shape
    fw, fh = upfirdn2d._get_filter_size(f)  # pylint: disable=protected-access
    px0, px1, py0, py1 = upfirdn2d._parse_padding(padding)  # pylint: disable=protected-access
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    pad = [px0, px1, py0, py1]
    pointwise = (kw == 1 and kh == 1)

    # 1x1 kernels: convolve at the lower resolution.
    if pointwise and up == 1 and down > 1:
        x = upfirdn2d.upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if pointwise and up > 1 and down == 1:
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d.upfirdn2d(x, f, up=up, padding=pad, gain=up ** 2, flip_filter=flip_filter)

    # Downsampling: FIR filter, then a strided convolution computing only the kept outputs.
    if up == 1 and down > 1:
        x = upfirdn2d.upfirdn2d(x, f, padding=pad, flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    # Upsampling: a strided transposed convolution (= zero insertion + full convolution
    # with the weight), then the FIR filter; the filter's padding q selects the window that
    # the definition's valid convolution sees. Outputs that q would crop on both sides are
    # not computed at all: that part goes into the transposed convolution's padding.
    if up > 1:
        q = [px0 - kw + 1, px1 - kw + up, py0 - kh + 1, py1 - kh + up]
        tx, ty = max(min(-q[0], -q[1]), 0), max(min(-q[2], -q[3]), 0)
        wt = _transpose_weight(w, groups)
        if flip_weight:
            wt = wt.flip([2, 3])  # the transposed conv convolves; flipping makes it correlate
        x = conv2d_gradfix.conv_transpose2d(x, wt, stride=up, padding=[ty, tx], groups=groups)
        x = upfirdn2d.upfirdn2d(x, f, padding=[q[0] + tx, q[1] + tx, q[2] + ty, q[3] + ty], gain=up ** 2,
                                flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x

    # No resampling.
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    x = upfirdn2d.upfirdn2d(x, None, padding=pad)
    return _conv(x, w, groups=groups, flip_weight=flip_weight)

#----------------------------------------------------------------------------

def _check_args(x, w, f, up, down, groups):
    for name, t in (('x', x), ('w', w)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.ndim != 4:
            what = f'shape {list(t.shape)} dtype {t.dtype}' if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f'conv2d_resample: {name} must be a 4-D floating-point tensor, got {what}')
    if w.dtype != x.dtype:
        raise ValueError(f'conv2d_resample: w has dtype {w.dtype} but x has {x.dtype}; cast w with w.to(x.dtype)')
    for name, v in (('up', up), ('down', down), ('groups', groups)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f'conv2d_resample: {name} must be an int >= 1, got {v!r}')
    if w.shape[0] % groups != 0 or x.shape[1] != w.shape[1] * groups:
        raise ValueError(f'conv2d_resample: x has {x.shape[1]} channels, w has shape {list(w.shape)} and groups={groups}; '
                         f'expected x channels == w.shape[1] * groups and w.shape[0] divisible by groups')
    if f is not None:
        upfirdn2d._check_filter(f)  # pylint: disable=protected-access

def _transpose_weight(w: torch.Tensor, groups: int) -> torch.Tensor:
    """[Cout, Cin/g, kh, kw] conv weight -> [Cin, Cout/g, kh, kw] transposed-conv weight."""
    out_ch, in_per_group, kh, kw = w.shape
    if groups == 1:
        return w.transpose(0, 1)
    w = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
    return w.reshape(groups * in_per_group, out_ch // groups, kh, kw)

def _conv(x, w, stride=1, padding=0, groups=1, flip_weight=True):
    """Correlate (flip_weight) or convolve x with w through conv2d_gradfix."""
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    return conv2d_gradfix.conv2d(x, w, stride=stride, padding=padding, groups=groups)

#----------------------------------------------------------------------------
