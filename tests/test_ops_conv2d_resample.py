"""conv2d_resample against its definition written out: zero insertion, FIR and F.conv2d."""
import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F

from torch_utils.ops import conv2d_resample, upfirdn2d

#----------------------------------------------------------------------------
# Independent reference: numpy zero insertion and padding, scipy FIR, plain F.conv2d.

def _fir(img: np.ndarray, f2: np.ndarray, flip_filter: bool) -> np.ndarray:
    op = scipy.signal.correlate2d if flip_filter else scipy.signal.convolve2d
    return np.stack([np.stack([op(img[n, c], f2, mode='valid') for c in range(img.shape[1])])
                     for n in range(img.shape[0])])

def _reference(x, w, f, up, down, padding, groups, flip_weight, flip_filter):
    f2 = None if f is None else (np.outer(f, f) if f.ndim == 1 else f)
    fh, fw = (1, 1) if f2 is None else f2.shape
    px0, px1, py0, py1 = [padding] * 4 if isinstance(padding, int) else padding
    if up > 1:  # centre the resampling filter, as upsample2d does
        px0, px1, py0, py1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2, py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:  # ... and as downsample2d does
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    N, C, H, W = x.shape
    z = np.zeros((N, C, H * up, W * up))
    z[:, :, ::up, ::up] = x
    z = np.pad(z, [(0, 0), (0, 0), (py0, py1), (px0, px1)])
    if up > 1:
        z = _fir(z, f2 * up ** 2, flip_filter)
    wt = torch.tensor(w if flip_weight else w[:, :, ::-1, ::-1].copy())
    z = F.conv2d(torch.tensor(z), wt, groups=groups).numpy()
    if down > 1:
        z = _fir(z, f2, flip_filter)[:, :, ::down, ::down]
    return z

#----------------------------------------------------------------------------

@pytest.mark.parametrize('k', [1, 3, 4])
@pytest.mark.parametrize('up, down', [(1, 1), (2, 1), (1, 2), (2, 2), (4, 1)])
@pytest.mark.parametrize('padding', [0, 1, [2, 0, 1, 3]])
@pytest.mark.parametrize('groups', [1, 2])
def test_conv2d_resample_matches_definition(k, up, down, padding, groups):
    rng = np.random.RandomState(k * 100 + up * 10 + down)
    x = rng.randn(2, 4, 7, 6)
    w = rng.randn(6, 4 // groups, k, k)
    for f in (np.array([1., 3., 3., 1.]) / 8, rng.randn(3, 4)):
        for flip_weight in (True, False):
            for flip_filter in (False, True):
                try:
                    ref = _reference(x, w, f, up, down, padding, groups, flip_weight, flip_filter)
                except ValueError:
                    continue  # the definition itself has no output here
                y = conv2d_resample.conv2d_resample(torch.tensor(x), torch.tensor(w), torch.tensor(f), up=up,
                                                    down=down, padding=padding, groups=groups,
                                                    flip_weight=flip_weight, flip_filter=flip_filter)
                np.testing.assert_allclose(y.numpy(), ref, rtol=1e-10, atol=1e-10)

def test_conv2d_resample_plain_is_f_conv2d():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    w = torch.randn(5, 3, 3, 3)
    torch.testing.assert_close(conv2d_resample.conv2d_resample(x, w, padding=1), F.conv2d(x, w, padding=1))
    torch.testing.assert_close(conv2d_resample.conv2d_resample(x, w, padding=1, flip_weight=False),
                               F.conv2d(x, w.flip([2, 3]), padding=1))

def test_conv2d_resample_stylegan_shapes():
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 4, 8, 8)
    w3 = torch.randn(6, 4, 3, 3)
    w1 = torch.randn(6, 4, 1, 1)
    assert conv2d_resample.conv2d_resample(x, w3, f, up=2, padding=1, flip_weight=False).shape == (2, 6, 16, 16)
    assert conv2d_resample.conv2d_resample(x, w3, f, down=2, padding=1).shape == (2, 6, 4, 4)
    assert conv2d_resample.conv2d_resample(x, w1, f, down=2).shape == (2, 6, 4, 4)
    assert conv2d_resample.conv2d_resample(x, w1, f, up=2).shape == (2, 6, 16, 16)

#----------------------------------------------------------------------------

@pytest.mark.parametrize('k, up, down, padding', [(3, 1, 1, 1), (3, 2, 1, 1), (3, 1, 2, 1), (1, 1, 2, 0), (1, 2, 1, 0),
                                                  (3, 2, 2, 0), (3, 1, 1, [0, 1, 2, 0])])
def test_conv2d_resample_gradcheck_and_gradgradcheck(k, up, down, padding):
    torch.manual_seed(0)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, k, k, dtype=torch.float64, requires_grad=True)
    f = upfirdn2d.setup_filter([1, 3, 3, 1]).double()
    fn = lambda x, w: conv2d_resample.conv2d_resample(x, w, f, up=up, down=down, padding=padding)
    assert torch.autograd.gradcheck(fn, (x, w))
    assert torch.autograd.gradgradcheck(fn, (x, w))

#----------------------------------------------------------------------------

@pytest.mark.parametrize('kwargs, match', [
    (dict(x=torch.zeros(4, 8, 8)), '4-D'),
    (dict(w=torch.zeros(4, 4, 3, 3, dtype=torch.float64)), 'dtype'),
    (dict(w=torch.zeros(4, 3, 3, 3)), 'channels'),
    (dict(up=0), 'up'),
    (dict(down=1.5), 'down'),
    (dict(groups=3), 'channels'),
    (dict(f=torch.zeros(2, 2, 2)), 'filter'),
])
def test_conv2d_resample_rejects_bad_arguments(kwargs, match):
    args = dict(x=torch.zeros(1, 4, 8, 8), w=torch.zeros(4, 4, 3, 3), f=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        conv2d_resample.conv2d_resample(**args)
