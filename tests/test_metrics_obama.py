"""fid5k_full end to end with the real (offline fid-helper) Inception against the
100-shot-obama training set: a tiny 256 px snapshot, through calc_metrics.py."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import calc_metrics
import dnnlib
from metrics import detectors
from training.checkpoint import save_snapshot
from training.networks import Generator

#----------------------------------------------------------------------------

@pytest.mark.slow
def test_fid5k_full_of_a_tiny_snapshot_against_obama(obama_dir, tmp_path, monkeypatch):
    if detectors.fid_helper_path() is None:
        pytest.skip(f'needs the offline Inception: {detectors.FID_HELPER_PIP}')
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    torch.manual_seed(0)
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=256, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=512, channel_max=8)).eval()
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    (run_dir / 'training_options.json').write_text('{}')
    tsk = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=str(obama_dir), use_labels=False,
                          max_size=None, xflip=True, resolution=256)
    save_snapshot(str(run_dir / 'network-snapshot-000000.pkl'),
                  dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=tsk))

    # 100 fakes instead of 5,000: the real Inception takes a fraction of a second per image on this CPU.
    res = CliRunner().invoke(calc_metrics.main, ['--network', str(run_dir / 'network-snapshot-000000.pkl'),
                                                 '--metrics', 'fid5k_full', '--num-gen', '100', '--device', 'cpu'],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    [entry] = [json.loads(line) for line in (run_dir / 'metric-fid5k_full.jsonl').read_text().splitlines()]
    fid = entry['results']['fid5k_full']
    assert np.isfinite(fid) and fid > 50 # An untrained G is far from faces.
    [stats_file] = list((tmp_path / 'cache' / 'gan-metrics').iterdir())
    # All 100 reals, un-mirrored (the *_full metrics turn xflip off), with the fid-helper Inception.
    assert stats_file.name.startswith('100-shot-obama-fid-helper-default_1-')
    with np.load(stats_file) as data:
        assert int(data['num_items']) == 100 and data['raw_sum'].shape == (2048,)

#----------------------------------------------------------------------------
