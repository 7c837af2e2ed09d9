"""ADA: the adaptive discriminator augmentation pipeline and its adaptive-p heuristic.

Implements the augmentations of "Training Generative Adversarial Networks with Limited Data"
(Karras, Aittala, Hellsten, Laine, Lehtinen, Aila; NeurIPS 2020), appendix B, as specified
in DESIGN §6, behind the official StyleGAN2-ADA interface (`AugmentPipe` constructor names,
buffers `p`, `Hz_geom`, `Hz_fbank`, presets `augpipe_specs`), so official snapshots' pipes
load by name. Written from the paper's description; no code of the official release.

Stages, in order, each op applied to a sample with probability `multiplier * p`:
  1. blit + geometric: xflip, rotate90, integer translation, isotropic scale, rotation,
     anisotropic scale, rotation, fractional translation, composed into one affine map and
     applied once: reflect padding, 2x upsampling with the symlet-6 low-pass, bilinear
     sampling, 2x downsampling with the same filter (the adjoint, so the identity map
     reproduces the image). The map is conjugated with the filter's delay so that flips
     and rotations do not shift the image by a fraction of a pixel.
  2. colour: brightness, contrast, luma flip, hue rotation, saturation as one 4x4 matrix
     acting on homogeneous RGB. Hue and saturation need 3 channels; on 1 channel the
     image is treated as (l, l, l), so luma flip negates it, as in the official pipe.
  3. image-space filtering: random gains on 4 octave bands (symlet-2 filter bank) with the
     expected power of a 1/f spectrum kept.
  4. additive Gaussian noise, 5. cutout.

Coordinates: the geometric ops work in pixel units, x to the right and y down, origin at
the image centre. An op "rotates by theta" when content at (x, y) moves to
R(theta) (x, y) (clockwise on screen for theta > 0).

Images are float [N, C, H, W] in [-1, 1] with C in {1, 3}.
"""

import math
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from torch_utils import persistence
from torch_utils.ops import conv2d_gradfix, grid_sample_gradfix, upfirdn2d

#----------------------------------------------------------------------------
# Published wavelet coefficients (decomposition low-pass filters, as tabulated e.g. by
# PyWavelets). tests/test_augment.py checks their orthonormality and vanishing moments.

SYM2_LOWPASS = [-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025]
SYM6_LOWPASS = [0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
                0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
                -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148]

# Relative power of the 4 filter bands (lowest first) in a natural image's 1/f spectrum;
# the image-space filter keeps the sum of band power times these weights constant.
_EXPECTED_BAND_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)

#----------------------------------------------------------------------------
# Presets: the official multipliers (blit, geom, color, filter, noise, cutout and unions).

_BLIT   = dict(xflip=1, rotate90=1, xint=1)
_GEOM   = dict(scale=1, rotate=1, aniso=1, xfrac=1)
_COLOR  = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
_FILTER = dict(imgfilter=1)
_NOISE  = dict(noise=1)
_CUTOUT = dict(cutout=1)

augpipe_specs: Dict[str, Dict[str, float]] = {
    'blit':   dict(_BLIT),
    'geom':   dict(_GEOM),
    'color':  dict(_COLOR),
    'filter': dict(_FILTER),
    'noise':  dict(_NOISE),
    'cutout': dict(_CUTOUT),
    'bg':     dict(**_BLIT, **_GEOM),
    'bgc':    dict(**_BLIT, **_GEOM, **_COLOR),
    'bgcf':   dict(**_BLIT, **_GEOM, **_COLOR, **_FILTER),
    'bgcfn':  dict(**_BLIT, **_GEOM, **_COLOR, **_FILTER, **_NOISE),
    'bgcfnc': dict(**_BLIT, **_GEOM, **_COLOR, **_FILTER, **_NOISE, **_CUTOUT),
}

#----------------------------------------------------------------------------

def octave_filter_bank(lowpass: Sequence[float], num_bands: int = 4) -> np.ndarray:
    """Zero-phase filters splitting [0, pi] into octaves: float64 [num_bands, taps], lowest first.

    From an orthonormal wavelet low-pass h: lo = autocorrelation(h) / 2 and hi = lo with
    alternating signs (its quadrature mirror), so lo + hi is the unit impulse. Each round
    moves every existing band an octave down (dilate by 2, then keep its low half with lo)
    and adds a new top band hi, so the bands always sum to the unit impulse.
    """
    h = np.asarray(lowpass, dtype=np.float64)
    lo = np.convolve(h, h[::-1]) / 2
    hi = lo * (-1.0) ** (np.arange(lo.size) - lo.size // 2)
    bank = np.ones([1, 1])
    for _ in range(num_bands - 1):
        dilated = np.zeros([bank.shape[0], bank.shape[1] * 2 - 1])
        dilated[:, ::2] = bank
        bank = np.stack([np.convolve(row, lo) for row in dilated])
        top = np.zeros([1, bank.shape[1]])
        start = (bank.shape[1] - hi.size) // 2
        top[0, start:start + hi.size] = hi
        bank = np.concatenate([bank, top])
    return bank

#----------------------------------------------------------------------------
# Batched homogeneous matrices, one per sample. Arguments are [N] float tensors.

def _matrix(rows: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """Stack a nested list of [N] tensors into [N, R, C]."""
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)

def _translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(tx), torch.zeros_like(tx)
    return _matrix([[one, zero, tx], [zero, one, ty], [zero, zero, one]])

def _scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(sx), torch.zeros_like(sx)
    return _matrix([[sx, zero, zero], [zero, sy, zero], [zero, zero, one]])

def _rotate2d(theta: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    one, zero = torch.ones_like(theta), torch.zeros_like(theta)
    return _matrix([[c, -s, zero], [s, c, zero], [zero, zero, one]])

def _embed3(m: torch.Tensor) -> torch.Tensor:
    """[N, 3, 3] linear RGB map -> [N, 4, 4] homogeneous one."""
    out = torch.eye(4, dtype=m.dtype, device=m.device).repeat(m.shape[0], 1, 1)
    out[:, :3, :3] = m
    return out

#----------------------------------------------------------------------------

def _reflect_index(size: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Indices of a mirror padding (edge pixel not repeated) of any width, even wider than size."""
    idx = torch.arange(-before, size + after, device=device)
    if size == 1:
        return torch.zeros_like(idx)
    period = 2 * (size - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= size, period - idx, idx)

def reflect_pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """Mirror-pad x [N, C, H, W] (torch's 'reflect' mode, but any width): [N, C, H+top+bottom, W+left+right]."""
    _n, _c, h, w = x.shape
    x = x.index_select(3, _reflect_index(w, left, right, x.device))
    return x.index_select(2, _reflect_index(h, top, bottom, x.device))

#----------------------------------------------------------------------------

def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        got = f'{images.dtype} tensor of shape {list(images.shape)}' if isinstance(images, torch.Tensor) \
            else type(images).__name__
        raise ValueError(f'AugmentPipe expects float images [N, C, H, W] in [-1, 1]; got {got}. '
                         f'Convert uint8 images with x.to(torch.float32) / 127.5 - 1.')
    if images.shape[1] not in (1, 3):
        raise ValueError(f'AugmentPipe expects 1 (L) or 3 (RGB) channels; got {images.shape[1]} '
                         f'(shape {list(images.shape)})')

def _check_nonnegative(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f'AugmentPipe: {name} must be a finite number >= 0; got {value!r}')
    return float(value)

#----------------------------------------------------------------------------

@persistence.persistent_class
class AugmentPipe(torch.nn.Module):
    """ADA augmentation pipeline; `p` (a buffer) scales every op's probability.

    Multipliers (xflip ... cutout) are the factors of the per-sample probability
    `multiplier * p`; the *_std / *_max / *_size values are the strengths. `forward` is the
    identity, returning its input object, while p == 0.
    """

    def __init__(self,
        xflip           = 0,            # Probability multiplier for x-flip.
        rotate90        = 0,            # Probability multiplier for rotations by multiples of 90 degrees.
        xint            = 0,            # Probability multiplier for integer translation.
        xint_max        = 0.125,        # Range of integer translation, fraction of the image size.
        scale           = 0,            # Probability multiplier for isotropic scaling.
        rotate          = 0,            # Probability multiplier for arbitrary rotation.
        aniso           = 0,            # Probability multiplier for anisotropic scaling.
        xfrac           = 0,            # Probability multiplier for fractional translation.
        scale_std       = 0.2,          # Log2 standard deviation of isotropic scaling.
        rotate_max      = 1,            # Range of arbitrary rotation, 1 = full circle.
        aniso_std       = 0.2,          # Log2 standard deviation of anisotropic scaling.
        xfrac_std       = 0.125,        # Standard deviation of fractional translation, fraction of the size.
        brightness      = 0,            # Probability multiplier for brightness.
        contrast        = 0,            # Probability multiplier for contrast.
        lumaflip        = 0,            # Probability multiplier for luma flip.
        hue             = 0,            # Probability multiplier for hue rotation.
        saturation      = 0,            # Probability multiplier for saturation.
        brightness_std  = 0.2,          # Standard deviation of the brightness offset.
        contrast_std    = 0.5,          # Log2 standard deviation of contrast.
        hue_max         = 1,            # Range of hue rotation, 1 = full circle.
        saturation_std  = 1,            # Log2 standard deviation of saturation.
        imgfilter       = 0,            # Probability multiplier for image-space filtering.
        imgfilter_bands = [1, 1, 1, 1], # Probability multipliers of the 4 frequency bands, lowest first.
        imgfilter_std   = 1,            # Log2 standard deviation of the band amplitudes.
        noise           = 0,            # Probability multiplier for additive Gaussian noise.
        cutout          = 0,            # Probability multiplier for cutout.
        noise_std       = 0.1,          # Standard deviation of the noise (its std is |N(0, noise_std)|).
        cutout_size     = 0.5,          # Side of the cutout square, fraction of the image size.
    ):
        super().__init__()
        for name, value in dict(locals()).items():
            if name not in ('self', '__class__', 'imgfilter_bands'):
                setattr(self, name, _check_nonnegative(name, value))
        bands = list(imgfilter_bands) if isinstance(imgfilter_bands, (list, tuple)) else None
        if bands is None or len(bands) != len(_EXPECTED_BAND_POWER):
            raise ValueError(f'AugmentPipe: imgfilter_bands must be a list of {len(_EXPECTED_BAND_POWER)} '
                             f'multipliers (lowest band first); got {imgfilter_bands!r}')
        self.imgfilter_bands = [_check_nonnegative('imgfilter_bands[]', b) for b in bands]

        self.register_buffer('p', torch.zeros([]))
        # Stored with unit DC gain; `_warp` renormalises anyway, so a loaded official buffer
        # behaves the same whichever normalisation it carries.
        self.register_buffer('Hz_geom', torch.tensor(SYM6_LOWPASS, dtype=torch.float64).div(math.sqrt(2)).float())
        self.register_buffer('Hz_fbank', torch.as_tensor(octave_filter_bank(SYM2_LOWPASS), dtype=torch.float32))

    #------------------------------------------------------------------------

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: float [N, C, H, W] in [-1, 1], C in {1, 3} -> augmented float [N, C, H, W]."""
        _check_images(images)
        if float(self.p) <= 0:
            return images
        return self.apply(images, self.sample_params(images.shape, images.device))

    #------------------------------------------------------------------------

    def sample_params(self, shape: Sequence[int], device: torch.device) -> Dict[str, torch.Tensor]:
        """Draw every enabled op's per-sample parameters for images of `shape` [N, C, H, W].

        Returns float32 tensors holding the neutral value for samples the op skips:
          xflip [N] in {0, 1};  rotate90 [N] quarter turns in {0..3};  xint [N, 2] (x, y)
          whole-pixel shift;  scale [N] factor;  rotate_pre, rotate_post [N] radians;
          aniso [N] factor (x scaled by it, y by its inverse);  xfrac [N, 2] pixel shift;
          brightness [N] offset;  contrast [N] factor;  lumaflip [N] in {0, 1};  hue [N]
          radians;  saturation [N] factor;  imgfilter [N, 4] band amplitudes (before the
          power normalisation);  noise [N] std;  cutout_size [N] side as a fraction of
          the size (0 = none) with cutout_centre [N, 2] (x, y) in [0, 1].
        Keys of disabled ops (multiplier 0, or hue/saturation on 1 channel) are absent.
        """
        n, c, h, w = [int(v) for v in shape]
        p = self.p.detach().to(device=device, dtype=torch.float32)
        size = torch.tensor([w, h], dtype=torch.float32, device=device)
        params: Dict[str, torch.Tensor] = {}

        def gate(prob, value, neutral):
            # Keep `value` for a sample with probability `prob`, else the neutral value.
            mask = torch.rand([n], device=device) < prob
            return torch.where(mask.reshape([n] + [1] * (value.ndim - 1)), value, torch.full_like(value, neutral))

        uniform = lambda *s: torch.rand([n, *s], device=device)
        normal = lambda *s: torch.randn([n, *s], device=device)

        # Blit and geometric ops.
        if self.xflip > 0:
            params['xflip'] = gate(self.xflip * p, torch.floor(uniform() * 2), 0)
        if self.rotate90 > 0:
            params['rotate90'] = gate(self.rotate90 * p, torch.floor(uniform() * 4), 0)
        if self.xint > 0:
            shift = (uniform(2) * 2 - 1) * self.xint_max
            params['xint'] = torch.round(gate(self.xint * p, shift, 0) * size)
        if self.scale > 0:
            params['scale'] = gate(self.scale * p, torch.exp2(normal() * self.scale_std), 1)
        if self.rotate > 0:
            # Two independent rotations (before and after aniso), each with probability q,
            # so that at least one happens with probability 1 - (1 - q)^2 = rotate * p.
            q = 1 - torch.sqrt((1 - self.rotate * p).clamp(0, 1))
            for key in ['rotate_pre', 'rotate_post']:
                params[key] = gate(q, (uniform() * 2 - 1) * math.pi * self.rotate_max, 0)
        if self.aniso > 0:
            params['aniso'] = gate(self.aniso * p, torch.exp2(normal() * self.aniso_std), 1)
        if self.xfrac > 0:
            params['xfrac'] = gate(self.xfrac * p, normal(2) * self.xfrac_std, 0) * size

        # Colour ops.
        if self.brightness > 0:
            params['brightness'] = gate(self.brightness * p, normal() * self.brightness_std, 0)
        if self.contrast > 0:
            params['contrast'] = gate(self.contrast * p, torch.exp2(normal() * self.contrast_std), 1)
        if self.lumaflip > 0:
            params['lumaflip'] = gate(self.lumaflip * p, torch.floor(uniform() * 2), 0)
        if self.hue > 0 and c > 1:
            params['hue'] = gate(self.hue * p, (uniform() * 2 - 1) * math.pi * self.hue_max, 0)
        if self.saturation > 0 and c > 1:
            params['saturation'] = gate(self.saturation * p, torch.exp2(normal() * self.saturation_std), 1)

        # Image-space ops.
        if self.imgfilter > 0:
            params['imgfilter'] = torch.stack([gate(self.imgfilter * p * band, torch.exp2(normal() * self.imgfilter_std), 1)
                                               for band in self.imgfilter_bands], dim=1)
        if self.noise > 0:
            params['noise'] = gate(self.noise * p, normal().abs() * self.noise_std, 0)
        if self.cutout > 0:
            params['cutout_size'] = gate(self.cutout * p, torch.full([n], self.cutout_size, device=device), 0)
            params['cutout_centre'] = uniform(2)
        return params

    #------------------------------------------------------------------------

    def apply(self, images: torch.Tensor, params: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Augment images [N, C, H, W] with given per-sample parameters (see sample_params).

        Deterministic except for the noise field, which is drawn here. Differentiable to any
        order with respect to `images`.
        """
        _check_images(images)
        x = images
        inv = self.geometric_inverse(params, x.shape[0], x.device)
        if inv is not None and not bool((inv == torch.eye(3, device=inv.device)).all()):
            x = self._warp(x, inv)
        color = self.color_matrix(params, x.shape[0], x.device)
        if color is not None:
            x = _apply_color(x, color)
        if 'imgfilter' in params:
            x = self._filter(x, params['imgfilter'])
        if 'noise' in params:
            x = x + torch.randn_like(x) * params['noise'].to(x.dtype).reshape(-1, 1, 1, 1)
        if 'cutout_size' in params:
            x = x * _cutout_mask(x, params['cutout_size'], params['cutout_centre'])
        return x

    #------------------------------------------------------------------------

    @staticmethod
    def geometric_inverse(params: Dict[str, torch.Tensor], n: int, device: torch.device) -> Optional[torch.Tensor]:
        """[N, 3, 3] map from output to input pixel coordinates (centred), or None if no geometric op is enabled.

        The content undergoes xflip, rotate90, xint, scale, rotate_pre, aniso, rotate_post,
        xfrac in this order, so the inverse is the product of the ops' inverses in the same order.
        """
        inverses = []
        if 'xflip' in params:
            inverses.append(_scale2d(1 - 2 * params['xflip'], torch.ones_like(params['xflip'])))
        if 'rotate90' in params:
            inverses.append(_rotate2d(-math.pi / 2 * params['rotate90']))
        if 'xint' in params:
            inverses.append(_translate2d(-params['xint'][:, 0], -params['xint'][:, 1]))
        if 'scale' in params:
            inverses.append(_scale2d(1 / params['scale'], 1 / params['scale']))
        if 'rotate_pre' in params:
            inverses.append(_rotate2d(-params['rotate_pre']))
        if 'aniso' in params:
            inverses.append(_scale2d(1 / params['aniso'], params['aniso']))
        if 'rotate_post' in params:
            inverses.append(_rotate2d(-params['rotate_post']))
        if 'xfrac' in params:
            inverses.append(_translate2d(-params['xfrac'][:, 0], -params['xfrac'][:, 1]))
        if not inverses:
            return None
        inv = torch.eye(3, device=device).repeat(n, 1, 1)
        for m in inverses:
            inv = inv @ m.to(device=device, dtype=torch.float32)
        return inv

    #------------------------------------------------------------------------

    def _warp(self, x: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
        """Resample x [N, C, H, W] so that out(q) = in(inv q), in centred pixel coordinates."""
        n, c, h, w = x.shape
        f = self.Hz_geom.to(device=x.device, dtype=x.dtype)
        f = f / f.sum()
        border = self.Hz_geom.shape[0] // 4 # Low-res pixels each 2x filter reaches on each side.

        # The output plus a `border` margin (eaten by the final filter) reads from these input
        # points; pad the input far enough beyond them for the upsampling filter, by
        # reflection, at most one image size (torch-style reflect limit, as officially).
        half = torch.tensor([(w - 1) / 2 + border, (h - 1) / 2 + border], device=x.device)
        corners = torch.tensor([[-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]], dtype=torch.float32, device=x.device)
        corners[:, :2] *= half
        src = inv @ corners.t() # [N, 3, corner]
        lo = (-src[:, :2, :]).amax(dim=(0, 2)) - (torch.tensor([w, h], device=x.device) - 1) / 2
        hi = src[:, :2, :].amax(dim=(0, 2)) - (torch.tensor([w, h], device=x.device) - 1) / 2
        limit = torch.tensor([w - 1, h - 1], device=x.device)
        pad0 = (lo + border + 0.5).ceil().clamp(min=0).minimum(limit)
        pad1 = (hi + border + 0.5).ceil().clamp(min=0).minimum(limit)
        left, top, right, bottom = [int(v) for v in torch.cat([pad0, pad1]).tolist()]
        x = reflect_pad(x, left, right, top, bottom)
        hp, wp = h + top + bottom, w + left + right

        # In the padded image's centred coordinates the input points move by half the
        # padding difference.
        shift = torch.tensor([(left - right) / 2, (top - bottom) / 2], device=x.device)
        lin, off = inv[:, :2, :2], inv[:, :2, 2] + shift # [N, 2, 2], [N, 2]

        # symlet-6 is not symmetric: the upsampled image holds the content of position
        # q + d at position q (d = the filter's delay), and the adjoint downsampling undoes
        # that. Maps other than translations (flips, rotations) would turn the delay into
        # a sub-pixel shift, so conjugate the map with it: in(q) = inv(q + d) - d.
        taps = torch.arange(f.shape[0], device=x.device, dtype=f.dtype)
        delay = float(((f.shape[0] - 1) / 2 - (taps * f).sum() / f.sum()) / 2) # low-res pixels
        off = off + (lin.sum(dim=2) - 1) * delay

        # Upsample 2x, sample bilinearly, downsample 2x with the adjoint filter (flipped).
        # affine_grid works in normalised coordinates: [-1, 1] spans the output region
        # (size + 2 * border) and the padded input.
        x = upfirdn2d.upsample2d(x, f, up=2)
        out_half = torch.tensor([w / 2 + border, h / 2 + border], device=x.device)
        in_half = torch.tensor([wp / 2, hp / 2], device=x.device)
        theta = torch.cat([lin * out_half[None, None, :], off[:, :, None]], dim=2) / in_half[None, :, None]
        out_shape = [n, c, 2 * (h + 2 * border), 2 * (w + 2 * border)]
        grid = torch.nn.functional.affine_grid(theta.to(x.dtype), out_shape, align_corners=False)
        x = grid_sample_gradfix.grid_sample(x, grid)
        return upfirdn2d.downsample2d(x, f, down=2, padding=-2 * border, flip_filter=True)

    #------------------------------------------------------------------------

    @staticmethod
    def color_matrix(params: Dict[str, torch.Tensor], n: int, device: torch.device) -> Optional[torch.Tensor]:
        """[N, 4, 4] homogeneous RGB map of the colour ops, or None if none is enabled.

        Applied in the order brightness, contrast, luma flip, hue, saturation. The luma
        axis is v = (1, 1, 1) / sqrt(3): luma flip reflects across the plane orthogonal to
        v, hue rotates about v, saturation scales the component orthogonal to v.
        """
        eye3 = torch.eye(3, device=device)
        v = torch.full([3], 1 / math.sqrt(3), device=device)
        vv = torch.outer(v, v)
        mats = []
        if 'brightness' in params:
            b = params['brightness'].to(device)
            m = torch.eye(4, device=device).repeat(n, 1, 1)
            m[:, :3, 3] = b[:, None]
            mats.append(m)
        if 'contrast' in params:
            mats.append(_embed3(eye3 * params['contrast'].to(device).reshape(n, 1, 1)))
        if 'lumaflip' in params:
            mats.append(_embed3(eye3 - 2 * vv * params['lumaflip'].to(device).reshape(n, 1, 1)))
        if 'hue' in params:
            # Rodrigues' formula for a rotation by theta about the unit axis v.
            theta = params['hue'].to(device).reshape(n, 1, 1)
            cross = torch.tensor([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], dtype=torch.float32, device=device) / math.sqrt(3)
            mats.append(_embed3(torch.cos(theta) * eye3 + torch.sin(theta) * cross + (1 - torch.cos(theta)) * vv))
        if 'saturation' in params:
            mats.append(_embed3(vv + (eye3 - vv) * params['saturation'].to(device).reshape(n, 1, 1)))
        if not mats:
            return None
        out = mats[0]
        for m in mats[1:]:
            out = m @ out
        return out

    #------------------------------------------------------------------------

    def _filter(self, x: torch.Tensor, amplitudes: torch.Tensor) -> torch.Tensor:
        """Scale the octave bands of x [N, C, H, W] by per-sample amplitudes [N, 4].

        Band i's amplitude t_i is applied with the total expected power sum_j e_j g_j^2
        (e = the 1/f weights) kept at 1: every band is divided by sqrt(1 + e_i (t_i^2 - 1)),
        for each i in turn.
        """
        n, c, h, w = x.shape
        t = amplitudes.to(device=x.device, dtype=x.dtype)
        e = torch.tensor(_EXPECTED_BAND_POWER, device=x.device, dtype=x.dtype)
        gains = t / torch.sqrt(1 + e * (t.square() - 1)).prod(dim=1, keepdim=True) # [N, bands]
        taps = gains @ self.Hz_fbank.to(device=x.device, dtype=x.dtype) # [N, taps]; symmetric, so correlation = convolution
        taps = taps.repeat_interleave(c, dim=0) # [N * C, taps]
        r = taps.shape[1] // 2
        y = reflect_pad(x, r, r, r, r).reshape(1, n * c, h + 2 * r, w + 2 * r)
        y = conv2d_gradfix.conv2d(y, taps[:, None, None, :], groups=n * c)
        y = conv2d_gradfix.conv2d(y, taps[:, None, :, None], groups=n * c)
        return y.reshape(n, c, h, w)

#----------------------------------------------------------------------------

def _apply_color(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Apply [N, 4, 4] homogeneous RGB maps to x [N, C, H, W].

    One channel is treated as the gray pixel (l, l, l) and gets the mean of the three outputs.
    """
    n, c, h, w = x.shape
    m = m.to(x.dtype)
    flat = x.reshape(n, c, h * w)
    if c == 3:
        out = m[:, :3, :3] @ flat + m[:, :3, 3:]
    else:
        rows = m[:, :3, :].mean(dim=1) # [N, 4]
        out = flat * rows[:, :3].sum(dim=1).reshape(n, 1, 1) + rows[:, 3].reshape(n, 1, 1)
    return out.reshape(n, c, h, w)

def _cutout_mask(x: torch.Tensor, size: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """[N, 1, H, W] mask, 0 inside each sample's square (side `size` x image size, at `centre`)."""
    _n, _c, h, w = x.shape
    size = size.to(device=x.device, dtype=torch.float32).reshape(-1, 1, 1, 1)
    centre = centre.to(device=x.device, dtype=torch.float32)
    cx = (torch.arange(w, device=x.device, dtype=torch.float32).reshape(1, 1, 1, w) + 0.5) / w
    cy = (torch.arange(h, device=x.device, dtype=torch.float32).reshape(1, 1, h, 1) + 0.5) / h
    outside_x = (cx - centre[:, 0].reshape(-1, 1, 1, 1)).abs() >= size / 2
    outside_y = (cy - centre[:, 1].reshape(-1, 1, 1, 1)).abs() >= size / 2
    return (outside_x | outside_y).to(x.dtype)

#----------------------------------------------------------------------------

class AdaptiveAugment:
    """The ADA heuristic: nudge the pipe's p so that r_t = E[sign(D(real))] tracks a target.

    Call `observe(real_logits)` after each real-image D pass and `update(pipe, batch_size)`
    once per training batch. Every `interval` batches, the signs gathered since the last
    adjustment (summed over all ranks when torch.distributed is initialised, so every rank
    takes the same decision) give r_t, and

        p <- clamp(p + sign(r_t - target) * batch_size * interval / (speed_kimg * 1000), 0, 1)

    so p can traverse [0, 1] in `speed_kimg` thousand images. p lives in the pipe (its
    buffer travels with snapshots); this object holds only small counters (`state_dict`).
    """

    def __init__(self, target: float = 0.6, interval: int = 4, speed_kimg: float = 500):
        if not isinstance(target, (int, float)) or not -1 <= target <= 1:
            raise ValueError(f'AdaptiveAugment: target is a mean sign in [-1, 1] (ADA uses 0.6); got {target!r}')
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f'AdaptiveAugment: interval is a whole number of batches >= 1 (ADA uses 4); got {interval!r}')
        if not isinstance(speed_kimg, (int, float)) or not speed_kimg > 0:
            raise ValueError(f'AdaptiveAugment: speed_kimg must be > 0 (kimg for p to go from 0 to 1; ADA uses 500, '
                             f'100 after a resume); got {speed_kimg!r}')
        self.target = float(target)
        self.interval = int(interval)
        self.speed_kimg = float(speed_kimg)
        self.rt: Optional[float] = None       # Last r_t that drove an adjustment, for stats.
        self._batches = 0                     # Batches since the last adjustment.
        self._stats: Optional[torch.Tensor] = None # [sum of signs, count], on the logits' device.

    def observe(self, real_logits: torch.Tensor) -> None:
        """Accumulate the signs of D's logits on real images (any shape, e.g. [N, 1])."""
        signs = real_logits.detach().flatten().sign().to(torch.float64)
        stats = torch.stack([signs.sum(), torch.tensor(float(signs.numel()), dtype=torch.float64, device=signs.device)])
        self._stats = stats if self._stats is None else self._stats + stats.to(self._stats.device)

    def update(self, augment_pipe: torch.nn.Module, batch_size: int) -> Optional[float]:
        """Count one batch of `batch_size` images (all ranks together); adjust p every `interval` batches.

        Returns the new p when it adjusted, else None. Every rank must call this in step.
        """
        self._batches += 1
        if self._batches < self.interval:
            return None
        self._batches = 0
        device = augment_pipe.p.device
        stats = torch.zeros([2], dtype=torch.float64, device=device) if self._stats is None else self._stats.to(device)
        self._stats = None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)
        total, count = stats.tolist()
        if count == 0: # Nothing observed anywhere: no evidence to move p.
            return None
        self.rt = total / count
        step = np.sign(self.rt - self.target) * batch_size * self.interval / (self.speed_kimg * 1000)
        new_p = min(max(float(augment_pipe.p) + float(step), 0.0), 1.0)
        augment_pipe.p.copy_(torch.as_tensor(new_p, dtype=augment_pipe.p.dtype))
        return new_p

    def state_dict(self) -> dict:
        """Counters only (p is in the pipe; target/interval/speed are constructor choices)."""
        total, count = (0.0, 0.0) if self._stats is None else self._stats.tolist()
        return dict(batches=self._batches, sign_sum=total, sign_count=count, rt=self.rt)

    def load_state_dict(self, state: dict) -> None:
        self._batches = int(state['batches'])
        self.rt = state['rt']
        self._stats = None if state['sign_count'] == 0 else torch.tensor([state['sign_sum'], state['sign_count']],
                                                                          dtype=torch.float64)

#----------------------------------------------------------------------------
