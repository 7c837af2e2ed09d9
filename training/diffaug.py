"""DiffAugment: differentiable augmentation for data-efficient GAN training.

Implements the `color`, `translation` and `cutout` policies of "Differentiable Augmentation
for Data-Efficient GAN Training" (Zhao, Liu, Lin, Zhu, Han; NeurIPS 2020), written from the
paper's description of the policies (DESIGN §6). The same random transform family is applied
to every image the discriminator sees (reals, fakes, R1 reals); every operation is a
composition of additions, multiplications, zero padding and gathers, so first and second
order gradients flow to the input images.

Images are float [N, C, H, W] in [-1, 1] with C = 1 or 3; randomness is drawn per sample.
"""

from typing import Callable, Dict, List

import torch

#----------------------------------------------------------------------------
# Colour: three per-sample random affine maps applied in the published order.

def _brightness(x: torch.Tensor) -> torch.Tensor:
    """Add U(-0.5, 0.5) to every pixel of a sample."""
    shift = torch.rand([x.shape[0], 1, 1, 1], dtype=x.dtype, device=x.device) - 0.5
    return x + shift

def _saturation(x: torch.Tensor) -> torch.Tensor:
    """Scale each pixel's deviation from its channel mean by U(0, 2) (a no-op on 1 channel)."""
    mean = x.mean(dim=1, keepdim=True)
    factor = torch.rand([x.shape[0], 1, 1, 1], dtype=x.dtype, device=x.device) * 2
    return (x - mean) * factor + mean

def _contrast(x: torch.Tensor) -> torch.Tensor:
    """Scale each sample's deviation from its mean over C, H, W by U(0.5, 1.5)."""
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    factor = torch.rand([x.shape[0], 1, 1, 1], dtype=x.dtype, device=x.device) + 0.5
    return (x - mean) * factor + mean

def _color(x: torch.Tensor) -> torch.Tensor:
    return _contrast(_saturation(_brightness(x)))

#----------------------------------------------------------------------------
# Translation: integer shifts of up to 1/8 of the size, the uncovered border filled with zeros.

def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    n, c, h, w = x.shape
    max_y, max_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    shift_y = torch.randint(-max_y, max_y + 1, [n, 1], device=x.device)
    shift_x = torch.randint(-max_x, max_x + 1, [n, 1], device=x.device)

    # out[y, x] = in[y - shift_y, x - shift_x]; reading from a zero-padded copy makes the
    # out-of-range reads land on zeros instead of needing a mask.
    padded = torch.nn.functional.pad(x, [max_x, max_x, max_y, max_y])
    rows = torch.arange(h, device=x.device) + max_y - shift_y # [N, H] rows of `padded`
    cols = torch.arange(w, device=x.device) + max_x - shift_x # [N, W] columns of `padded`
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * max_x))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))

#----------------------------------------------------------------------------
# Cutout: zero a square of half the size whose centre is uniform over the image (the square
# is clipped at the border).

def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    n, _c, h, w = x.shape
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    # Centre row in [0, h] for even sizes, [0, h - 1] for odd ones, as in the published policy.
    centre_y = torch.randint(0, h + (1 - size_y % 2), [n, 1, 1, 1], device=x.device)
    centre_x = torch.randint(0, w + (1 - size_x % 2), [n, 1, 1, 1], device=x.device)
    top, left = centre_y - size_y // 2, centre_x - size_x // 2
    rows = torch.arange(h, device=x.device).reshape(1, 1, h, 1)
    cols = torch.arange(w, device=x.device).reshape(1, 1, 1, w)
    inside = (rows >= top) & (rows < top + size_y) & (cols >= left) & (cols < left + size_x)
    return x * (~inside).to(x.dtype)

#----------------------------------------------------------------------------

AUGMENT_FNS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    'color':       _color,
    'translation': _translation,
    'cutout':      _cutout,
}

def parse_policy(policy: str) -> List[str]:
    """Split a comma-separated policy ('color,translation,cutout') into validated names.

    An empty string means no augmentation. Raises ValueError naming an unknown entry.
    """
    if not isinstance(policy, str):
        raise ValueError(f'DiffAugment policy must be a comma-separated string such as '
                         f"'color,translation,cutout'; got {type(policy).__name__} {policy!r}")
    names = [name.strip() for name in policy.split(',') if name.strip()]
    for name in names:
        if name not in AUGMENT_FNS:
            raise ValueError(f'DiffAugment policy {policy!r}: unknown augmentation {name!r}; '
                             f'expected a comma-separated subset of {", ".join(AUGMENT_FNS)}')
    return names

#----------------------------------------------------------------------------

def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        got = f'{x.dtype} tensor of shape {list(x.shape)}' if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f'DiffAugment expects float images [N, C, H, W] in [-1, 1]; got {got}. '
                         f'Convert uint8 images with x.to(torch.float32) / 127.5 - 1.')
    if x.shape[1] not in (1, 3):
        raise ValueError(f'DiffAugment expects 1 or 3 channels; got {x.shape[1]} (shape {list(x.shape)})')

def diff_augment(x: torch.Tensor, policy: str = 'color,translation,cutout') -> torch.Tensor:
    """Apply the policy's augmentations, in the listed order, with per-sample randomness.

    Args:
        x:      float [N, C, H, W] in [-1, 1], C in {1, 3}.
        policy: comma-separated subset of 'color', 'translation', 'cutout' ('' = identity).
    Returns:
        float [N, C, H, W] of x's dtype (colour can leave [-1, 1], as published).
    """
    names = parse_policy(policy)
    _check_images(x)
    for name in names:
        x = AUGMENT_FNS[name](x)
    return x

#----------------------------------------------------------------------------

class DiffAugment(torch.nn.Module):
    """DiffAugment as a module, usable wherever an augment pipe is expected.

    It has no parameters or buffers; the policy is validated at construction. Deliberately
    not a persistent class: like official DiffAugment runs, snapshots store no augment pipe
    for it (the training loop writes None and rebuilds it from the options).
    """

    def __init__(self, policy: str = 'color,translation,cutout'):
        super().__init__()
        self.policy = ','.join(parse_policy(policy))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: float [N, C, H, W] in [-1, 1] -> augmented float [N, C, H, W]."""
        return diff_augment(images, self.policy)

    def extra_repr(self) -> str:
        return f'policy={self.policy!r}'

#----------------------------------------------------------------------------
