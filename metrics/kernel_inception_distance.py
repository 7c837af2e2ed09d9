"""Kernel Inception Distance (Binkowski et al., "Demystifying MMD GANs", ICLR 2018): the
unbiased estimate of the squared MMD with the cubic polynomial kernel

    k(x, y) = (x . y / D + 1)^3

averaged over random subsets of real and generated Inception features (StyleGAN2-ADA's
defaults: 100 subsets of at most 1000 items).
"""
from typing import Optional

import numpy as np

from metrics import metric_utils

#----------------------------------------------------------------------------

def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x_i, y_j) = (x_i . y_j / D + 1)^3 for x [N, D], y [M, D] -> [N, M] float64."""
    return (x.astype(np.float64) @ y.astype(np.float64).T / x.shape[1] + 1) ** 3

#----------------------------------------------------------------------------

def kernel_distance(real_features: np.ndarray, gen_features: np.ndarray, num_subsets: int = 100,
                    max_subset_size: int = 1000, rnd: Optional[np.random.RandomState] = None) -> float:
    """KID: mean over subsets of the unbiased MMD^2 estimate.

    real_features [Nr, D], gen_features [Ng, D]; each subset draws m = min(Nr, Ng,
    max_subset_size) items of each without replacement; within-set kernel sums leave out
    the diagonal (divided by m (m - 1)), the cross term is divided by m^2.
    """
    if real_features.shape[1] != gen_features.shape[1]:
        raise ValueError(f'feature sizes differ: {real_features.shape[1]} vs {gen_features.shape[1]}')
    m = min(real_features.shape[0], gen_features.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f'KID needs at least 2 real and 2 generated items, got {real_features.shape[0]} and {gen_features.shape[0]}')
    rnd = rnd if rnd is not None else np.random.RandomState(0)
    total = 0.0
    for _ in range(num_subsets):
        x = gen_features[rnd.choice(gen_features.shape[0], m, replace=False)]
        y = real_features[rnd.choice(real_features.shape[0], m, replace=False)]
        kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        total += within - 2 * kxy.sum() / (m * m)
    return float(total / num_subsets)

#----------------------------------------------------------------------------

def compute_kid(opts: metric_utils.MetricOptions, max_real: Optional[int], num_gen: int,
                num_subsets: int, max_subset_size: int) -> float:
    """KID of opts.G against at most max_real reals and num_gen fakes."""
    detector_kwargs = dict(return_features=True)
    real_features = metric_utils.compute_feature_stats_for_dataset(
        opts, 'inception', detector_kwargs, max_items=max_real, capture_all=True).get_all()
    gen_features = metric_utils.compute_feature_stats_for_generator(
        opts, 'inception', detector_kwargs, max_items=num_gen, capture_all=True).get_all()
    if opts.rank != 0:
        return float('nan')
    return kernel_distance(real_features, gen_features, num_subsets, max_subset_size,
                           rnd=np.random.RandomState(opts.seed))

#----------------------------------------------------------------------------
