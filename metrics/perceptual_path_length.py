"""Perceptual path length (Karras et al., "A style-based generator architecture for GANs",
CVPR 2019), as StyleGAN2-ADA's `ppl_*` metrics compute it.

For a pair of latents (z0, z1) and t (uniform in [0, 1], or 0 for sampling 'end'), the
images at t and t + epsilon along the path (slerp in z, lerp in w) are compared with the
LPIPS distance of the VGG16 detector; the metric is the mean of d / epsilon^2 over the
samples between the 1st and 99th percentiles.
"""
import inspect

import numpy as np
import torch

from metrics import detectors, metric_utils

#----------------------------------------------------------------------------

def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of the directions of a, b [N, D] at t [N, 1] (unit-length result)."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    d = (a * b).sum(dim=-1, keepdim=True).clamp(-1, 1)
    p = t * torch.acos(d)
    c = b - d * a
    c = c / c.norm(dim=-1, keepdim=True)
    d = a * torch.cos(p) + c * torch.sin(p)
    return d / d.norm(dim=-1, keepdim=True)

#----------------------------------------------------------------------------

class PPLSampler(torch.nn.Module):
    """One batch of PPL distances: forward(c [N, c_dim]) -> d / epsilon^2, float32 [N].

    G: generator; G_kwargs: kwargs for G.synthesis; vgg16: LPIPS detector;
    space 'z' or 'w'; sampling 'full' (t ~ U(0, 1)) or 'end' (t = 0);
    crop: keep the central face area (rows 3/8..7/8, columns 2/8..6/8), as for FFHQ.
    """

    def __init__(self, G, G_kwargs: dict, epsilon: float, space: str, sampling: str, crop: bool, vgg16,
                 generator: torch.Generator = None):
        if space not in ('z', 'w'):
            raise ValueError(f'PPL space must be "z" or "w", got {space!r}')
        if sampling not in ('full', 'end'):
            raise ValueError(f'PPL sampling must be "full" or "end", got {sampling!r}')
        super().__init__()
        self.G = G
        self.G_kwargs = G_kwargs
        self.epsilon = epsilon
        self.space = space
        self.sampling = sampling
        self.crop = crop
        self.vgg16 = vgg16
        self.generator = generator

    def _randn(self, shape, device):
        return torch.randn(shape, generator=self.generator, device=device)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        n, device = c.shape[0], c.device
        t = torch.rand([n], generator=self.generator, device=device) * (1 if self.sampling == 'full' else 0)
        z0, z1 = self._randn([n * 2, self.G.z_dim], device).chunk(2)

        # Interpolate; consecutive rows of ws are the pair (t, t + epsilon).
        if self.space == 'w':
            w0, w1 = self.G.mapping(z=torch.cat([z0, z1]), c=torch.cat([c, c])).chunk(2)
            tt = t.view(-1, 1, 1)
            wt0 = torch.lerp(w0, w1, tt)
            wt1 = torch.lerp(w0, w1, tt + self.epsilon)
        else:
            tt = t.view(-1, 1)
            zt0 = slerp(z0, z1, tt)
            zt1 = slerp(z0, z1, tt + self.epsilon)
            wt0, wt1 = self.G.mapping(z=torch.cat([zt0, zt1]), c=torch.cat([c, c])).chunk(2)
        ws = torch.stack([wt0, wt1], dim=1).flatten(0, 1)

        # Images with constant noise, so that only the latent moves.
        img = self.G.synthesis(ws, noise_mode='const', **self.G_kwargs)
        if self.crop:
            if img.shape[2] != img.shape[3]:
                raise ValueError(f'PPL crop needs square images, got {tuple(img.shape[2:])}')
            e = img.shape[2] // 8
            img = img[:, :, e * 3:e * 7, e * 2:e * 6]
        factor = self.G.img_resolution // 256
        if factor > 1:
            # Box-downsample to 256 px, the resolution LPIPS was calibrated at.
            img = img.reshape([-1, img.shape[1], img.shape[2] // factor, factor, img.shape[3] // factor, factor]).mean([3, 5])
        img = detectors.to_rgb((img + 1) * (255 / 2))

        # LPIPS distance of each pair.
        lpips = self.vgg16(img, resize_images=False, return_lpips=True)
        lpips_t0, lpips_t1 = lpips[0::2], lpips[1::2]
        return (lpips_t0 - lpips_t1).square().sum(dim=1) / self.epsilon ** 2

#----------------------------------------------------------------------------

def trimmed_mean(dist: np.ndarray) -> float:
    """Mean of dist over the values between its 1st (lower) and 99th (higher) percentiles."""
    lo = np.percentile(dist, 1, method='lower')
    hi = np.percentile(dist, 99, method='higher')
    return float(np.extract(np.logical_and(dist >= lo, dist <= hi), dist).mean())

#----------------------------------------------------------------------------

def compute_ppl(opts: metric_utils.MetricOptions, num_samples: int, epsilon: float, space: str, sampling: str,
                crop: bool, batch_size: int = 2) -> float:
    """PPL of opts.G over num_samples latent pairs (split over the processes)."""
    num_samples = opts.gen_count(num_samples)
    _, vgg16 = detectors.get_detector(opts.vgg_detector, 'vgg16', opts.device)
    G = metric_utils.prepare_generator(opts)
    # fp32 everywhere: epsilon is far below fp16's resolution.
    G_kwargs = dict(force_fp32=True) if 'force_fp32' in inspect.signature(G.synthesis.forward).parameters else {}
    sampler = PPLSampler(G, G_kwargs, epsilon, space, sampling, crop, vgg16,
                         generator=metric_utils.latent_generator(opts))
    labels = metric_utils.iterate_random_labels(opts, batch_size, G)

    # Every process samples; each batch is gathered (FeatureStats keeps them all).
    stats = metric_utils.FeatureStats(capture_all=True, max_items=num_samples)
    bar = metric_utils.progress_bar(opts, num_samples, 'PPL samples')
    with torch.no_grad():
        while not stats.is_full():
            dist = sampler(next(labels))
            before = stats.num_items
            stats.append_torch(dist.unsqueeze(1), num_gpus=opts.num_gpus, rank=opts.rank)
            bar.update(stats.num_items - before)
    bar.close()
    if opts.rank != 0:
        return float('nan')
    return trimmed_mean(stats.get_all()[:, 0])

#----------------------------------------------------------------------------
