"""Several processes with torch.distributed (gloo on the CPU): every rank ends with the same
weights, and `train.py --gpus 2 --device cpu` runs end to end."""
import os
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

import train
from test_train_support import augment_options, make_image_folder, tiny_config
from training.checkpoint import load_network_pkl

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rank_worker(rank, c, port, out_dir):
    """One rank through train.subprocess_fn (env + rendezvous + loop); saves its final tensors."""
    torch.set_num_threads(1)
    run = train.subprocess_fn(rank, c, port, rendezvous_timeout_s=60)
    state = {}
    for name in ('G', 'D', 'G_ema'):
        for key, value in getattr(run, name).state_dict().items():
            state[f'{name}.{key}'] = value.cpu()
    state['D.chain_controller.p'] = run.D.chain_controller.p.cpu()
    state['augment_pipe.p'] = run.augment_pipe.p.cpu()
    state['cur_nimg'] = torch.tensor(run.cur_nimg)
    torch.save(state, os.path.join(out_dir, f'rank{rank}.pt'))


def test_two_gloo_ranks_end_with_identical_weights(tmp_path):
    data = make_image_folder(tmp_path / 'data', num_images=16)
    run_dir = tmp_path / 'run'
    os.makedirs(run_dir)
    c = tiny_config(run_dir, data, num_gpus=2, batch_size=8, batch_gpu=4, total_kimg=0.024, kimg_per_tick=0.008,
                    image_snapshot_ticks=None, **dict(augment_options('ada'), ada_interval=1))
    c.D_kwargs['chain_kwargs'] = dict(variant='running', dp=0.05)
    mp.spawn(_rank_worker, args=(c, train._free_port(), str(tmp_path)), nprocs=2, join=True)

    ranks = [torch.load(tmp_path / f'rank{r}.pt') for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys()
    assert int(ranks[0]['cur_nimg']) == 24  # 3 steps of 8 images (4 per rank).
    # Buffers each rank tracks on its own batches are allowed to differ; everything else may not.
    local = ('mapping.w_avg', '.v_real', '.v_fake', '.u_real', '.u_fake_d', '.u_fake_g')
    compared = 0
    for key in ranks[0]:
        if key.endswith(local):
            continue
        torch.testing.assert_close(ranks[0][key], ranks[1][key], rtol=0, atol=0, msg=key)
        compared += 1
    assert compared > 50
    # The ranks saw different data: their locally tracked statistics differ.
    assert not torch.equal(ranks[0]['D.b32.conv0.chain.v_real'], ranks[1]['D.b32.conv0.chain.v_real'])
    # Training moved the weights away from the shared initialisation, identically on both.
    snapshot = load_network_pkl(str(run_dir / 'network-snapshot-000000.pkl'))
    torch.testing.assert_close(snapshot['G'].mapping.fc0.weight, ranks[1]['G.mapping.fc0.weight'], rtol=0, atol=0)


@pytest.mark.slow  # ~75 s on the shared CPU; the gloo test above covers the multi-rank logic by default.
def test_train_py_two_cpu_processes_end_to_end(tmp_path):
    data = make_image_folder(tmp_path / 'data', num_images=16)
    outdir = tmp_path / 'runs'
    args = [sys.executable, 'train.py', '--outdir', str(outdir), '--data', data, '--device', 'cpu', '--gpus', '2',
            '--metrics', 'none', '--workers', '0', '--cfg', 'stylegan2', '--cbase', '256', '--cmax', '16',
            '--map-depth', '1', '--batch', '8', '--aug', 'diffaug', '--kimg', '0.016', '--tick', '0.008',
            '--chain', 'running', '--snap', '1']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    (run_dir,) = outdir.iterdir()
    assert run_dir.name == '00000-data-stylegan2-kimg0.016-batch8-diffaug-chainrunning'
    data = load_network_pkl(str(run_dir / 'network-snapshot-000000.pkl'))
    assert data['resume_state']['cur_nimg'] == 16 and data['resume_state']['num_gpus'] == 2
    assert len(data['resume_state']['rng']) == 2  # Each rank's RNG state, for an exact resume.
    assert 'Number of GPUs:      2' in proc.stdout

#----------------------------------------------------------------------------

@pytest.mark.slow
def test_train_py_under_torchrun_two_cpu_processes(tmp_path):
    data = make_image_folder(tmp_path / 'data', num_images=16)
    outdir = tmp_path / 'runs'
    args = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_addr=127.0.0.1',
            f'--master_port={train._free_port()}', 'train.py', '--outdir', str(outdir), '--data', data,
            '--device', 'cpu', '--metrics', 'none', '--workers', '0', '--cfg', 'stylegan2', '--cbase', '256',
            '--cmax', '16', '--map-depth', '1', '--batch', '8', '--aug', 'noaug', '--kimg', '0.016', '--tick', '0.008']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    (run_dir,) = outdir.iterdir()  # Rank 0 made the one run directory; rank 1 got its name.
    data = load_network_pkl(str(run_dir / 'network-snapshot-000000.pkl'))
    assert data['resume_state']['num_gpus'] == 2 and data['resume_state']['cur_nimg'] == 16

#----------------------------------------------------------------------------
