"""Frechet Inception Distance (Heusel et al., "GANs trained by a two time-scale update rule
converge to a local Nash equilibrium", NeurIPS 2017), on Inception-v3 pool features:

    FID = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_g S_r)^(1/2))

with the population covariances of the features, as StyleGAN2-ADA computes them.
"""
import warnings

import numpy as np
import scipy.linalg

from metrics import metric_utils

#----------------------------------------------------------------------------

def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2): means [D], covariances [D, D].

    sqrtm of a product of two PSD matrices can come back with tiny imaginary parts from
    round-off (and with inf/nan when the product is singular): the trace of the real part is
    kept, an imaginary part that is not tiny gives a warning, and a non-finite result is
    retried with eps added to both diagonals.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f'mismatched shapes: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}')
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        max_imag = np.max(np.abs(np.diagonal(covmean).imag))
        if max_imag > 1e-3 * max(1.0, np.max(np.abs(np.diagonal(covmean).real))):
            warnings.warn(f'FID: sqrtm has a large imaginary component ({max_imag:g}); the value may be off')
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))

#----------------------------------------------------------------------------

def compute_fid(opts: metric_utils.MetricOptions, max_real: int, num_gen: int) -> float:
    """FID of opts.G against the first max_real real images (all when None), num_gen fakes."""
    detector_kwargs = dict(return_features=True)
    mu_real, sigma_real = metric_utils.compute_feature_stats_for_dataset(
        opts, 'inception', detector_kwargs, max_items=max_real, capture_mean_cov=True).get_mean_cov()
    mu_gen, sigma_gen = metric_utils.compute_feature_stats_for_generator(
        opts, 'inception', detector_kwargs, max_items=num_gen, capture_mean_cov=True).get_mean_cov()
    if opts.rank != 0:
        return float('nan')
    return frechet_distance(mu_gen, sigma_gen, mu_real, sigma_real)

#----------------------------------------------------------------------------
