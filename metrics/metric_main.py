"""Metric registry and entry points: `calc_metric(name, **opts)` and `report_metric(...)`,
with StyleGAN2-ADA's metric names plus the few-shot `fid5k_full`.

Each metric is a function of MetricOptions returning {result_name: value}, registered by
the `register_metric` decorator. Metrics that ask for more real images than the dataset
holds use all of them.
"""
import json
import os
import time
from typing import Callable, Optional

import dnnlib
from metrics import frechet_inception_distance, inception_score, kernel_inception_distance
from metrics import metric_utils, perceptual_path_length, precision_recall

#----------------------------------------------------------------------------

_metric_dict: dict = dict() # name -> fn(opts) -> dict of results

def register_metric(fn: Callable) -> Callable:
    """Decorator: register fn under its own name."""
    if not callable(fn):
        raise TypeError('register_metric expects a function')
    _metric_dict[fn.__name__] = fn
    return fn

def is_valid_metric(metric: str) -> bool:
    return metric in _metric_dict

def list_valid_metrics() -> list:
    return list(_metric_dict.keys())

#----------------------------------------------------------------------------

def calc_metric(metric: str, **kwargs) -> dnnlib.EasyDict:
    """Compute one metric. kwargs are MetricOptions' (G, G_kwargs, dataset_kwargs, num_gpus,
    rank, device, progress, cache, detector, vgg_detector, seed).

    Returns {results: {name: value}, metric, total_time, total_time_str, num_gpus, timestamp}.
    Example (needs a generator G and a dataset folder):
        >>> r = calc_metric('fid5k_full', G=G, dataset_kwargs=dict(                # doctest: +SKIP
        ...     class_name='training.dataset.ImageFolderDataset', path='data/obama'))
        >>> r.results.fid5k_full                                                    # doctest: +SKIP
    """
    if not is_valid_metric(metric):
        raise ValueError(f'unknown metric {metric!r}; valid metrics: {", ".join(list_valid_metrics())}')
    opts = metric_utils.MetricOptions(**kwargs)
    start = time.time()
    results = _metric_dict[metric](opts)
    total_time = time.time() - start

    # Every process returns the same keys; only rank 0 holds the values.
    result = dnnlib.EasyDict(
        results=dnnlib.EasyDict(results),
        metric=metric,
        total_time=total_time,
        total_time_str=dnnlib.util.format_time(total_time),
        num_gpus=opts.num_gpus,
        timestamp=time.time(),
    )
    if opts.num_gen is not None:
        result.num_gen = opts.num_gen # Recorded: an override makes the value differ from the named metric's.
    if opts.seed != 0:
        result.seed = opts.seed # Recorded: other fakes, so a value that differs by the metric's sampling noise.
    return result

#----------------------------------------------------------------------------

def report_metric(result_dict: dict, run_dir: Optional[str] = None, snapshot_pkl: Optional[str] = None) -> None:
    """Print the result and, when run_dir is given, append it as one JSON line to
    <run_dir>/metric-<name>.jsonl (snapshot_pkl stored relative to run_dir)."""
    metric = result_dict['metric']
    if not is_valid_metric(metric):
        raise ValueError(f'unknown metric {metric!r} in the result dict')
    if run_dir is not None and snapshot_pkl is not None:
        snapshot_pkl = os.path.relpath(snapshot_pkl, run_dir)
    line = json.dumps(dict(result_dict, snapshot_pkl=snapshot_pkl))
    print(line)
    if run_dir is not None and os.path.isdir(run_dir):
        # One short append of a whole line: concurrent readers see complete lines.
        with open(os.path.join(run_dir, f'metric-{metric}.jsonl'), 'at') as f:
            f.write(line + '\n')

#----------------------------------------------------------------------------
# Recommended metrics.

def _full(opts: metric_utils.MetricOptions) -> None:
    """The _full metrics compare against every real image, unmirrored."""
    opts.dataset_kwargs.update(max_size=None, xflip=False)

@register_metric
def fid50k_full(opts):
    _full(opts)
    fid = frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=50000)
    return dict(fid50k_full=fid)

@register_metric
def kid50k_full(opts):
    _full(opts)
    kid = kernel_inception_distance.compute_kid(opts, max_real=1000000, num_gen=50000, num_subsets=100, max_subset_size=1000)
    return dict(kid50k_full=kid)

@register_metric
def pr50k3_full(opts):
    _full(opts)
    precision, recall = precision_recall.compute_pr(opts, max_real=200000, num_gen=50000, nhood_size=3,
                                                    row_batch_size=10000, col_batch_size=10000)
    return dict(pr50k3_full_precision=precision, pr50k3_full_recall=recall)

@register_metric
def ppl2_wend(opts):
    ppl = perceptual_path_length.compute_ppl(opts, num_samples=50000, epsilon=1e-4, space='w', sampling='end',
                                             crop=False, batch_size=2)
    return dict(ppl2_wend=ppl)

@register_metric
def is50k(opts):
    _full(opts)
    mean, std = inception_score.compute_is(opts, num_gen=50000, num_splits=10)
    return dict(is50k_mean=mean, is50k_std=std)

#----------------------------------------------------------------------------
# Few-shot: 5k fakes against all reals (the papers' "fid5k-train").

@register_metric
def fid5k_full(opts):
    _full(opts)
    fid = frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=5000)
    return dict(fid5k_full=fid)

#----------------------------------------------------------------------------
# Legacy metrics (StyleGAN2 / StyleGAN2-ADA paper era).

@register_metric
def fid50k(opts):
    opts.dataset_kwargs.update(max_size=None)
    fid = frechet_inception_distance.compute_fid(opts, max_real=50000, num_gen=50000)
    return dict(fid50k=fid)

@register_metric
def kid50k(opts):
    opts.dataset_kwargs.update(max_size=None)
    kid = kernel_inception_distance.compute_kid(opts, max_real=50000, num_gen=50000, num_subsets=100, max_subset_size=1000)
    return dict(kid50k=kid)

@register_metric
def pr50k3(opts):
    opts.dataset_kwargs.update(max_size=None)
    precision, recall = precision_recall.compute_pr(opts, max_real=50000, num_gen=50000, nhood_size=3,
                                                    row_batch_size=10000, col_batch_size=10000)
    return dict(pr50k3_precision=precision, pr50k3_recall=recall)

@register_metric
def ppl_zfull(opts):
    ppl = perceptual_path_length.compute_ppl(opts, num_samples=50000, epsilon=1e-4, space='z', sampling='full', crop=True, batch_size=2)
    return dict(ppl_zfull=ppl)

@register_metric
def ppl_wfull(opts):
    ppl = perceptual_path_length.compute_ppl(opts, num_samples=50000, epsilon=1e-4, space='w', sampling='full', crop=True, batch_size=2)
    return dict(ppl_wfull=ppl)

@register_metric
def ppl_zend(opts):
    ppl = perceptual_path_length.compute_ppl(opts, num_samples=50000, epsilon=1e-4, space='z', sampling='end', crop=True, batch_size=2)
    return dict(ppl_zend=ppl)

@register_metric
def ppl_wend(opts):
    ppl = perceptual_path_length.compute_ppl(opts, num_samples=50000, epsilon=1e-4, space='w', sampling='end', crop=True, batch_size=2)
    return dict(ppl_wend=ppl)

#----------------------------------------------------------------------------
