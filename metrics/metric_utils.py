"""Shared machinery of the GAN metrics: options, feature statistics, the real-image stats
cache, and feature extraction from a dataset or a generator (StyleGAN2-ADA's protocol).

Work is split over processes by rank: process r handles items r, r + n, r + 2n, ... and
`FeatureStats.append_torch` all-gathers each batch (interleaved, so the order is the
dataset's) when torch.distributed is initialised. Images reach the detector as uint8
[N, 3, H, W]; single-channel images are repeated to three channels.
"""
import copy
import hashlib
import inspect
import os
import tempfile
from typing import Any, Iterator, Optional

import numpy as np
import torch
import tqdm

import dnnlib
from metrics import detectors

#----------------------------------------------------------------------------

class MetricOptions:
    """Everything a metric needs: the generator, the data, the processes and the detectors.

    G:              generator (G_ema) module, or None for data-only metrics.
    G_kwargs:       extra kwargs for G(z, c, ...), e.g. truncation_psi, noise_mode.
    dataset_kwargs: kwargs of the real dataset incl. class_name.
    num_gpus, rank: number of processes and this one's index.
    device:         torch device of this process.
    progress:       show tqdm progress bars (rank 0 only).
    cache:          read/write the real-image statistics cache.
    detector:       Inception spec ('auto', path, URL or callable); vgg_detector likewise for VGG16.
    seed:           seed of the latents and labels drawn for fakes (offset by rank).
    num_gen:        if set, overrides every metric's number of generated images / PPL samples
                    (for tests and quick looks: the result is then not the named metric).
    """

    def __init__(self, G: Optional[torch.nn.Module] = None, G_kwargs: Optional[dict] = None,
                 dataset_kwargs: Optional[dict] = None, num_gpus: int = 1, rank: int = 0,
                 device: Optional[torch.device] = None, progress: bool = False, cache: bool = True,
                 detector: Any = 'auto', vgg_detector: Any = 'auto', seed: int = 0,
                 num_gen: Optional[int] = None):
        if not 0 <= rank < num_gpus:
            raise ValueError(f'rank must be in [0, num_gpus={num_gpus}), got {rank}')
        if num_gpus > 1 and not is_distributed(num_gpus):
            # Each process would see only its share of the images: refuse rather than mis-measure.
            raise ValueError(f'num_gpus={num_gpus} needs torch.distributed initialised in every process '
                             f'(torch_utils.distributed.init); use num_gpus=1 for a single process')
        self.G = G
        self.G_kwargs = dnnlib.EasyDict(G_kwargs or {})
        self.dataset_kwargs = dnnlib.EasyDict(dataset_kwargs or {})
        self.num_gpus = num_gpus
        self.rank = rank
        self.device = torch.device(device) if device is not None else torch.device('cpu')
        self.progress = progress
        self.cache = cache
        self.detector = detector
        self.vgg_detector = vgg_detector
        self.seed = seed
        if num_gen is not None and num_gen < 1:
            raise ValueError(f'num_gen must be a positive number of images, got {num_gen}')
        self.num_gen = num_gen

    def gen_count(self, default: int) -> int:
        """Number of fakes a metric makes: its own default unless num_gen overrides it."""
        return default if self.num_gen is None else self.num_gen

    def detector_spec(self, kind: str) -> Any:
        """The spec of the 'inception' or 'vgg16' detector."""
        return self.detector if kind == 'inception' else self.vgg_detector

#----------------------------------------------------------------------------

def is_distributed(num_gpus: int) -> bool:
    """Whether batches must be gathered across processes."""
    return num_gpus > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()

#----------------------------------------------------------------------------

class FeatureStats:
    """Accumulates features [N, D] as a list (capture_all) and/or as float64 sums for the
    mean and (population) covariance (capture_mean_cov), up to max_items items."""

    def __init__(self, capture_all: bool = False, capture_mean_cov: bool = False, max_items: Optional[int] = None):
        self.capture_all = capture_all
        self.capture_mean_cov = capture_mean_cov
        self.max_items = max_items
        self.num_items = 0
        self.num_features = None
        self.all_features = []
        self.raw_sum = None  # [D] float64: sum of x
        self.raw_outer = None  # [D, D] float64: sum of x x^T

    def set_num_features(self, num_features: int) -> None:
        if self.num_features is not None and num_features != self.num_features:
            raise ValueError(f'feature size changed from {self.num_features} to {num_features}')
        if self.num_features is None:
            self.num_features = num_features
            if self.capture_mean_cov:
                self.raw_sum = np.zeros([num_features], dtype=np.float64)
                self.raw_outer = np.zeros([num_features, num_features], dtype=np.float64)

    def is_full(self) -> bool:
        return self.max_items is not None and self.num_items >= self.max_items

    def append(self, x: np.ndarray) -> None:
        """Add features x: float [N, D]; items beyond max_items are dropped."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f'features must be [N, D], got shape {x.shape}')
        if self.max_items is not None:
            x = x[:max(self.max_items - self.num_items, 0)]
        self.set_num_features(x.shape[1])
        if x.shape[0] == 0:
            return
        self.num_items += x.shape[0]
        if self.capture_all:
            self.all_features.append(x)
        if self.capture_mean_cov:
            x64 = x.astype(np.float64)
            self.raw_sum += x64.sum(axis=0)
            self.raw_outer += x64.T @ x64

    def append_torch(self, x: torch.Tensor, num_gpus: int = 1, rank: int = 0) -> None:
        """Add features x: [N, D] of this process, after gathering every process's batch
        (interleaved: item i of process r lands at i * num_gpus + r)."""
        if x.ndim != 2:
            raise ValueError(f'features must be [N, D], got shape {tuple(x.shape)}')
        if is_distributed(num_gpus):
            gathered = [torch.empty_like(x) for _ in range(num_gpus)]
            torch.distributed.all_gather(gathered, x.contiguous())
            x = torch.stack(gathered, dim=1).flatten(0, 1)
        self.append(x.detach().to(torch.float32).cpu().numpy())

    def get_all(self) -> np.ndarray:
        """All captured features: float32 [N, D]."""
        if not self.capture_all:
            raise ValueError('FeatureStats was created with capture_all=False')
        return np.concatenate(self.all_features) if self.all_features else np.zeros([0, self.num_features or 0], np.float32)

    def get_all_torch(self) -> torch.Tensor:
        return torch.from_numpy(self.get_all())

    def get_mean_cov(self) -> tuple:
        """(mean float64 [D], covariance float64 [D, D]), the covariance divided by N."""
        if not self.capture_mean_cov:
            raise ValueError('FeatureStats was created with capture_mean_cov=False')
        if self.num_items == 0:
            raise ValueError('FeatureStats holds no items')
        mean = self.raw_sum / self.num_items
        cov = self.raw_outer / self.num_items - np.outer(mean, mean)
        return mean, cov

    def save(self, path: str) -> None:
        """Write to an .npz file atomically (temp file in the same folder + os.replace)."""
        arrays = dict(capture_all=self.capture_all, capture_mean_cov=self.capture_mean_cov,
                      max_items=-1 if self.max_items is None else self.max_items,
                      num_items=self.num_items, num_features=-1 if self.num_features is None else self.num_features)
        if self.capture_all:
            arrays['all_features'] = self.get_all()
        if self.capture_mean_cov:
            arrays['raw_sum'] = self.raw_sum
            arrays['raw_outer'] = self.raw_outer
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp-', suffix='.npz')
        try:
            with os.fdopen(fd, 'wb') as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    @staticmethod
    def load(path: str) -> 'FeatureStats':
        with np.load(path, allow_pickle=False) as data:
            max_items = int(data['max_items'])
            stats = FeatureStats(capture_all=bool(data['capture_all']), capture_mean_cov=bool(data['capture_mean_cov']),
                                 max_items=None if max_items < 0 else max_items)
            stats.num_items = int(data['num_items'])
            num_features = int(data['num_features'])
            stats.num_features = None if num_features < 0 else num_features
            if stats.capture_all:
                stats.all_features = [data['all_features']]
            if stats.capture_mean_cov:
                stats.raw_sum = data['raw_sum']
                stats.raw_outer = data['raw_outer']
        return stats

#----------------------------------------------------------------------------

def progress_bar(opts: MetricOptions, total: int, desc: str) -> tqdm.tqdm:
    """A tqdm bar counting images, shown on rank 0 when opts.progress."""
    return tqdm.tqdm(total=total, desc=desc, unit='img', disable=(not opts.progress or opts.rank != 0),
                     dynamic_ncols=True, leave=False)

#----------------------------------------------------------------------------

def images_for_detector(images: torch.Tensor) -> torch.Tensor:
    """Real or generated batch -> uint8 [N, 3, H, W] as detectors expect."""
    return detectors.to_rgb(images)

#----------------------------------------------------------------------------

def stats_cache_file(opts: MetricOptions, dataset: Any, detector_tag: str, detector_kwargs: dict,
                     stats_kwargs: dict) -> str:
    """Cache path of a dataset's feature statistics: gan-metrics/<name>-<detector>-<md5>.npz.

    The md5 covers the dataset kwargs and size, the detector and its kwargs and the stats options.
    """
    key = dict(dataset_kwargs=dict(opts.dataset_kwargs), dataset_len=len(dataset), detector=detector_tag,
               detector_kwargs=detector_kwargs, stats_kwargs=stats_kwargs)
    digest = hashlib.md5(repr(sorted(key.items())).encode('utf-8')).hexdigest()
    name = getattr(dataset, 'name', 'dataset')
    return dnnlib.util.make_cache_dir_path('gan-metrics', f'{name}-{detector_tag}-{digest}.npz')

#----------------------------------------------------------------------------

def _broadcast_flag(flag: bool, opts: MetricOptions) -> bool:
    """Rank 0's boolean, on every process."""
    if not is_distributed(opts.num_gpus):
        return flag
    t = torch.as_tensor(1.0 if flag else 0.0, dtype=torch.float32, device=opts.device)
    torch.distributed.broadcast(t, src=0)
    return bool(t.item() != 0)

#----------------------------------------------------------------------------

def compute_feature_stats_for_dataset(opts: MetricOptions, detector_kind: str, detector_kwargs: dict,
                                      batch_size: int = 64, max_items: Optional[int] = None,
                                      data_loader_kwargs: Optional[dict] = None, **stats_kwargs) -> FeatureStats:
    """Features of the real images (all, or the first max_items), cached on disk.

    detector_kind: 'inception' or 'vgg16'; detector_kwargs e.g. dict(return_features=True).
    stats_kwargs: capture_all / capture_mean_cov for FeatureStats.
    """
    dataset = dnnlib.util.construct_class_by_name(**opts.dataset_kwargs)
    num_items = len(dataset) if max_items is None else min(len(dataset), max_items)
    if num_items == 0:
        raise ValueError(f'dataset {opts.dataset_kwargs.get("path", "")} holds no images')
    tag, detector = detectors.get_detector(opts.detector_spec(detector_kind), detector_kind, opts.device)
    stats_kwargs = dict(stats_kwargs, max_items=num_items)

    # Look in the cache (rank 0 decides, so that every process takes the same road).
    cache_file = None
    if opts.cache and tag is not None:
        cache_file = stats_cache_file(opts, dataset, tag, detector_kwargs, stats_kwargs)
        if _broadcast_flag(opts.rank == 0 and os.path.isfile(cache_file), opts):
            return FeatureStats.load(cache_file)

    # Rank-strided item subset, padded by wrap-around so that every process runs the same batches.
    stats = FeatureStats(**stats_kwargs)
    per_rank = (num_items - 1) // opts.num_gpus + 1
    subset = [(i * opts.num_gpus + opts.rank) % num_items for i in range(per_rank)]
    loader = torch.utils.data.DataLoader(dataset=dataset, sampler=subset, batch_size=batch_size,
                                         **(data_loader_kwargs or {}))
    bar = progress_bar(opts, num_items, f'{detector_kind} features of reals')
    for images, _labels in loader:
        with torch.no_grad():
            features = detector(images_for_detector(images).to(opts.device), **detector_kwargs)
        stats.append_torch(features, num_gpus=opts.num_gpus, rank=opts.rank)
        bar.update(min(images.shape[0] * opts.num_gpus, num_items - bar.n))
    bar.close()

    if cache_file is not None and opts.rank == 0:
        stats.save(cache_file)
    return stats

#----------------------------------------------------------------------------

def _label_dataset(opts: MetricOptions, G: torch.nn.Module) -> Any:
    """The dataset whose labels conditional fakes are drawn from (None when G is unconditional)."""
    if getattr(G, 'c_dim', 0) == 0:
        return None
    dataset = dnnlib.util.construct_class_by_name(**opts.dataset_kwargs)
    if len(dataset) == 0:
        raise ValueError('the dataset holds no labels to condition the generator on')
    return dataset

#----------------------------------------------------------------------------

def iterate_random_labels(opts: MetricOptions, batch_size: int, G: torch.nn.Module) -> Iterator[torch.Tensor]:
    """Endless batches of conditioning labels float32 [batch_size, c_dim], drawn from the
    dataset's labels (an empty [batch_size, 0] tensor for unconditional G)."""
    dataset = _label_dataset(opts, G)
    if dataset is None:
        while True:
            yield torch.zeros([batch_size, 0], device=opts.device)
    rnd = np.random.RandomState((opts.seed * 7919 + opts.rank) % (1 << 31))
    while True:
        idx = rnd.randint(len(dataset), size=batch_size)
        c = np.stack([np.asarray(dataset.get_label(int(i)), dtype=np.float32) for i in idx])
        yield torch.from_numpy(c).to(opts.device)

#----------------------------------------------------------------------------

def prepare_generator(opts: MetricOptions) -> torch.nn.Module:
    """A frozen eval-mode copy of opts.G on opts.device."""
    if opts.G is None:
        raise ValueError('this metric needs a generator (G) but none was given')
    return copy.deepcopy(opts.G).eval().requires_grad_(False).to(opts.device)

#----------------------------------------------------------------------------

def generator_kwargs(opts: MetricOptions, G: torch.nn.Module) -> dict:
    """opts.G_kwargs plus force_fp32=True off CUDA when G.forward takes it (fp16 breaks on CPU)."""
    kwargs = dict(opts.G_kwargs)
    if opts.device.type != 'cuda' and 'force_fp32' not in kwargs:
        if 'force_fp32' in inspect.signature(G.forward).parameters:
            kwargs['force_fp32'] = True
    return kwargs

#----------------------------------------------------------------------------

def latent_generator(opts: MetricOptions) -> torch.Generator:
    """Seeded torch RNG on the device for this process's latents."""
    gen = torch.Generator(device=opts.device)
    gen.manual_seed(opts.seed * 1000003 + opts.rank)
    return gen

#----------------------------------------------------------------------------

def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """float32 [N, C, H, W] in [-1, 1] -> uint8, as (img * 127.5 + 128).clamp(0, 255)."""
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)

#----------------------------------------------------------------------------

def compute_feature_stats_for_generator(opts: MetricOptions, detector_kind: str, detector_kwargs: dict,
                                        batch_size: int = 64, batch_gen: Optional[int] = None,
                                        max_items: Optional[int] = None, **stats_kwargs) -> FeatureStats:
    """Features of max_items fakes from opts.G, made batch_gen at a time and fed to the
    detector batch_size at a time. Every process makes its own share."""
    if max_items is None or max_items <= 0:
        raise ValueError(f'max_items (number of generated images) must be positive, got {max_items}')
    max_items = opts.gen_count(max_items)
    batch_gen = batch_gen or min(batch_size, 4)
    if batch_size % batch_gen != 0:
        raise ValueError(f'batch_size {batch_size} must be a multiple of batch_gen {batch_gen}')
    G = prepare_generator(opts)
    G_kwargs = generator_kwargs(opts, G)
    labels = iterate_random_labels(opts, batch_gen, G)
    rng = latent_generator(opts)
    _, detector = detectors.get_detector(opts.detector_spec(detector_kind), detector_kind, opts.device)

    stats = FeatureStats(max_items=max_items, **stats_kwargs)
    bar = progress_bar(opts, max_items, f'{detector_kind} features of fakes')
    with torch.no_grad():
        while not stats.is_full():
            # The last batch makes only what is still missing (rounded up to batch_gen).
            missing = -(-(max_items - stats.num_items) // opts.num_gpus)
            images = []
            for _ in range(min(batch_size, -(-missing // batch_gen) * batch_gen) // batch_gen):
                z = torch.randn([batch_gen, G.z_dim], generator=rng, device=opts.device)
                images.append(to_uint8(G(z, next(labels), **G_kwargs)))
            features = detector(images_for_detector(torch.cat(images)), **detector_kwargs)
            before = stats.num_items
            stats.append_torch(features, num_gpus=opts.num_gpus, rank=opts.rank)
            bar.update(stats.num_items - before)
    bar.close()
    return stats

#----------------------------------------------------------------------------
