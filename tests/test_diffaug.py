"""DiffAugment (training/diffaug.py) against the published policies' formulas, checked with
independent references: constant and constructed images, a naive shifting loop, and
finite-difference gradient checks."""

import pytest
import torch

from training.diffaug import DiffAugment, diff_augment, parse_policy

#----------------------------------------------------------------------------

def _naive_shift(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[y, x] = img[y - dy, x - dx] with zeros outside, by an explicit loop. img: [C, H, W]."""
    out = torch.zeros_like(img)
    _c, h, w = img.shape
    for y in range(h):
        for x in range(w):
            if 0 <= y - dy < h and 0 <= x - dx < w:
                out[:, y, x] = img[:, y - dy, x - dx]
    return out

#----------------------------------------------------------------------------

def test_unknown_policy_name_is_rejected_with_its_name():
    with pytest.raises(ValueError, match='colour'):
        DiffAugment('colour,translation')
    with pytest.raises(ValueError, match='rotate'):
        diff_augment(torch.zeros(1, 3, 8, 8), 'color,rotate')

def test_policy_parsing_accepts_subsets_spaces_and_empty():
    assert parse_policy('color, cutout') == ['color', 'cutout']
    assert parse_policy('translation') == ['translation']
    assert parse_policy('') == []

def test_empty_policy_is_identity():
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(DiffAugment('')(x), x)

def test_bad_input_is_rejected_clearly():
    with pytest.raises(ValueError, match='uint8'):
        diff_augment(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 'color')
    with pytest.raises(ValueError, match=r'\[N, C, H, W\]'):
        diff_augment(torch.zeros(3, 8, 8), 'color')
    with pytest.raises(ValueError, match='1 or 3 channels'):
        diff_augment(torch.zeros(1, 4, 8, 8), 'color')

#----------------------------------------------------------------------------

@pytest.mark.parametrize('channels', [1, 3])
def test_color_on_constant_image_is_brightness_shift_in_range(channels):
    # On a constant image saturation and contrast see zero deviations, so only the
    # brightness shift U(-0.5, 0.5) remains, one value per sample.
    torch.manual_seed(0)
    x = torch.full([2000, channels, 4, 4], 0.1)
    y = diff_augment(x, 'color')
    shift = y - 0.1
    per_sample = shift.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample), atol=1e-6)
    s = per_sample[:, 0]
    assert s.min() >= -0.5 - 1e-6 and s.max() <= 0.5 + 1e-6
    assert s.min() < -0.45 and s.max() > 0.45 # the whole range is used
    assert abs(s.mean()) < 5 * (1 / 12) ** 0.5 / 2000 ** 0.5 # uniform mean 0, 5 sigma

def test_color_scales_channel_deviations_by_saturation_times_contrast():
    # A spatially constant coloured image: the channel deviations d_c from the pixel's
    # channel mean end up scaled by s * k with s ~ U(0, 2), k ~ U(0.5, 1.5); the mean moves
    # by the brightness shift b ~ U(-0.5, 0.5).
    torch.manual_seed(1)
    rgb = torch.tensor([0.2, -0.1, 0.4])
    x = rgb.reshape(1, 3, 1, 1).expand(3000, 3, 5, 5).clone()
    y = diff_augment(x, 'color')
    d_in = rgb - rgb.mean()
    mean_out = y.mean(dim=1, keepdim=True)
    ratio = ((y - mean_out) / d_in.reshape(1, 3, 1, 1)).flatten(1) # per channel and pixel
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-4)
    r = ratio[:, 0]
    assert r.min() >= -1e-6 and r.max() <= 3 + 1e-5
    assert r.max() > 2.5
    b = (mean_out - rgb.mean()).flatten(1)
    assert b.min() >= -0.5 - 1e-6 and b.max() <= 0.5 + 1e-6

@pytest.mark.parametrize('channels', [1, 3])
def test_color_scales_spatial_deviation_of_gray_image_by_contrast(channels):
    # A gray ramp: saturation has nothing to act on, contrast scales the deviation from
    # the image mean by k ~ U(0.5, 1.5).
    torch.manual_seed(2)
    ramp = torch.linspace(-0.8, 0.8, 16).reshape(1, 1, 4, 4).expand(3000, channels, 4, 4).clone()
    y = diff_augment(ramp, 'color')
    dev_in = ramp - ramp.mean(dim=[1, 2, 3], keepdim=True)
    dev_out = y - y.mean(dim=[1, 2, 3], keepdim=True)
    k = (dev_out / dev_in).flatten(1)
    assert torch.allclose(k, k[:, :1].expand_as(k), atol=1e-4)
    assert k.min() >= 0.5 - 1e-5 and k.max() <= 1.5 + 1e-5
    assert k.min() < 0.55 and k.max() > 1.45

#----------------------------------------------------------------------------

@pytest.mark.parametrize('channels', [1, 3])
def test_translation_is_integer_shift_with_zero_fill(channels):
    torch.manual_seed(3)
    x = torch.rand(64, channels, 16, 16) + 0.5 # strictly positive, so zeros show the padding
    y = diff_augment(x, 'translation')
    max_shift = 2 # 16 / 8
    seen = set()
    for i in range(x.shape[0]):
        matches = [(dy, dx) for dy in range(-max_shift, max_shift + 1) for dx in range(-max_shift, max_shift + 1)
                   if torch.equal(y[i], _naive_shift(x[i], dy, dx))]
        assert len(matches) == 1, f'sample {i} is not a shift of at most {max_shift} pixels'
        seen.add(matches[0])
    assert len(seen) > 15 # many of the 25 possible shifts occur

def test_translation_range_scales_with_size():
    torch.manual_seed(4)
    x = torch.ones(400, 1, 32, 32)
    y = diff_augment(x, 'translation')
    zero_rows = (y[:, 0] == 0).all(dim=2).sum(dim=1)
    zero_cols = (y[:, 0] == 0).all(dim=1).sum(dim=1)
    assert zero_rows.max() == 4 and zero_cols.max() == 4 # 32 / 8, both extremes reached
    assert (zero_rows == 0).any()

#----------------------------------------------------------------------------

@pytest.mark.parametrize('size', [16, 15])
def test_cutout_zeroes_a_clipped_half_size_square(size):
    torch.manual_seed(5)
    x = torch.rand(300, 3, size, size) + 0.5
    y = diff_augment(x, 'cutout')
    side = int(size * 0.5 + 0.5)
    full = 0
    for i in range(x.shape[0]):
        zero = (y[i] == 0).all(dim=0) # [H, W]
        assert torch.equal(y[i], x[i] * (~zero)), 'pixels outside the hole must be unchanged'
        rows = zero.any(dim=1).nonzero().flatten()
        cols = zero.any(dim=0).nonzero().flatten()
        assert len(rows) > 0, 'the square always overlaps the image'
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert zero[r0:r1, c0:c1].all() and zero.sum() == (r1 - r0) * (c1 - c0) # a rectangle
        assert r1 - r0 <= side and c1 - c0 <= side
        # A side shorter than the square's must be clipped by the border.
        if r1 - r0 < side:
            assert r0 == 0 or r1 == size
        if c1 - c0 < side:
            assert c0 == 0 or c1 == size
        full += int(r1 - r0 == side and c1 - c0 == side)
    assert full > 50 # unclipped squares are common

#----------------------------------------------------------------------------

def test_randomness_is_per_sample_and_seeded():
    x = torch.randn(8, 3, 16, 16)
    torch.manual_seed(6)
    a = diff_augment(x, 'color,translation,cutout')
    torch.manual_seed(6)
    b = diff_augment(x, 'color,translation,cutout')
    assert torch.equal(a, b)
    same = torch.randn(1, 3, 16, 16).expand(8, 3, 16, 16)
    c = diff_augment(same, 'color,translation,cutout')
    assert not torch.allclose(c[0], c[1])

@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('channels', [1, 3])
def test_shape_and_dtype_are_kept(dtype, channels):
    x = torch.rand(5, channels, 12, 12, dtype=dtype) * 2 - 1
    y = DiffAugment()(x)
    assert y.shape == x.shape and y.dtype == dtype

def test_twice_differentiable():
    def fn(x):
        torch.manual_seed(7) # the same random draws on every call
        return diff_augment(x, 'color,translation,cutout')
    torch.manual_seed(8)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))

#----------------------------------------------------------------------------
