"""Shared helpers of the training tests (no tests here): tiny image folders and tiny configs."""
import os
import pathlib

import numpy as np
import torch
from PIL import Image

import dnnlib
from training.training_loop import training_config

# The tests' networks are tiny and the CPU is shared: several threads per op only spin and
# wait (measured here: 0.8 s per step with 1 thread, 9.7 s with 2 under load).
torch.set_num_threads(1)

#----------------------------------------------------------------------------

def make_image_folder(path: pathlib.Path, num_images: int = 12, resolution: int = 32, channels: int = 1,
                      seed: int = 0) -> str:
    """Write `num_images` random smooth PNGs (uint8, [H, W] or [H, W, 3]) into `path`."""
    rnd = np.random.RandomState(seed)
    os.makedirs(path, exist_ok=True)
    for i in range(num_images):
        low = rnd.rand(4, 4, channels) * 255  # Smooth blobs: upsampled noise.
        img = np.kron(low, np.ones([resolution // 4, resolution // 4, 1])).astype(np.uint8)
        Image.fromarray(img[:, :, 0] if channels == 1 else img).save(os.path.join(path, f'img{i:04d}.png'))
    return str(path)

#----------------------------------------------------------------------------

def tiny_config(run_dir: str, data: str, **overrides) -> dnnlib.EasyDict:
    """training_loop kwargs for a 32 px, few-thousand-parameter G/D pair on the CPU."""
    c = training_config(
        run_dir=str(run_dir),
        training_set_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path=data, use_labels=False,
                                 max_size=None, xflip=False, random_seed=0),
        data_loader_kwargs=dict(num_workers=0),
        G_kwargs=dict(class_name='training.networks.Generator', z_dim=16, w_dim=16,
                      mapping_kwargs=dict(num_layers=2),
                      synthesis_kwargs=dict(channel_base=256, channel_max=16, num_fp16_res=0, conv_clamp=None)),
        D_kwargs=dict(class_name='training.networks.Discriminator', channel_base=256, channel_max=16,
                      num_fp16_res=0, conv_clamp=None, block_kwargs={}, mapping_kwargs={},
                      epilogue_kwargs=dict(mbstd_group_size=2)),
        G_opt_kwargs=dict(class_name='torch.optim.Adam', lr=0.002, betas=[0, 0.99], eps=1e-8),
        D_opt_kwargs=dict(class_name='torch.optim.Adam', lr=0.002, betas=[0, 0.99], eps=1e-8),
        loss_kwargs=dict(class_name='training.loss.StyleGAN2Loss', r1_gamma=1.0),
        batch_size=4, batch_gpu=4, ema_kimg=0.01, ema_rampup=None,
        total_kimg=0.008, kimg_per_tick=0.004, image_snapshot_ticks=1, network_snapshot_ticks=1,
        device='cpu', random_seed=0)
    c.update(overrides)
    return c

#----------------------------------------------------------------------------

def augment_options(mode: str) -> dict:
    """training_loop kwargs for --aug noaug|fixed|ada|diffaug (as train.py builds them)."""
    if mode == 'noaug':
        return dict(augment_kwargs=None)
    if mode == 'diffaug':
        return dict(augment_kwargs=dict(class_name='training.diffaug.DiffAugment', policy='color,translation,cutout'))
    from training.augment import augpipe_specs
    pipe = dict(class_name='training.augment.AugmentPipe', **augpipe_specs['bgc'])
    if mode == 'fixed':
        return dict(augment_kwargs=pipe, augment_p=0.3)
    return dict(augment_kwargs=pipe, ada_target=0.6, ada_kimg=1, ada_interval=1)

#----------------------------------------------------------------------------
