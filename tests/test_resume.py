"""Resume and transfer: K steps + snapshot + resume + K steps equals 2K straight steps; a
SIGKILL in the middle of a snapshot write leaves the previous snapshot readable and
resumable; other architectures and pickles without resume state transfer by name."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from test_train_support import augment_options, make_image_folder, tiny_config
from training.checkpoint import load_network_pkl, save_snapshot
from training.training_loop import TrainingRun, training_loop

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TESTS_DIR)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp('data'), num_images=12)


def _resume_config(run_dir, data_dir, total_kimg, **overrides):
    """ADA (p adjusted every 2 batches, so a snapshot falls mid-interval) + CHAIN running +
    R1 every 2 batches + EMA ramp-up: every piece of state that must survive a resume."""
    c = tiny_config(run_dir, data_dir, total_kimg=total_kimg, kimg_per_tick=0.004, image_snapshot_ticks=None,
                    network_snapshot_ticks=1000, D_reg_interval=2, G_reg_interval=4, ema_rampup=0.05,
                    **dict(augment_options('ada'), ada_interval=2, ada_target=0.0, augment_p=0.5), **overrides)
    # tau = -1 < r (a running mean starting at 0): CHAIN's p rises at every D step.
    c.D_kwargs['chain_kwargs'] = dict(variant='running', dp=0.05, tau=-1.0)
    os.makedirs(run_dir, exist_ok=True)
    return c


def _final(run_dir):
    return load_network_pkl(os.path.join(run_dir, 'network-snapshot-000000.pkl'))


def _assert_same_state(a, b):
    for name in ('G', 'D', 'G_ema', 'augment_pipe'):
        ta = dict(a[name].named_parameters()) | dict(a[name].named_buffers())
        tb = dict(b[name].named_parameters()) | dict(b[name].named_buffers())
        assert ta.keys() == tb.keys()
        for key in ta:
            torch.testing.assert_close(ta[key], tb[key], rtol=0, atol=1e-6, msg=f'{name}.{key}')
    sa, sb = a['resume_state'], b['resume_state']
    for key in ('cur_nimg', 'batch_idx', 'ada'):
        assert sa[key] == sb[key], key
    torch.testing.assert_close(sa['pl_mean'], sb['pl_mean'], rtol=0, atol=1e-6)
    for opt in ('G', 'D'):
        for pid, state in sa['optimizers'][opt]['state'].items():
            for key, value in state.items():
                torch.testing.assert_close(value, sb['optimizers'][opt]['state'][pid][key], rtol=0, atol=1e-6,
                                           msg=f'{opt} optimizer {pid}.{key}')

#----------------------------------------------------------------------------

def test_resume_after_k_steps_equals_2k_straight_steps(tmp_path, data_dir):
    K = 3  # Steps of 4 images.
    torch.manual_seed(0)
    training_loop(**_resume_config(tmp_path / 'straight', data_dir, total_kimg=2 * K * 0.004))
    training_loop(**_resume_config(tmp_path / 'first', data_dir, total_kimg=K * 0.004))
    first = _final(tmp_path / 'first')
    assert first['resume_state']['cur_nimg'] == 4 * K
    torch.manual_seed(123)  # The resumed run must not depend on the caller's RNG either.
    training_loop(**_resume_config(tmp_path / 'resumed', data_dir, total_kimg=2 * K * 0.004,
                                   resume_pkl=str(tmp_path / 'first' / 'network-snapshot-000000.pkl')))
    straight, resumed = _final(tmp_path / 'straight'), _final(tmp_path / 'resumed')
    assert resumed['resume_state']['cur_nimg'] == straight['resume_state']['cur_nimg'] == 8 * K // 1
    _assert_same_state(straight, resumed)
    # Not vacuous: the second half changed the weights and both p's moved.
    assert not torch.equal(first['G'].mapping.fc0.weight, resumed['G'].mapping.fc0.weight)
    assert float(resumed['D'].chain_controller.p) == pytest.approx(0.05 * 2 * K)
    assert float(resumed['augment_pipe'].p) != float(first['augment_pipe'].p)
    with open(tmp_path / 'resumed' / 'log.txt') as f:
        assert 'Exact resume at kimg 0.012' in f.read()

#----------------------------------------------------------------------------

_KILL_SCRIPT = r'''
import io, json, os, pickle, sys, time
sys.path.insert(0, {tests!r}); sys.path.insert(0, {repo!r})
from test_train_support import tiny_config
from training.training_loop import training_loop
real_dump, calls = pickle.dump, [0]
def slow_dump(obj, f, *args, **kwargs):
    calls[0] += isinstance(obj, dict) and 'resume_state' in obj  # Count snapshot writes only.
    if calls[0] < 2 or not (isinstance(obj, dict) and 'resume_state' in obj):
        return real_dump(obj, f, *args, **kwargs)
    buf = io.BytesIO()                      # The second snapshot: write half of it, then hang.
    real_dump(obj, buf, *args, **kwargs)
    f.write(buf.getvalue()[: len(buf.getvalue()) // 2]); f.flush()
    open({marker!r}, 'w').close()
    time.sleep(600)
pickle.dump = slow_dump
c = tiny_config({run_dir!r}, {data!r}, total_kimg=0.1, image_snapshot_ticks=None)
training_loop(**c)
'''


def test_sigkill_during_snapshot_write_leaves_previous_snapshot_resumable(tmp_path, data_dir):
    run_dir, marker = tmp_path / 'run', tmp_path / 'writing'
    os.makedirs(run_dir)
    script = _KILL_SCRIPT.format(tests=TESTS_DIR, repo=REPO_ROOT, marker=str(marker), run_dir=str(run_dir), data=data_dir)
    proc = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while not marker.exists():
            assert proc.poll() is None, f'trainer exited early: {proc.stderr.read().decode()[-2000:]}'
            assert time.time() < deadline, 'the second snapshot write never started'
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    snapshot = run_dir / 'network-snapshot-000000.pkl'
    assert any(name.endswith('.tmp') for name in os.listdir(run_dir))  # The half-written file is aside.
    data = load_network_pkl(str(snapshot))
    assert data['resume_state']['cur_nimg'] == 4  # Tick 0's snapshot, intact.

    torch.manual_seed(0)
    c = tiny_config(tmp_path / 'resumed', data_dir, total_kimg=0.008, image_snapshot_ticks=None,
                    resume_pkl=str(snapshot))
    os.makedirs(c.run_dir)
    run = training_loop(**c)
    assert run.exact_resume and run.cur_nimg == 8

#----------------------------------------------------------------------------

def test_transfer_to_another_architecture_copies_matching_tensors_and_starts_fresh(tmp_path, data_dir, capsys):
    torch.manual_seed(0)
    src = tiny_config(tmp_path / 'src', data_dir, total_kimg=0.004, image_snapshot_ticks=None)
    os.makedirs(src.run_dir)
    training_loop(**src)
    pkl = str(tmp_path / 'src' / 'network-snapshot-000000.pkl')
    source = load_network_pkl(pkl)

    dst = tiny_config(tmp_path / 'dst', data_dir, resume_pkl=pkl, resume_kimg=2)
    dst.D_kwargs['channel_max'] = 8  # Narrower D: most D tensors change shape.
    dst.G_kwargs['mapping_kwargs'] = dict(num_layers=3)  # One more mapping layer in G.
    os.makedirs(dst.run_dir)
    capsys.readouterr()
    run = TrainingRun(dst)
    out = capsys.readouterr().out
    assert not run.exact_resume and run.cur_nimg == 2000 and run.batch_idx == 0
    assert 'Transfer' in out and 'mapping.fc2.weight' in out and 'b16.conv0.weight [16, 16, 3, 3]->[8, 8, 3, 3]' in out
    torch.testing.assert_close(run.G.mapping.fc0.weight, source['G'].mapping.fc0.weight)  # Same shape: copied.
    torch.testing.assert_close(run.G.synthesis.b32.torgb.weight, source['G'].synthesis.b32.torgb.weight)
    assert run.D.b16.conv0.weight.shape != source['D'].b16.conv0.weight.shape


def test_pickle_without_resume_state_transfers_with_fresh_schedule(tmp_path, data_dir):
    torch.manual_seed(0)
    src = tiny_config(tmp_path / 'src', data_dir, total_kimg=0.004, image_snapshot_ticks=None)
    os.makedirs(src.run_dir)
    training_loop(**src)
    data = load_network_pkl(str(tmp_path / 'src' / 'network-snapshot-000000.pkl'))
    del data['resume_state']  # Like an official snapshot: networks only.
    official_like = str(tmp_path / 'official-like.pkl')
    save_snapshot(official_like, data)
    run = TrainingRun(tiny_config(tmp_path, data_dir, resume_pkl=official_like))
    assert not run.exact_resume and run.cur_nimg == 0
    for name in ('G', 'D', 'G_ema'):
        for (key, a), b in zip(getattr(run, name).state_dict().items(), data[name].state_dict().values()):
            torch.testing.assert_close(a, b, msg=f'{name}.{key}')

#----------------------------------------------------------------------------
