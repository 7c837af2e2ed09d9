"""ADA AugmentPipe and AdaptiveAugment (training/augment.py), checked against independent
references: wavelet identities, constructed images with known transforms (ramps, markers,
squares), closed-form colour maps, scipy filtering, binomial bounds on the probabilities,
finite-difference gradients and the official buffer names."""

import json
import math
import os
import pickle

import numpy as np
import pytest
import scipy.ndimage
import torch

from training.augment import (SYM2_LOWPASS, SYM6_LOWPASS, AdaptiveAugment, AugmentPipe, augpipe_specs,
                              reflect_pad)

#----------------------------------------------------------------------------
# Helpers: constructed images and independent measurements.

def _coords(size: int):
    """Centred pixel coordinates (x right, y down) of a size x size image: (xx, yy) [size, size]."""
    c = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    yy, xx = torch.meshgrid(c, c, indexing='ij')
    return xx, yy

def _blob(size: int, x: float, y: float, sigma: float = 2.0, n: int = 1, channels: int = 3) -> torch.Tensor:
    """A smooth Gaussian marker of peak 1 at centred position (x, y) on a zero background."""
    xx, yy = _coords(size)
    img = torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    return img.expand(n, channels, size, size).clone()

def _ramp(size: int, n: int = 1, channels: int = 3) -> torch.Tensor:
    xx, yy = _coords(size)
    img = (0.6 * xx + 0.25 * yy) / size
    return img.expand(n, channels, size, size).clone()

def _centroid(img: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted centre (x, y) in centred pixel coordinates of each sample's channel 0: [N, 2]."""
    w = img[:, 0].clamp(min=0)
    xx, yy = _coords(img.shape[-1])
    total = w.sum(dim=(1, 2))
    return torch.stack([(w * xx).sum(dim=(1, 2)) / total, (w * yy).sum(dim=(1, 2)) / total], dim=1)

def _pipe(p: float = 1.0, **kwargs) -> AugmentPipe:
    pipe = AugmentPipe(**kwargs)
    pipe.p.fill_(p)
    return pipe

def _rot(theta: float) -> torch.Tensor:
    return torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])

#----------------------------------------------------------------------------
# Constructor, buffers, official compatibility.

def test_buffers_match_official_names_and_shapes(compat_dir):
    spec = json.loads((compat_dir / 'official_state_keys.json').read_text())['augment_pipe_bgc']
    pipe = AugmentPipe(**spec['kwargs'])
    ours = [[name, list(t.shape)] for name, t in pipe.named_buffers()]
    assert sorted(ours) == sorted([name, shape] for name, shape, _kind in spec['buffers'])
    assert list(pipe.named_parameters()) == []
    assert augpipe_specs['bgc'] == spec['kwargs']

def test_presets_are_unions_of_the_groups():
    blit, geom, color = augpipe_specs['blit'], augpipe_specs['geom'], augpipe_specs['color']
    assert blit == dict(xflip=1, rotate90=1, xint=1)
    assert geom == dict(scale=1, rotate=1, aniso=1, xfrac=1)
    assert color == dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
    assert augpipe_specs['bg'] == {**blit, **geom}
    assert augpipe_specs['bgcfnc'] == {**blit, **geom, **color, 'imgfilter': 1, 'noise': 1, 'cutout': 1}
    assert sorted(augpipe_specs) == sorted(['blit', 'geom', 'color', 'filter', 'noise', 'cutout', 'bg', 'bgc',
                                            'bgcf', 'bgcfn', 'bgcfnc'])
    for spec in augpipe_specs.values():
        AugmentPipe(**spec) # every preset constructs

def test_bad_constructor_values_are_named():
    with pytest.raises(ValueError, match='rotate_max'):
        AugmentPipe(rotate_max=-1)
    with pytest.raises(ValueError, match='xflip'):
        AugmentPipe(xflip='yes')
    with pytest.raises(ValueError, match='imgfilter_bands'):
        AugmentPipe(imgfilter=1, imgfilter_bands=[1, 1, 1])

def test_bad_images_are_rejected_clearly():
    pipe = _pipe(**augpipe_specs['bgc'])
    with pytest.raises(ValueError, match='uint8'):
        pipe(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r'\[N, C, H, W\]'):
        pipe(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match='1 \\(L\\) or 3 \\(RGB\\) channels; got 4'):
        pipe(torch.zeros(2, 4, 8, 8))

def test_pickle_round_trip_keeps_kwargs_and_p():
    pipe = _pipe(0.37, **augpipe_specs['bgcf'], rotate_max=0.5)
    clone = pickle.loads(pickle.dumps(pipe))
    assert clone.rotate_max == 0.5 and clone.imgfilter == 1 and float(clone.p) == pytest.approx(0.37)
    for (name, a), (_, b) in zip(pipe.named_buffers(), clone.named_buffers()):
        assert torch.equal(a, b), name

#----------------------------------------------------------------------------
# Filters: published wavelets and the octave filter bank.

@pytest.mark.parametrize('taps, moments', [(SYM6_LOWPASS, 6), (SYM2_LOWPASS, 2)])
def test_wavelets_are_orthonormal_with_vanishing_moments(taps, moments):
    h = np.asarray(taps)
    assert h.sum() == pytest.approx(math.sqrt(2), abs=1e-12)
    corr = np.correlate(h, h, 'full')[h.size - 1:]
    assert np.allclose(corr[0::2], np.eye(1, corr[0::2].size).ravel(), atol=1e-11) # orthogonal to even shifts
    k = np.arange(h.size)
    hi = h * (-1.0) ** k
    for m in range(moments): # the high-pass annihilates polynomials of degree < moments
        assert abs((hi * k ** m).sum()) < 1e-8 * max(1, (k ** m).sum())
    assert abs((hi * k ** moments).sum()) > 1e-3

def test_hz_geom_is_unit_gain_sym6():
    f = AugmentPipe().Hz_geom.double().numpy()
    assert f.shape == (12,) and f.sum() == pytest.approx(1, abs=1e-6)
    assert np.allclose(f * math.sqrt(2), SYM6_LOWPASS, atol=1e-7)

def test_filter_bank_is_a_symmetric_partition_of_octaves():
    bank = AugmentPipe().Hz_fbank.double().numpy()
    assert bank.shape == (4, 43)
    impulse = np.zeros(43)
    impulse[21] = 1
    assert np.allclose(bank.sum(axis=0), impulse, atol=1e-6) # bands add up to the identity
    assert np.allclose(bank, bank[:, ::-1], atol=1e-7) # zero phase
    assert bank[0].sum() == pytest.approx(1, abs=1e-6) and np.allclose(bank[1:].sum(axis=1), 0, atol=1e-6)
    # Each band dominates in its own octave: [0, pi/8], [pi/8, pi/4], [pi/4, pi/2], [pi/2, pi].
    omega = np.array([0.0, 3 * np.pi / 16, 3 * np.pi / 8, 7 * np.pi / 8])
    response = np.abs(np.exp(-1j * np.outer(omega, np.arange(43) - 21)) @ bank.T) # [omega, band]
    assert (response.argmax(axis=1) == np.arange(4)).all()
    assert (response.max(axis=1) > 0.7).all() # short symlet-2 bands overlap: mid bands peak near 0.71

def test_reflect_pad_matches_numpy_for_any_width():
    x = torch.arange(2 * 5 * 7, dtype=torch.float32).reshape(1, 2, 5, 7)
    for pads in [(1, 2, 3, 4), (6, 0, 0, 4), (15, 11, 9, 13)]:
        left, right, top, bottom = pads
        ref = np.pad(x.numpy(), [(0, 0), (0, 0), (top, bottom), (left, right)], mode='reflect')
        assert np.array_equal(reflect_pad(x, *pads).numpy(), ref)

#----------------------------------------------------------------------------
# p = 0 and bookkeeping.

@pytest.mark.parametrize('spec', ['bgcfnc', 'blit'])
def test_p0_is_exact_identity(spec):
    pipe = AugmentPipe(**augpipe_specs[spec])
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    assert pipe(x) is x

def test_same_seed_same_output_and_per_sample_randomness():
    pipe = _pipe(0.8, **augpipe_specs['bgcfnc'])
    x = _ramp(32, n=6) + _blob(32, 5, -3, n=6)
    torch.manual_seed(3)
    a = pipe(x)
    torch.manual_seed(3)
    b = pipe(x)
    assert torch.equal(a, b)
    assert not torch.allclose(a[0], a[1])

@pytest.mark.parametrize('channels', [1, 3])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('spec', ['bgc', 'bgcfnc'])
def test_shape_and_dtype_are_kept(spec, dtype, channels):
    torch.manual_seed(4)
    x = (torch.rand(3, channels, 32, 32, dtype=dtype) * 2 - 1)
    y = _pipe(**augpipe_specs[spec])(x)
    assert y.shape == x.shape and y.dtype == dtype and torch.isfinite(y).all()

def test_geometric_ops_keep_the_range_of_smooth_images():
    # Resampling only moves values around: smooth content (no ringing) stays within its range.
    torch.manual_seed(5)
    x = (_ramp(32, n=32) * 2 + _blob(32, 4, -6, sigma=3, n=32)).clamp(-1, 1)
    y = _pipe(**augpipe_specs['bg'])(x)
    assert y.min() >= -1.03 and y.max() <= 1.03

#----------------------------------------------------------------------------
# Each geometric op does what it says.

def test_warp_with_identity_map_reproduces_the_image():
    torch.manual_seed(6)
    x = torch.rand(3, 3, 32, 32) * 2 - 1 # even white noise: up and adjoint down are inverse
    pipe = _pipe(xflip=1)
    y = pipe._warp(x, torch.eye(3).repeat(3, 1, 1))
    assert torch.allclose(y, x, atol=1e-4)

def test_xflip_mirrors_a_ramp():
    torch.manual_seed(7)
    x = _ramp(32, n=200)
    pipe = _pipe(xflip=1)
    params = pipe.sample_params(x.shape, x.device)
    y = pipe.apply(x, params)
    flipped = params['xflip'].bool()
    assert 60 < flipped.sum() < 140 # half of them, roughly
    # The symlet's residual phase shows only at the mirrored border, a few 1e-3.
    assert torch.allclose(y[flipped][..., 3:-3, 3:-3], x[flipped].flip(3)[..., 3:-3, 3:-3], atol=5e-4)
    assert torch.allclose(y[flipped], x[flipped].flip(3), atol=1e-2)
    assert torch.allclose(y[~flipped], x[~flipped], atol=1e-4)

def test_rotate90_turns_an_off_centre_marker():
    x = _blob(32, 7, -4, sigma=3, n=4)
    pipe = _pipe(rotate90=1)
    y = pipe.apply(x, {'rotate90': torch.arange(4, dtype=torch.float32)})
    for k in range(4):
        # +90 degrees in x-right/y-down coordinates is clockwise on screen: torch.rot90 k = -1.
        # The symlet's non-linear phase, doubled by the turn, leaves errors below 1% of the peak.
        assert torch.allclose(y[k], torch.rot90(x[k], -k, dims=(1, 2)), atol=1e-2), k
        assert torch.allclose(_centroid(y[k:k + 1])[0], _rot(k * math.pi / 2) @ _centroid(x[:1])[0], atol=0.01)

def test_integer_translation_shifts_a_square_exactly():
    # Pure translations need no re-interpolation: even a sharp square moves exactly.
    x = torch.full([3, 3, 32, 32], -1.0)
    x[:, :, 10:18, 12:22] = 1
    pipe = _pipe(xint=1)
    shifts = torch.tensor([[3.0, -2.0], [-4.0, 4.0], [0.0, 1.0]])
    y = pipe.apply(x, {'xint': shifts})
    for i, (dx, dy) in enumerate(shifts.int().tolist()):
        assert torch.allclose(y[i], torch.roll(x[i], (dy, dx), dims=(1, 2)), atol=1e-4)

def test_sampled_integer_translation_is_whole_pixels_within_range():
    torch.manual_seed(8)
    pipe = _pipe(xint=1, xint_max=0.25)
    shifts = pipe.sample_params([2000, 3, 32, 32], torch.device('cpu'))['xint']
    assert torch.equal(shifts, shifts.round())
    assert shifts.abs().max() == 8 and shifts.abs().max() <= 32 * 0.25

def test_rotation_moves_a_marker_by_the_sampled_angle():
    torch.manual_seed(9)
    pipe = _pipe(rotate=1, rotate_max=0.25)
    x = _blob(48, 9, -5, n=16)
    params = pipe.sample_params(x.shape, x.device)
    y = pipe.apply(x, params)
    angles = params['rotate_pre'] + params['rotate_post']
    assert angles.abs().max() <= 2 * math.pi * 0.25 and (angles != 0).all()
    expected = torch.stack([_rot(float(a)) @ torch.tensor([9.0, -5.0]) for a in angles])
    assert torch.allclose(_centroid(y), expected, atol=0.1)

@pytest.mark.parametrize('op, value, expected', [
    ('scale', 1.4, lambda p: p * 1.4),
    ('scale', 0.7, lambda p: p * 0.7),
    ('aniso', 1.3, lambda p: torch.stack([p[0] * 1.3, p[1] / 1.3])),
    ('xfrac', (2.5, -1.25), lambda p: p + torch.tensor([2.5, -1.25])),
])
def test_scale_aniso_and_fractional_translation_move_a_marker(op, value, expected):
    pos = torch.tensor([6.0, -4.0])
    x = _blob(48, *pos.tolist(), n=1)
    pipe = _pipe(**{op: 1})
    y = pipe.apply(x, {op: torch.tensor([value])})
    assert torch.allclose(_centroid(y)[0], expected(pos), atol=0.05)

#----------------------------------------------------------------------------
# Colour ops: closed forms in RGB space.

def _color_image(n: int = 5) -> torch.Tensor:
    torch.manual_seed(10)
    return torch.rand(n, 3, 6, 6) * 1.6 - 0.8

def test_brightness_adds_and_contrast_scales():
    x = _color_image()
    b = torch.tensor([0.3, -0.2, 0.0, 0.1, -0.45])
    c = torch.tensor([1.5, 0.5, 1.0, 2.0, 0.8])
    y = _pipe(brightness=1).apply(x, {'brightness': b})
    assert torch.allclose(y, x + b.reshape(-1, 1, 1, 1), atol=1e-6)
    y = _pipe(contrast=1).apply(x, {'contrast': c})
    assert torch.allclose(y, x * c.reshape(-1, 1, 1, 1), atol=1e-6)
    # Brightness first, then contrast.
    y = _pipe(brightness=1, contrast=1).apply(x, {'brightness': b, 'contrast': c})
    assert torch.allclose(y, (x + b.reshape(-1, 1, 1, 1)) * c.reshape(-1, 1, 1, 1), atol=1e-6)

def test_lumaflip_negates_luma_and_keeps_chroma():
    x = _color_image()
    y = _pipe(lumaflip=1).apply(x, {'lumaflip': torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])})
    luma = x.mean(dim=1, keepdim=True)
    flipped = x - 2 * luma # luma -> -luma, chroma (x - luma) kept
    assert torch.allclose(y[[0, 2, 3]], flipped[[0, 2, 3]], atol=1e-6)
    assert torch.allclose(y[[1, 4]], x[[1, 4]], atol=1e-6)
    gray = torch.linspace(-1, 1, 16).reshape(1, 1, 4, 4).expand(1, 3, 4, 4)
    assert torch.allclose(_pipe(lumaflip=1).apply(gray, {'lumaflip': torch.ones(1)}), -gray, atol=1e-6)

def test_hue_rotates_chroma_about_the_gray_axis_and_keeps_gray():
    x = _color_image()
    theta = torch.tensor([0.5, -1.0, 2.0, math.pi, 0.0])
    y = _pipe(hue=1).apply(x, {'hue': theta})
    luma_in, luma_out = x.mean(dim=1, keepdim=True), y.mean(dim=1, keepdim=True)
    assert torch.allclose(luma_out, luma_in, atol=1e-6)
    c_in, c_out = x - luma_in, y - luma_in
    norm2 = c_in.square().sum(dim=1)
    assert torch.allclose(c_out.square().sum(dim=1), norm2, atol=1e-5)
    v = torch.full([3], 1 / math.sqrt(3))
    cos = (c_in * c_out).sum(dim=1) / norm2
    sin = (torch.cross(c_in, c_out, dim=1) * v.reshape(1, 3, 1, 1)).sum(dim=1) / norm2
    assert torch.allclose(cos, torch.cos(theta).reshape(-1, 1, 1).expand_as(cos), atol=1e-4)
    assert torch.allclose(sin, torch.sin(theta).reshape(-1, 1, 1).expand_as(sin), atol=1e-4)
    gray = x.mean(dim=1, keepdim=True).expand_as(x)
    assert torch.allclose(_pipe(hue=1).apply(gray, {'hue': theta}), gray, atol=1e-6)

def test_saturation_scales_chroma_and_keeps_gray():
    x = _color_image()
    s = torch.tensor([0.0, 0.5, 1.0, 2.0, 3.0])
    y = _pipe(saturation=1).apply(x, {'saturation': s})
    luma = x.mean(dim=1, keepdim=True)
    assert torch.allclose(y, luma + (x - luma) * s.reshape(-1, 1, 1, 1), atol=1e-6)
    gray = luma.expand_as(x)
    assert torch.allclose(_pipe(saturation=1).apply(gray, {'saturation': s}), gray, atol=1e-6)

def test_gray_images_get_the_rgb_result_of_their_gray_replica():
    # One channel behaves like (l, l, l) through brightness, contrast and luma flip.
    torch.manual_seed(11)
    pipe = _pipe(**augpipe_specs['color'])
    gray = torch.rand(50, 1, 4, 4) * 2 - 1
    params = pipe.sample_params(gray.shape, gray.device)
    assert 'hue' not in params and 'saturation' not in params
    y1 = pipe.apply(gray, params)
    y3 = pipe.apply(gray.expand(50, 3, 4, 4), params)
    assert torch.allclose(y1, y3[:, :1], atol=1e-6) and torch.allclose(y3[:, 1:], y3[:, :1].expand(50, 2, 4, 4), atol=1e-6)
    # luma flip on one channel inverts the image about 0.
    flipped = _pipe(lumaflip=1).apply(gray, {'lumaflip': torch.ones(50)})
    assert torch.allclose(flipped, -gray, atol=1e-6)

def test_colour_strengths_follow_their_distributions():
    torch.manual_seed(12)
    n = 20000
    pipe = _pipe(**augpipe_specs['color'], brightness_std=0.3, contrast_std=0.7, hue_max=0.5, saturation_std=0.4)
    params = pipe.sample_params([n, 3, 4, 4], torch.device('cpu'))
    # Sample standard deviations within 5 sigma (std of a sample std ~ std / sqrt(2n)).
    for key, transform, std in [('brightness', lambda v: v, 0.3), ('contrast', torch.log2, 0.7),
                                ('saturation', torch.log2, 0.4)]:
        assert abs(transform(params[key]).std().item() - std) < 5 * std / math.sqrt(2 * n), key
    assert params['hue'].abs().max() <= 0.5 * math.pi and params['hue'].abs().max() > 0.49 * math.pi

#----------------------------------------------------------------------------
# Image-space filtering, noise, cutout.

def test_filter_matches_scipy_with_power_normalised_band_gains():
    torch.manual_seed(13)
    pipe = _pipe(imgfilter=1)
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64) * 2 - 1
    amplitudes = torch.tensor([[1.0, 2.0, 0.5, 1.0], [0.3, 1.0, 1.0, 3.0]], dtype=torch.float64)
    y = pipe.apply(x, {'imgfilter': amplitudes})
    bank = pipe.Hz_fbank.double().numpy()
    expected_power = np.array([10, 1, 1, 1]) / 13
    for i in range(2):
        # Reference: apply the bands' amplitudes one at a time, renormalising the expected
        # power after each, then filter separably with mirror borders.
        g = np.ones(4)
        for band in range(4):
            t = np.ones(4)
            t[band] = amplitudes[i, band].item()
            g *= t / np.sqrt((expected_power * t ** 2).sum())
        taps = g @ bank
        ref = scipy.ndimage.convolve1d(x[i].numpy(), taps, axis=2, mode='mirror')
        ref = scipy.ndimage.convolve1d(ref, taps, axis=1, mode='mirror')
        assert np.allclose(y[i].numpy(), ref, atol=1e-6)

def test_filter_with_unit_gains_is_identity_and_works_on_small_images():
    x = torch.rand(2, 1, 8, 8) # smaller than the 21-tap padding: mirror padding repeats
    y = _pipe(imgfilter=1).apply(x, {'imgfilter': torch.ones(2, 4)})
    assert torch.allclose(y, x, atol=1e-5)

def test_noise_has_the_sampled_std():
    torch.manual_seed(14)
    x = torch.zeros(3, 3, 64, 64)
    sigma = torch.tensor([0.0, 0.1, 0.3])
    y = _pipe(noise=1).apply(x, {'noise': sigma})
    assert torch.equal(y[0], x[0])
    for i in (1, 2):
        std = y[i].std().item()
        assert abs(std - sigma[i].item()) < 5 * sigma[i].item() / math.sqrt(2 * y[i].numel())

def test_cutout_zeroes_the_sampled_square():
    x = torch.rand(3, 3, 20, 20) + 0.5
    size = torch.tensor([0.5, 0.0, 0.5])
    centre = torch.tensor([[0.5, 0.5], [0.3, 0.3], [0.05, 0.9]])
    y = _pipe(cutout=1).apply(x, {'cutout_size': size, 'cutout_centre': centre})
    for i in range(3):
        mask = torch.ones(20, 20)
        for r in range(20):
            for c in range(20):
                if abs((c + 0.5) / 20 - centre[i, 0]) < size[i] / 2 and abs((r + 0.5) / 20 - centre[i, 1]) < size[i] / 2:
                    mask[r, c] = 0
        assert torch.equal(y[i], x[i] * mask)
    assert (y[0] == 0).all(dim=0).sum() == 100 # a 10 x 10 hole in the middle

#----------------------------------------------------------------------------
# Probabilities: the fraction of affected samples is multiplier * p (times the chance that
# an applied op changes nothing, e.g. a flip drawn as "no flip").

def _binomial_ok(count: int, n: int, prob: float) -> bool:
    return abs(count - n * prob) <= 5 * math.sqrt(n * prob * (1 - prob)) + 1

@pytest.mark.parametrize('multiplier, p', [(1, 0.3), (0.5, 0.6)])
def test_fraction_of_augmented_samples_is_multiplier_times_p(multiplier, p):
    torch.manual_seed(15)
    n = 4000
    kwargs = {name: multiplier for name in augpipe_specs['bgcfnc']}
    pipe = _pipe(p, **kwargs, xint_max=0.125, imgfilter_bands=[1, 1, 0.5, 0])
    params = pipe.sample_params([n, 3, 32, 32], torch.device('cpu'))
    q = multiplier * p
    changed = {
        'xflip': (params['xflip'] != 0, q / 2),
        'rotate90': (params['rotate90'] != 0, q * 3 / 4),
        # U(-4, 4) pixels rounds to 0 on both axes with probability (1/8)^2.
        'xint': ((params['xint'] != 0).any(dim=1), q * (1 - 1 / 64)),
        'rotate': ((params['rotate_pre'] != 0) | (params['rotate_post'] != 0), q),
        'xfrac': ((params['xfrac'] != 0).any(dim=1), q),
        'noise': (params['noise'] != 0, q),
        'cutout': (params['cutout_size'] != 0, q),
        'lumaflip': (params['lumaflip'] != 0, q / 2),
        'band0': (params['imgfilter'][:, 0] != 1, q),
        'band2': (params['imgfilter'][:, 2] != 1, q * 0.5),
        'band3': (params['imgfilter'][:, 3] != 1, 0.0),
    }
    for key in ['scale', 'aniso', 'contrast', 'saturation']:
        changed[key] = (params[key] != 1, q)
    for key in ['brightness', 'hue']:
        changed[key] = (params[key] != 0, q)
    for key, (mask, prob) in changed.items():
        assert _binomial_ok(int(mask.sum()), n, prob), f'{key}: {int(mask.sum())} of {n}, expected ~{n * prob:.0f}'

def test_probability_saturates_at_one():
    torch.manual_seed(16)
    pipe = _pipe(0.7, brightness=2, rotate=2)
    params = pipe.sample_params([500, 3, 8, 8], torch.device('cpu'))
    assert (params['brightness'] != 0).all()
    assert ((params['rotate_pre'] != 0) & (params['rotate_post'] != 0)).all()

def test_forward_changes_about_the_expected_fraction_of_images():
    # End to end: brightness alone on constant images changes a sample iff it is selected.
    torch.manual_seed(17)
    x = torch.zeros(3000, 3, 2, 2)
    y = _pipe(0.25, brightness=1)(x)
    changed = (y != 0).flatten(1).any(dim=1)
    assert _binomial_ok(int(changed.sum()), 3000, 0.25)

#----------------------------------------------------------------------------
# Gradients: first and second order, in float64, with the random parameters fixed.

@pytest.mark.parametrize('spec, shape', [('bg', [1, 1, 8, 8]), ('color', [2, 3, 4, 4]), ('bgcfnc', [1, 3, 8, 8])])
def test_twice_differentiable(spec, shape):
    pipe = _pipe(**augpipe_specs[spec])
    torch.manual_seed(18)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    params = pipe.sample_params(x.shape, x.device)
    def fn(v):
        torch.manual_seed(19) # the same noise field on every call
        return pipe.apply(v, params)
    assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)

#----------------------------------------------------------------------------
# AdaptiveAugment.

def test_adaptive_p_moves_every_interval_by_the_formula():
    pipe = _pipe(0.5, **augpipe_specs['bgc'])
    ada = AdaptiveAugment(target=0.6, interval=4, speed_kimg=500)
    step = 64 * 4 / (500 * 1000)
    for i in range(3):
        ada.observe(torch.tensor([[1.0], [2.0], [-1.0], [3.0]])) # mean sign 0.5 < 0.6
        assert ada.update(pipe, batch_size=64) is None
        assert float(pipe.p) == pytest.approx(0.5)
    ada.observe(torch.tensor([[1.0], [2.0], [-1.0], [3.0]]))
    assert ada.update(pipe, batch_size=64) == pytest.approx(0.5 - step)
    assert float(pipe.p) == pytest.approx(0.5 - step) and ada.rt == pytest.approx(0.5)
    for _ in range(4):
        ada.observe(torch.ones(8, 1)) # r_t = 1 > 0.6
        ada.update(pipe, batch_size=64)
    assert float(pipe.p) == pytest.approx(0.5)

def test_adaptive_p_is_clamped_to_unit_interval():
    pipe = _pipe(0.999, xflip=1)
    ada = AdaptiveAugment(interval=1, speed_kimg=1)
    ada.observe(torch.ones(4))
    assert ada.update(pipe, batch_size=32) == 1.0
    pipe.p.fill_(0.001)
    ada.observe(-torch.ones(4))
    assert ada.update(pipe, batch_size=32) == 0.0

def test_adaptive_p_needs_observations():
    pipe = _pipe(0.3, xflip=1)
    ada = AdaptiveAugment(interval=2)
    assert ada.update(pipe, 16) is None and ada.update(pipe, 16) is None
    assert float(pipe.p) == pytest.approx(0.3) and ada.rt is None

def test_adaptive_state_dict_resumes_counters():
    pipe = _pipe(0.2, xflip=1)
    ada = AdaptiveAugment(interval=3, speed_kimg=10)
    for _ in range(2):
        ada.observe(torch.tensor([1.0, 1.0, -1.0]))
        ada.update(pipe, 8)
    resumed = AdaptiveAugment(interval=3, speed_kimg=10)
    resumed.load_state_dict(json.loads(json.dumps(ada.state_dict()))) # plain JSON-able values
    resumed.observe(torch.tensor([1.0, 1.0, 1.0]))
    assert resumed.update(pipe, 8) == pytest.approx(0.2 - 8 * 3 / 10000) # r_t = 5/9 < 0.6
    assert resumed.rt == pytest.approx(5 / 9)

def test_adaptive_rejects_bad_settings():
    with pytest.raises(ValueError, match='interval'):
        AdaptiveAugment(interval=0)
    with pytest.raises(ValueError, match='speed_kimg'):
        AdaptiveAugment(speed_kimg=0)
    with pytest.raises(ValueError, match='target'):
        AdaptiveAugment(target=2)

def test_adaptive_p_pools_signs_across_ranks_before_deciding(monkeypatch):
    # Simulate a second rank whose signs are all -1: the pooled r_t decides, not the local one.
    other_rank = torch.tensor([-8.0, 8.0], dtype=torch.float64) # [sum of signs, count]
    def all_reduce(tensor, *args, **kwargs):
        tensor += other_rank
    monkeypatch.setattr(torch.distributed, 'is_initialized', lambda: True)
    monkeypatch.setattr(torch.distributed, 'all_reduce', all_reduce)
    pipe = _pipe(0.5, xflip=1)
    ada = AdaptiveAugment(target=0.6, interval=2, speed_kimg=1)
    for _ in range(2):
        ada.observe(torch.ones(4)) # locally r = 1 > 0.6 would raise p
        ada.update(pipe, batch_size=10)
    assert ada.rt == pytest.approx(0.0) and float(pipe.p) == pytest.approx(0.5 - 10 * 2 / 1000)

def _ranks_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.distributed.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world_size)
    try:
        pipe = _pipe(0.5, xflip=1)
        ada = AdaptiveAugment(target=0.6, interval=2, speed_kimg=1)
        # Rank 0 sees r = 1, rank 1 sees r = 0: pooled r_t = 0.5 < 0.6, so both lower p.
        for _ in range(2):
            ada.observe(torch.ones(4) if rank == 0 else torch.tensor([1.0, -1.0, 1.0, -1.0]))
            ada.update(pipe, batch_size=10)
        torch.save({'p': float(pipe.p), 'rt': ada.rt}, os.path.join(out_dir, f'{rank}.pt'))
    finally:
        torch.distributed.destroy_process_group()

@pytest.mark.slow # two real gloo processes: ~20 s of start-up on a loaded machine
def test_adaptive_p_agrees_across_real_ranks(tmp_path):
    torch.multiprocessing.spawn(_ranks_worker, args=(2, str(tmp_path / 'init'), str(tmp_path)), nprocs=2)
    results = [torch.load(tmp_path / f'{rank}.pt') for rank in range(2)]
    for r in results:
        assert r['rt'] == pytest.approx(0.5) and r['p'] == pytest.approx(0.5 - 10 * 2 / 1000)

#----------------------------------------------------------------------------

#----------------------------------------------------------------------------
# In use: the R1 penalty differentiates D(augment(x)) twice through the pipe.

def test_r1_penalty_through_the_pipe_reaches_d_weights():
    from torch_utils.ops import conv2d_gradfix
    from training.networks import Discriminator
    torch.manual_seed(20)
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=128, channel_max=16)
    pipe = _pipe(**augpipe_specs['bgc'])
    real = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_(True)
    logits = D(pipe(real), torch.zeros(2, 0))
    with conv2d_gradfix.no_weight_gradients():
        grad, = torch.autograd.grad(logits.sum(), real, create_graph=True)
    penalty = grad.square().sum()
    penalty.backward()
    weight_grads = [p.grad for p in D.parameters() if p.grad is not None]
    assert len(weight_grads) > 0 and all(torch.isfinite(g).all() for g in weight_grads)
    assert sum(float(g.abs().sum()) for g in weight_grads) > 0
