"""train.py: presets resolve to DESIGN section 4's numbers, flags override them, the dry run
prints and writes nothing, each bad option gets an error naming it, run directories are
numbered, and SIGINT finishes the step, writes a snapshot and exits 0."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

import train
from test_train_support import make_image_folder
from training.chain import CHAIN_DEFAULTS
from training.checkpoint import load_network_pkl

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp('faces') / 'faces', num_images=12)


def _invoke(args):
    return CliRunner().invoke(train.main, args, catch_exceptions=False)


def _dry_run(tmp_path, data_dir, *args):
    """Resolved training options of a dry run (the JSON it prints), checking it wrote nothing."""
    outdir = tmp_path / 'runs'
    result = _invoke(['--outdir', str(outdir), '--data', data_dir, '--device', 'cpu', '--metrics', 'none',
                      '--dry-run', *args])
    assert result.exit_code == 0, result.output
    assert not outdir.exists(), 'a dry run must write nothing'
    text = result.output
    start = text.index('Training options:') + len('Training options:')
    return json.loads(text[start:text.index('Output directory:')])

#----------------------------------------------------------------------------

def test_dry_run_prints_resolved_options_and_writes_nothing(tmp_path, data_dir):
    c = _dry_run(tmp_path, data_dir, '--cfg', 'lowshot', '--chain', 'running', '--desc', 'try')
    assert c['run_dir'].endswith(os.path.join('runs', '00000-faces-lowshot-diffaug-chainrunning-try'))
    assert c['training_set_kwargs']['resolution'] == 32


def test_lowshot_preset_matches_design(tmp_path, data_dir):
    # DESIGN section 4: batch 16, 300 kimg, lr 0.002, betas (0, 0.99), gamma 10, EMA 10 kimg,
    # mbstd 4, 2 mapping layers (compat lowshot256), DA color,translation,cutout, mirror on.
    c = _dry_run(tmp_path, data_dir, '--cfg', 'lowshot')
    assert (c['batch_size'], c['total_kimg'], c['ema_kimg'], c['ema_rampup']) == (16, 300, 10, None)
    for opt in ('G_opt_kwargs', 'D_opt_kwargs'):
        assert c[opt]['lr'] == 0.002 and c[opt]['betas'] == [0, 0.99]
    assert c['loss_kwargs']['r1_gamma'] == 10
    assert c['D_kwargs']['epilogue_kwargs']['mbstd_group_size'] == 4
    assert c['G_kwargs']['mapping_kwargs']['num_layers'] == 2
    assert c['G_kwargs']['synthesis_kwargs']['channel_base'] == c['D_kwargs']['channel_base'] == 16384
    assert c['augment_kwargs'] == {'class_name': 'training.diffaug.DiffAugment', 'policy': 'color,translation,cutout'}
    assert c['training_set_kwargs']['xflip'] is True
    assert c['D_kwargs']['chain_kwargs'] is None


def test_auto_preset_follows_official_formulas(tmp_path, data_dir):
    c = _dry_run(tmp_path, data_dir)  # cfg auto, 32 px, 1 GPU.
    batch = max(min(1 * min(4096 // 32, 32), 64), 1)
    assert c['batch_size'] == batch == 32 and c['batch_gpu'] == 32
    assert c['D_kwargs']['epilogue_kwargs']['mbstd_group_size'] == min(batch, 4)
    assert c['G_kwargs']['synthesis_kwargs']['channel_base'] == int(0.5 * 32768)
    assert c['G_opt_kwargs']['lr'] == 0.0025
    assert c['loss_kwargs']['r1_gamma'] == pytest.approx(0.0002 * 32 ** 2 / batch)
    assert c['ema_kimg'] == pytest.approx(batch * 10 / 32) and c['ema_rampup'] == 0.05
    assert c['augment_kwargs']['class_name'] == 'training.augment.AugmentPipe' and c['ada_target'] == 0.6
    assert c['total_kimg'] == 25000 and c['image_snapshot_ticks'] == 50 and c['kimg_per_tick'] == 4


def test_flags_override_the_preset(tmp_path, data_dir):
    c = _dry_run(tmp_path, data_dir, '--cfg', 'stylegan2', '--batch', '8', '--batch-gpu', '4', '--kimg', '0.5',
                 '--tick', '0.25', '--cbase', '1024', '--cmax', '64', '--map-depth', '3', '--mbstd-group', '2',
                 '--glr', '0.001', '--dlr', '0.003', '--gamma', '0.5', '--aug', 'fixed', '--p', '0.2',
                 '--augpipe', 'bg', '--chain', 'batch', '--chain-tau', '0.3', '--chain-blocks', '16,32',
                 '--mirror', '1', '--holdout', '2')
    assert (c['batch_size'], c['batch_gpu'], c['total_kimg'], c['kimg_per_tick']) == (8, 4, 0.5, 0.25)
    assert c['D_kwargs']['channel_base'] == 1024 and c['D_kwargs']['channel_max'] == 64
    assert c['G_kwargs']['mapping_kwargs']['num_layers'] == 3
    assert c['D_kwargs']['epilogue_kwargs']['mbstd_group_size'] == 2
    assert c['G_opt_kwargs']['lr'] == 0.001 and c['D_opt_kwargs']['lr'] == 0.003
    assert c['loss_kwargs']['r1_gamma'] == 0.5 and c['augment_p'] == 0.2 and c['ada_target'] is None
    assert c['augment_kwargs']['xflip'] == 1 and 'brightness' not in c['augment_kwargs']  # bg = blit + geom.
    chain = c['D_kwargs']['chain_kwargs']
    assert chain['variant'] == 'batch' and chain['tau'] == 0.3 and chain['blocks'] == [16, 32]
    assert chain['dp'] == CHAIN_DEFAULTS['dp'] and chain['lambda_0mr'] == CHAIN_DEFAULTS['lambda_0mr']
    assert c['holdout_kwargs']['split'] == 'holdout' and c['holdout_kwargs']['holdout'] == 2
    assert c['training_set_kwargs']['xflip'] is True and c['holdout_kwargs']['xflip'] is False

#----------------------------------------------------------------------------

BAD_OPTIONS = [
    (['--aug', 'ada', '--p', '0.3'], '--p'),
    (['--aug', 'fixed'], '--p'),
    (['--aug', 'noaug', '--target', '0.5'], '--target'),
    (['--aug', 'diffaug', '--augpipe', 'bgc'], '--augpipe'),
    (['--aug', 'ada', '--diffaug', 'color'], '--diffaug'),
    (['--aug', 'diffaug', '--diffaug', 'color,zoom'], '--diffaug'),
    (['--gpus', '3', '--batch', '8'], '--batch'),
    (['--batch', '8', '--batch-gpu', '3'], '--batch-gpu'),
    (['--batch', '8', '--mbstd-group', '3'], '--mbstd-group'),
    (['--cfg', 'paper256'], '--cfg'),
    (['--cond', '1'], '--cond'),
    (['--subset', '500'], '--subset'),
    (['--metrics', 'fid50k_full,nosuch'], '--metrics'),
    (['--chain', 'running', '--chain-tau', '2'], '--chain-tau'),
    (['--chain', 'running', '--chain-blocks', '64'], '--chain-blocks'),
    (['--chain', 'running', '--chain-lambda', '-1'], '--chain-lambda'),
    (['--chain-dp', '0.01'], '--chain-dp'),
    (['--resume', 'no/such/file.pkl'], '--resume'),
    (['--resume-kimg', '10'], '--resume-kimg'),
    (['--device', 'mps', '--gpus', '2'], '--gpus'),
    (['--holdout', '12'], '--holdout'),
]


@pytest.mark.parametrize('args,flag', BAD_OPTIONS, ids=[' '.join(a) for a, _ in BAD_OPTIONS])
def test_bad_option_is_refused_naming_the_flag(tmp_path, data_dir, args, flag):
    result = _invoke(['--outdir', str(tmp_path / 'runs'), '--data', data_dir, '--device', 'cpu', '--metrics', 'none',
                      *args])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{flag}'" in result.output, result.output
    assert not (tmp_path / 'runs').exists()


def test_bad_dataset_is_refused_naming_data(tmp_path):
    result = _invoke(['--outdir', str(tmp_path / 'runs'), '--data', str(tmp_path / 'missing'), '--device', 'cpu'])
    assert result.exit_code == 2 and "Invalid value for '--data'" in result.output, result.output

#----------------------------------------------------------------------------

def test_run_directory_numbering_follows_the_largest_prefix(tmp_path):
    assert train.next_run_dir(str(tmp_path / 'none'), 'x') == str(tmp_path / 'none' / '00000-x')
    for name in ('00002-a', '00010-b', 'notes', '7-c'):
        os.makedirs(tmp_path / name)
    (tmp_path / '00099-file').write_text('not a run')  # Files do not count.
    assert train.next_run_dir(str(tmp_path), 'd') == str(tmp_path / '00011-d')

#----------------------------------------------------------------------------

def test_sigint_finishes_step_writes_snapshot_and_exits_zero(tmp_path, data_dir):
    outdir = tmp_path / 'runs'
    args = [sys.executable, 'train.py', '--outdir', str(outdir), '--data', data_dir, '--device', 'cpu',
            '--metrics', 'none', '--workers', '0', '--cfg', 'stylegan2', '--cbase', '256', '--cmax', '16',
            '--map-depth', '1', '--batch', '4', '--aug', 'noaug', '--kimg', '1000', '--tick', '0.004',
            '--snap', '1000', '--chain', 'running']
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    proc = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        while True:  # Wait for two ticks, so the stop comes mid-training.
            stats = list(outdir.glob('*/stats.jsonl'))
            if stats and len(stats[0].read_text().splitlines()) >= 2:
                break
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.time() < deadline, 'training did not reach tick 1'
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = out.decode()
    assert proc.returncode == 0, out[-3000:]
    assert 'Received SIGINT' in out and 'Stopped by SIGINT' in out
    run_dir = stats[0].parent
    data = load_network_pkl(str(run_dir / 'network-snapshot-000000.pkl'))
    assert data['resume_state']['cur_nimg'] >= 8  # Later than tick 0's snapshot (one batch of 4).
    with open(run_dir / 'training_options.json') as f:
        assert json.load(f)['D_kwargs']['chain_kwargs']['variant'] == 'running'

#----------------------------------------------------------------------------

def test_resume_latest_picks_newest_snapshot_of_highest_run(tmp_path):
    assert train.find_latest_snapshot(str(tmp_path / 'missing')) is None
    for run, snaps in [('00000-a', ['network-snapshot-000004.pkl', 'network-snapshot-000012.pkl']),
                       ('00001-b', ['network-snapshot-000000.pkl', 'network-snapshot-000008.pkl']),
                       ('00002-c', [])]:  # The newest run crashed before its first snapshot.
        os.makedirs(tmp_path / run)
        for snap in snaps:
            (tmp_path / run / snap).write_bytes(b'')
    assert train.find_latest_snapshot(str(tmp_path)) == str(tmp_path / '00001-b' / 'network-snapshot-000008.pkl')

#----------------------------------------------------------------------------
