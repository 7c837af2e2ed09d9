"""upfirdn2d against scipy.signal.upfirdn (per axis) and scipy 2-D convolution, in float64."""
import numpy as np
import pytest
import scipy.signal
import torch

from torch_utils.ops import upfirdn2d

#----------------------------------------------------------------------------
# Independent reference: scipy per axis, then the window that the padding selects.

def _ref_1d(sig: np.ndarray, taps: np.ndarray, up: int, down: int, p0: int, p1: int, flip: bool) -> np.ndarray:
    """One axis (the last) of upfirdn2d: scipy's full upfirdn, windowed by the padding."""
    h = taps[::-1] if flip else taps
    n, k = sig.shape[-1], len(h)
    full = scipy.signal.upfirdn(h, sig, up=up, axis=-1)  # length (n - 1) * up + k
    length = n * up + p0 + p1 - k + 1
    out = np.zeros(sig.shape[:-1] + (length,))
    for i in range(length):
        j = i + k - 1 - p0
        if 0 <= j < full.shape[-1]:
            out[..., i] = full[..., j]
    return out[..., ::down]

def _ref_separable(x, fx, fy, up, down, pad, flip, gain):
    px0, px1, py0, py1 = pad
    y = _ref_1d(x, fx, up[0], down[0], px0, px1, flip)
    y = _ref_1d(np.swapaxes(y, -1, -2), fy, up[1], down[1], py0, py1, flip)
    return np.swapaxes(y, -1, -2) * gain

def _ref_2d(x, f, up, down, pad, flip, gain):
    """Zero insertion, padding and a 2-D scipy convolution, written out directly."""
    N, C, H, W = x.shape
    z = np.zeros((N, C, H * up[1], W * up[0]))
    z[:, :, ::up[1], ::up[0]] = x
    px0, px1, py0, py1 = pad
    z = np.pad(z, [(0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))])
    z = z[:, :, max(-py0, 0): z.shape[2] - max(-py1, 0), max(-px0, 0): z.shape[3] - max(-px1, 0)]
    op = scipy.signal.correlate2d if flip else scipy.signal.convolve2d
    out = np.stack([np.stack([op(z[n, c], f, mode='valid') for c in range(C)]) for n in range(N)])
    return out[:, :, ::down[1], ::down[0]] * gain

#----------------------------------------------------------------------------

CASES = [
    # up, down, padding
    (1, 1, 0), (2, 1, [2, 1]), (1, 2, [1, 1, 1, 1]), ([2, 3], 1, [3, 0, 1, 2]), (1, [2, 3], [0, 2, 1, 0]),
    (2, 2, [1, 2, 2, 1]), (3, 1, [-1, 2, 1, -2]), (1, 1, [-1, 0, 2, -1]), (4, 2, 1), ([1, 2], [3, 1], [2, 0, 0, 3]),
]

@pytest.mark.parametrize('up, down, padding', CASES)
@pytest.mark.parametrize('flip', [False, True])
def test_upfirdn2d_matches_scipy_separable(up, down, padding, flip):
    rng = np.random.RandomState(0)
    x = rng.randn(2, 3, 7, 6)
    taps = rng.randn(4)
    upxy = up if isinstance(up, list) else [up, up]
    downxy = down if isinstance(down, list) else [down, down]
    pad = upfirdn2d._parse_padding(padding)
    ref = _ref_separable(x, taps, taps, upxy, downxy, pad, flip, gain=1.7)
    f1 = torch.tensor(taps)
    for f in (f1, torch.outer(f1, f1)):  # 1-D separable and the equivalent 2-D filter
        y = upfirdn2d.upfirdn2d(torch.tensor(x), f, up=up, down=down, padding=padding, flip_filter=flip, gain=1.7)
        np.testing.assert_allclose(y.numpy(), ref, rtol=1e-10, atol=1e-10)

@pytest.mark.parametrize('up, down, padding', CASES)
@pytest.mark.parametrize('flip', [False, True])
def test_upfirdn2d_matches_scipy_2d_nonseparable(up, down, padding, flip):
    rng = np.random.RandomState(1)
    x = rng.randn(1, 2, 6, 7)
    f = rng.randn(3, 5)  # rank 3: not separable, not square
    upxy = up if isinstance(up, list) else [up, up]
    downxy = down if isinstance(down, list) else [down, down]
    ref = _ref_2d(x, f, upxy, downxy, upfirdn2d._parse_padding(padding), flip, gain=0.5)
    y = upfirdn2d.upfirdn2d(torch.tensor(x), torch.tensor(f), up=up, down=down, padding=padding, flip_filter=flip,
                            gain=0.5)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-10, atol=1e-10)

def test_upfirdn2d_float32_rank1_filter_close_to_float64():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 16, 16, dtype=torch.float64)
    f = upfirdn2d.setup_filter([1, 3, 3, 1], dtype=None) if False else upfirdn2d.setup_filter([1, 3, 3, 1])
    for op in (lambda t, g: upfirdn2d.upsample2d(t, g), lambda t, g: upfirdn2d.downsample2d(t, g),
               lambda t, g: upfirdn2d.filter2d(t, g)):
        y32 = op(x.float(), f)
        y64 = op(x, f.double())
        np.testing.assert_allclose(y32.double().numpy(), y64.numpy(), rtol=1e-5, atol=1e-5)

#----------------------------------------------------------------------------

def test_setup_filter_normalizes_expands_and_applies_gain():
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    np.testing.assert_allclose(f.numpy(), np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64, rtol=1e-6)
    assert f.dtype == torch.float32
    f8 = upfirdn2d.setup_filter(np.arange(1, 9), gain=4)  # >= 8 taps: stays 1-D, sqrt(gain) per axis
    np.testing.assert_allclose(f8.numpy(), np.arange(1, 9) / 36 * 2, rtol=1e-6)
    assert upfirdn2d.setup_filter([1, 2], flip_filter=True, normalize=False, separable=True).tolist() == [2, 1]
    assert upfirdn2d.setup_filter(None).tolist() == [[1.0]]

def test_upsample_downsample_filter2d_shapes_and_dc_gain():
    x = torch.ones(1, 2, 8, 8)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    up = upfirdn2d.upsample2d(x, f)
    assert up.shape == (1, 2, 16, 16)
    # A constant image keeps its value away from the borders (gain up**2 offsets the zeros).
    np.testing.assert_allclose(up[:, :, 2:-2, 2:-2].numpy(), 1, rtol=1e-6)
    down = upfirdn2d.downsample2d(x, f)
    assert down.shape == (1, 2, 4, 4)
    np.testing.assert_allclose(down[:, :, 1:-1, 1:-1].numpy(), 1, rtol=1e-6)
    assert upfirdn2d.filter2d(x, f, padding=[1, 2, 0, 3]).shape == (1, 2, 11, 11)

#----------------------------------------------------------------------------

@pytest.mark.parametrize('f_shape', [[4], [3, 4], [4, 4]])
@pytest.mark.parametrize('up, down, padding', [(1, 1, 1), (2, 1, [2, 1, 1, 2]), (1, 2, [1, 2, 2, 1]), (2, 2, 1),
                                               (1, 1, [-1, 1, 2, -1])])
def test_upfirdn2d_gradcheck_and_gradgradcheck(f_shape, up, down, padding):
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    f = torch.randn(f_shape, dtype=torch.float64)
    fn = lambda t: upfirdn2d.upfirdn2d(t, f, up=up, down=down, padding=padding, gain=1.3)
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))

def test_upfirdn2d_gradient_with_respect_to_filter():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    f = torch.outer(torch.arange(1., 4.), torch.arange(1., 4.)).double().requires_grad_()
    assert torch.autograd.gradcheck(lambda t, g: upfirdn2d.upfirdn2d(t, g, up=2, padding=1), (x, f))

#----------------------------------------------------------------------------

@pytest.mark.parametrize('kwargs, match', [
    (dict(x=torch.zeros(2, 3, 4)), '4-D'),
    (dict(x=torch.zeros(1, 1, 4, 4, dtype=torch.int64)), 'floating'),
    (dict(f=torch.zeros(2, 2, 2)), 'filter'),
    (dict(f=torch.zeros(0)), 'filter'),
    (dict(up=0), 'up'),
    (dict(down=[1, 2, 3]), 'down'),
    (dict(padding=[1, 2, 3]), 'padding'),
    (dict(padding=-3), 'empty'),
    (dict(impl='fast'), 'impl'),
])
def test_upfirdn2d_rejects_bad_arguments(kwargs, match):
    args = dict(x=torch.zeros(1, 1, 4, 4), f=torch.ones(3, 3))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        upfirdn2d.upfirdn2d(**args)

def test_setup_filter_rejects_bad_taps():
    with pytest.raises(ValueError, match='2-D'):
        upfirdn2d.setup_filter(np.ones([2, 2, 2]))
    with pytest.raises(ValueError, match='sum to 0'):
        upfirdn2d.setup_filter([1, -1])
