"""The training loop on tiny CPU networks: run files with the official structure for every
augmentation mode with CHAIN off and on, the EMA half-life, gradient accumulation and the
lazy-regularisation optimiser settings, and the stop on non-finite losses."""
import copy
import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from test_train_support import augment_options, make_image_folder, tiny_config
from training.checkpoint import load_network_pkl
from training.loss import StyleGAN2Loss
from training.training_loop import GeneratorEMA, NonFiniteLossError, TrainingRun, training_loop

OFFICIAL_STATS = ['Progress/tick', 'Progress/kimg', 'Progress/augment', 'Timing/total_sec', 'Timing/sec_per_tick',
                  'Timing/sec_per_kimg', 'Timing/maintenance_sec', 'Resources/cpu_mem_gb', 'Loss/scores/real',
                  'Loss/scores/fake', 'Loss/signs/real', 'Loss/signs/fake', 'Loss/G/loss', 'Loss/D/loss',
                  'Loss/r1_penalty', 'Loss/D/reg', 'Loss/pl_penalty', 'Loss/G/reg', 'Diag/D/grad_norm']


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp('data'), num_images=12)

#----------------------------------------------------------------------------

def _read_stats(run_dir):
    with open(os.path.join(run_dir, 'stats.jsonl')) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize('aug,chain', [('noaug', None), ('fixed', 'running'), ('ada', 'batch'),
                                       ('diffaug', 'running'), ('diffaug', None)])
def test_each_augment_mode_writes_official_run_files_with_finite_losses(tmp_path, data_dir, aug, chain):
    torch.manual_seed(0)
    grids = (aug, chain) == ('diffaug', 'running')  # 1024-image grids cost time: check them in one case.
    c = tiny_config(tmp_path, data_dir, holdout_kwargs=None, image_snapshot_ticks=1 if grids else None,
                    **augment_options(aug))
    if chain is not None:
        c.D_kwargs['chain_kwargs'] = dict(variant=chain, dp=0.05, tau=-1.0)  # tau=-1: p must rise every D step.
        c.holdout_kwargs = dict(c.training_set_kwargs, holdout=4, split='holdout')
        c.training_set_kwargs = dict(c.training_set_kwargs, holdout=4)
    training_loop(**c)

    names = sorted(os.listdir(tmp_path))
    grid_names = ['reals.png', 'fakes_init.png', 'fakes000000.png']
    for expected in ['log.txt', 'stats.jsonl', 'network-snapshot-000000.pkl', 'curves.png'] + grids * grid_names:
        assert expected in names, f'{expected} missing from {names}'
    assert not [n for n in names if 'tmp' in n], f'temporary files left behind: {names}'

    # Grids: official layout, gw = clip(7680 // 32, 7, 32) = 32 by gh = clip(4320 // 32, 4, 32) = 32 tiles.
    for grid in grids * grid_names:
        with Image.open(tmp_path / grid) as im:
            assert im.size == (32 * 32, 32 * 32) and im.mode == 'L'

    # Two ticks: tick 0 after the first batch (as officially) and the final one.
    stats = _read_stats(tmp_path)
    assert [s['Progress/tick']['mean'] for s in stats] == [0, 1]
    assert stats[-1]['Progress/kimg']['mean'] == pytest.approx(0.008)
    for name in OFFICIAL_STATS:
        assert name in stats[-1], f'{name} missing from stats.jsonl'
    for name in ('Loss/G/loss', 'Loss/D/loss', 'Loss/r1_penalty'):
        assert all(math.isfinite(s[name]['mean']) for s in stats), name
    assert 'timestamp' in stats[-1]

    data = load_network_pkl(str(tmp_path / 'network-snapshot-000000.pkl'))
    assert {'training_set_kwargs', 'G', 'D', 'G_ema', 'augment_pipe', 'resume_state'} <= set(data)
    for name in ('G', 'D', 'G_ema'):
        assert not data[name].training
        assert all(t.device.type == 'cpu' for t in data[name].parameters())
    assert data['resume_state']['cur_nimg'] == 8
    pipe = data['augment_pipe']
    if aug in ('noaug', 'diffaug'):
        assert pipe is None  # DiffAugment has no state; official files hold None without ADA.
    elif aug == 'fixed':
        assert float(pipe.p) == pytest.approx(0.3)
        assert stats[-1]['Progress/augment']['mean'] == pytest.approx(0.3)
    else:  # ada, interval 1, speed 1 kimg: p moves by 4/1000 per batch from 0, clamped to [0, 1].
        assert float(pipe.p) in (pytest.approx(0.0), pytest.approx(0.004), pytest.approx(0.008))

    if chain is not None:
        # tau = -1 < r always, so p rose by dp at each of the 2 D steps.
        assert float(data['D'].chain_controller.p) == pytest.approx(0.1)
        assert stats[-1]['CHAIN/p']['mean'] == pytest.approx(0.1)
        assert 'CHAIN/r' in stats[-1] and 'Loss/D/0mr' in stats[-1]
        assert any(name.startswith('CHAIN/psi/b32.') for name in stats[-1])
        for name in ('Diag/D/real_train', 'Diag/D/real_holdout', 'Diag/D/fake'):
            assert math.isfinite(stats[-1][name]['mean']), name
    else:
        assert data['D'].chain_controller is None and 'CHAIN/p' not in stats[-1]

#----------------------------------------------------------------------------

def test_ema_follows_half_life_formula():
    torch.manual_seed(0)
    src, ema_module = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = copy.deepcopy(ema_module)
    ema = GeneratorEMA(ema_module, ema_kimg=0.05, ema_rampup=None)
    ema.update(src, cur_nimg=1000, batch_size=10)
    beta = 0.5 ** (10 / 50)  # Half-life of 50 images, 10 images per step.
    for p_ema, p_before, p_src in zip(ema_module.parameters(), before.parameters(), src.parameters()):
        torch.testing.assert_close(p_ema, beta * p_before + (1 - beta) * p_src)
    # Ramp-up: the half-life is capped at cur_nimg * ema_rampup.
    assert GeneratorEMA(ema_module, 10, 0.05).beta(cur_nimg=400, batch_size=4) == pytest.approx(0.5 ** (4 / 20))
    assert GeneratorEMA(ema_module, 10, 0.05).beta(cur_nimg=0, batch_size=4) == 0.0

#----------------------------------------------------------------------------

def test_lazy_regularisation_scales_adam_lr_and_betas(tmp_path, data_dir):
    c = tiny_config(tmp_path, data_dir, G_reg_interval=4, D_reg_interval=16, image_snapshot_ticks=None)
    run = TrainingRun(c)
    assert [p.name for p in run.phases] == ['Gmain', 'Greg', 'Dmain', 'Dreg']
    assert [p.interval for p in run.phases] == [1, 4, 1, 16]
    for name, k in [('G', 4), ('D', 16)]:
        group = run.optimizers[name].param_groups[0]
        assert group['lr'] == pytest.approx(0.002 * k / (k + 1))
        assert group['betas'][1] == pytest.approx(0.99 ** (k / (k + 1)))
    run = TrainingRun(tiny_config(tmp_path, data_dir, G_reg_interval=None, D_reg_interval=None))
    assert [p.name for p in run.phases] == ['Gboth', 'Dboth']
    assert run.optimizers['D'].param_groups[0]['lr'] == pytest.approx(0.002)

#----------------------------------------------------------------------------

class RecordingLoss(StyleGAN2Loss):
    """D's phase: loss = mean D(real); records the reals it was given (for the reference)."""
    seen = []

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        if phase == 'Dboth':
            RecordingLoss.seen.append((real_img.clone(), real_c.clone()))
            self.D(real_img, real_c).mean().mul(gain).backward()


def test_gradient_accumulation_averages_rounds_like_one_big_batch(tmp_path, data_dir):
    torch.manual_seed(0)
    RecordingLoss.seen = []
    c = tiny_config(tmp_path, data_dir, batch_size=8, batch_gpu=2, G_reg_interval=None, D_reg_interval=None,
                    image_snapshot_ticks=None, loss_kwargs=dict(class_name='test_training_loop.RecordingLoss'))
    c.D_kwargs['epilogue_kwargs'] = dict(mbstd_num_channels=0)  # Per-sample D, so rounds are independent.
    run = TrainingRun(c)
    assert run.num_rounds == 4
    D_before = copy.deepcopy(run.D)
    run.train_step()
    assert len(RecordingLoss.seen) == 4 and all(img.shape[0] == 2 for img, _ in RecordingLoss.seen)

    # Reference: the gradient of the mean over all 8 reals, in one pass through D's copy.
    img = torch.cat([img for img, _ in RecordingLoss.seen])
    cond = torch.cat([c for _, c in RecordingLoss.seen])
    D_before.requires_grad_(True)
    D_before(img, cond).mean().backward()
    for (name, p_ref), p in zip(D_before.named_parameters(), run.D.parameters()):
        if p_ref.grad is None:
            assert p.grad is None or float(p.grad.abs().max()) == 0, name
        else:
            torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-6, msg=name)

#----------------------------------------------------------------------------

class NaNAfterFirstStepLoss(StyleGAN2Loss):
    """The real loss for the first step, then a NaN loss in every phase."""

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        if cur_nimg == 0:
            return super().accumulate_gradients(phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg)
        module = self.G if phase.startswith('G') else self.D
        params = [p for p in module.parameters() if p.requires_grad]
        (sum(p.sum() for p in params) * float('nan')).backward()


def test_nonfinite_losses_for_a_whole_tick_stop_and_keep_last_good_snapshot(tmp_path, data_dir):
    torch.manual_seed(0)
    c = tiny_config(tmp_path, data_dir, total_kimg=0.1, image_snapshot_ticks=None,
                    loss_kwargs=dict(class_name='test_training_loop.NaNAfterFirstStepLoss', r1_gamma=1.0))
    with pytest.raises(NonFiniteLossError, match='non-finite.*last good snapshot is .*network-snapshot-000000.pkl'):
        training_loop(**c)
    data = load_network_pkl(str(tmp_path / 'network-snapshot-000000.pkl'))
    assert data['resume_state']['cur_nimg'] == 4  # Written at tick 0 (one batch), never overwritten after.
    assert all(torch.isfinite(t).all() for t in data['G'].parameters())

#----------------------------------------------------------------------------

def mean_colour_detector(img, return_features=True, **_):
    """A stand-in Inception: uint8 [N, 3, H, W] -> float32 [N, 3] per-channel means."""
    return img.float().mean(dim=[2, 3])


def test_metrics_at_snapshots_are_reported_to_jsonl(tmp_path, data_dir):
    torch.manual_seed(0)
    c = tiny_config(tmp_path, data_dir, total_kimg=0.004, image_snapshot_ticks=None, metrics=['fid5k_full'],
                    metric_kwargs=dict(detector=mean_colour_detector, num_gen=16, cache=False))
    training_loop(**c)
    with open(tmp_path / 'metric-fid5k_full.jsonl') as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) == 1 and lines[0]['snapshot_pkl'] == 'network-snapshot-000000.pkl'
    assert lines[0]['num_gen'] == 16 and math.isfinite(lines[0]['results']['fid5k_full'])
    assert os.path.exists(tmp_path / 'curves.png')

#----------------------------------------------------------------------------

#----------------------------------------------------------------------------

@pytest.mark.parametrize('n,batch,group', [(10, 4, 4), (10, 8, 4), (3, 4, 4), (12, 8, 4), (7, 2, 2), (9, 4, 1)])
def test_d_diagnostic_chunks_cover_the_set_in_sizes_minibatch_std_accepts(n, batch, group):
    from training.networks import Discriminator
    from training.training_loop import _eval_chunks
    D = Discriminator(c_dim=0, img_resolution=8, img_channels=1, channel_base=64, channel_max=8,
                      epilogue_kwargs=dict(mbstd_group_size=group))
    chunks = _eval_chunks(n, batch, D)
    covered = [i for start, size in chunks for i in range(start, start + size)]
    assert covered == list(range(n))  # Contiguous, in order, each image once.
    for _, size in chunks:
        assert size <= batch
        D(torch.zeros([size, 1, 8, 8]), None)  # Raises if minibatch-std cannot group this size.
