"""Benchmark: D's weight-gradient norm with CHAIN vs without (Ni & Koniusz, CVPR 2024, Fig. 1/5).

The CHAIN paper claims that CHAIN lowers the discriminator's weight-gradient norm. This
script measures it on a tiny 32 px StyleGAN2 pair, on the same data and the same
initialisation for every configuration:

1. at initialisation: ||grad_theta L_D|| of D's main loss (softplus on fakes and reals,
   plus 0MR with CHAIN) over several seeds and batches, CHAIN at p = 1;
2. during a short training run (Gmain, Dmain, lazy R1 every 16 steps), D's main-step
   gradient norm averaged over the second half of the run, CHAIN at p = 1 (dp = 0).

Each CHAIN variant is measured with its 0MR term (lambda 20) and without it (ARMS alone),
since at p = 1 the 0MR gradient can dominate.

Real images: ../shared/datasets/100-shot-obama resized to 32 px (read in place, never
copied), or --data DIR. Results go to benchmarks/results/chain_grad_norm.{json,md}
together with the command that produced them.

    python3 benchmarks/chain_grad_norm.py --seeds 3 --steps 150
"""

import copy
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

import click
import numpy as np
import PIL.Image
import torch

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from training.chain import d_weight_grad_norm          # noqa: E402
from training.diffaug import DiffAugment                # noqa: E402
from training.loss import StyleGAN2Loss                 # noqa: E402
from training.networks import Discriminator, Generator  # noqa: E402

RES = 32

#----------------------------------------------------------------------------

def load_images(data_dir: pathlib.Path, max_images: int) -> torch.Tensor:
    """Images of a folder, resized to RES px: float32 [N, 3, RES, RES] in [-1, 1]."""
    files = sorted(p for p in data_dir.iterdir() if p.suffix.lower() in ('.jpg', '.jpeg', '.png', '.webp'))
    if not files:
        raise click.ClickException(f'--data {data_dir}: no images found (expected .jpg/.png files); '
            'pass a folder of images, e.g. ../shared/datasets/100-shot-obama')
    arrays = []
    for path in files[:max_images]:
        with PIL.Image.open(path) as image:
            image = image.convert('RGB').resize((RES, RES), PIL.Image.LANCZOS)
            arrays.append(np.asarray(image).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(arrays)).float() / 127.5 - 1

#----------------------------------------------------------------------------

def make_nets(seed: int, chain_kwargs):
    """The same G and D weights for a given seed, whatever chain_kwargs (CHAIN adds no parameters)."""
    torch.manual_seed(seed)
    G = Generator(z_dim=64, c_dim=0, w_dim=64, img_resolution=RES, img_channels=3,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=1024, channel_max=64))
    D = Discriminator(c_dim=0, img_resolution=RES, img_channels=3, channel_base=1024, channel_max=64,
        chain_kwargs=chain_kwargs, epilogue_kwargs=dict(mbstd_group_size=4))
    return G, D

CONFIGS = {
    'no_chain':          None,
    'batch_p1':          dict(variant='batch', dp=0.0),
    'running_p1':        dict(variant='running', dp=0.0),
    # ARMS alone: the same at p = 1 without the 0MR term, to separate the two parts.
    'batch_p1_no0mr':    dict(variant='batch', dp=0.0, lambda_0mr=0.0),
    'running_p1_no0mr':  dict(variant='running', dp=0.0, lambda_0mr=0.0),
}

def _set_fixed_p(D, name):
    if D.chain_controller is not None and '_p1' in name:
        D.chain_controller.p.fill_(1.0)

#----------------------------------------------------------------------------

def dmain_grad_norm(loss: StyleGAN2Loss, D, G, reals, z, gain=1.0) -> float:
    for p in list(G.parameters()) + list(D.parameters()):
        p.grad = None
    loss.accumulate_gradients('Dmain', real_img=reals, real_c=torch.zeros([len(reals), 0]), gen_z=z,
        gen_c=torch.zeros([len(z), 0]), gain=gain, cur_nimg=0)
    return d_weight_grad_norm(D)

def measure_at_init(images, seeds, batches, batch_size, warmup):
    """{config: [norm per (seed, batch)]}; the same batches and RNG states for every config."""
    result = {name: [] for name in CONFIGS}
    for seed in seeds:
        for name in result:
            G, D = make_nets(seed, CONFIGS[name])
            _set_fixed_p(D, name)
            loss = StyleGAN2Loss('cpu', G, D, augment_pipe=DiffAugment(), r1_gamma=0, pl_weight=0)
            gen = torch.Generator().manual_seed(1000 + seed)
            for b in range(warmup + batches):
                idx = torch.randint(len(images), [batch_size], generator=gen)
                z = torch.randn([batch_size, G.z_dim], generator=gen)
                torch.manual_seed(seed * 100 + b)  # Same augmentations, noise and masks across configs.
                norm = dmain_grad_norm(loss, D, G, images[idx], z)
                if b >= warmup:  # Warm-up batches fill the running statistics.
                    result[name].append(norm)
    return result

def train_run(images, seed, name, steps, batch_size, r1_gamma):
    """Short training; returns D's main-step weight-gradient norm at every step, and final p."""
    G, D = make_nets(seed, CONFIGS[name])
    _set_fixed_p(D, name)
    loss = StyleGAN2Loss('cpu', G, D, augment_pipe=DiffAugment(), r1_gamma=r1_gamma, pl_weight=0)
    opt_G = torch.optim.Adam(G.parameters(), lr=0.002, betas=(0.0, 0.99), eps=1e-8)
    mb = 16 / 17  # Lazy R1 every 16 steps: lr and betas adjusted as in StyleGAN2.
    opt_D = torch.optim.Adam(D.parameters(), lr=0.002 * mb, betas=(0.0, 0.99 ** mb), eps=1e-8)
    gen = torch.Generator().manual_seed(2000 + seed)
    torch.manual_seed(seed)
    norms = []
    c = torch.zeros([batch_size, 0])
    for step in range(steps):
        idx = torch.randint(len(images), [batch_size], generator=gen)
        reals = images[idx]
        z = torch.randn([batch_size, G.z_dim], generator=gen)
        # G step.
        for p in G.parameters():
            p.grad = None
        loss.accumulate_gradients('Gmain', real_img=reals, real_c=c, gen_z=z, gen_c=c, gain=1, cur_nimg=0)
        opt_G.step()
        # D step (its gradient norm is the measurement), then lazy R1.
        norms.append(dmain_grad_norm(loss, D, G, reals, z))
        opt_D.step()
        if D.chain_controller is not None:
            D.chain_controller.step(cur_nimg=(step + 1) * batch_size)
        if step % 16 == 0 and r1_gamma > 0:
            for p in D.parameters():
                p.grad = None
            loss.accumulate_gradients('Dreg', real_img=reals, real_c=c, gen_z=z, gen_c=c, gain=16, cur_nimg=0)
            opt_D.step()
    p = None if D.chain_controller is None else float(D.chain_controller.p)
    return norms, p

#----------------------------------------------------------------------------

def _summary(values):
    return dict(mean=statistics.fmean(values), std=statistics.pstdev(values), n=len(values))

def _write_atomic(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix='.tmp')
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    os.replace(tmp, path)

@click.command()
@click.option('--data', type=click.Path(file_okay=False, path_type=pathlib.Path),
    default=REPO_ROOT.parent / 'shared' / 'datasets' / '100-shot-obama', show_default=True, help='Folder of images.')
@click.option('--seeds', type=click.IntRange(min=1), default=3, show_default=True, help='Initialisations.')
@click.option('--init-batches', type=click.IntRange(min=1), default=4, show_default=True, help='Batches per seed at init.')
@click.option('--steps', type=click.IntRange(min=0), default=150, show_default=True, help='Training steps per run (0 = skip).')
@click.option('--batch', 'batch_size', type=click.IntRange(min=4), default=8, show_default=True, help='Batch size.')
@click.option('--r1-gamma', type=click.FloatRange(min=0), default=0.1, show_default=True, help='R1 weight in training.')
@click.option('--out', type=click.Path(dir_okay=False, path_type=pathlib.Path),
    default=REPO_ROOT / 'benchmarks' / 'results' / 'chain_grad_norm.json', show_default=True, help='JSON result.')
def main(data, seeds, init_batches, steps, batch_size, r1_gamma, out):
    """Measure D's weight-gradient norm with and without CHAIN."""
    torch.set_num_threads(1)
    if not data.is_dir():
        raise click.ClickException(f'--data {data}: not a folder; pass a folder of images '
            '(the default is ../shared/datasets/100-shot-obama beside the checkout)')
    command = 'python3 benchmarks/chain_grad_norm.py ' + ' '.join(sys.argv[1:])
    images = load_images(data, max_images=100)
    seed_list = list(range(seeds))
    t0 = time.time()

    init = measure_at_init(images, seed_list, init_batches, batch_size, warmup=8)
    print('at init:', {k: round(statistics.fmean(v), 4) for k, v in init.items()}, flush=True)

    training = {}
    for name in CONFIGS if steps > 0 else []:
        runs = []
        for seed in seed_list:
            norms, p = train_run(images, seed, name, steps, batch_size, r1_gamma)
            runs.append(dict(seed=seed, second_half_mean=statistics.fmean(norms[steps // 2:]), final_p=p,
                curve=[round(v, 5) for v in norms]))
            print(f'train {name} seed {seed}: second-half mean {runs[-1]["second_half_mean"]:.4f} p={p}', flush=True)
        training[name] = dict(runs=runs, summary=_summary([r['second_half_mean'] for r in runs]))

    result = dict(
        command=command, torch=torch.__version__, seconds=round(time.time() - t0, 1),
        setup=dict(resolution=RES, data=str(data.name), num_images=len(images), batch=batch_size, seeds=seeds,
            init_batches=init_batches, steps=steps, r1_gamma=r1_gamma, augment='DiffAugment color,translation,cutout',
            D='resnet, channel_base 1024, channel_max 64, mbstd 4', configs=CONFIGS),
        at_init={name: dict(summary=_summary(v), values=[round(x, 6) for x in v]) for name, v in init.items()},
        training=training)
    # Per-sample ratios to no_chain (same seed and batch), the robustness check.
    for name, entry in result['at_init'].items():
        ratios = [a / b for a, b in zip(init[name], init['no_chain'])]
        entry['ratio_to_no_chain'] = dict(min=min(ratios), max=max(ratios), mean=statistics.fmean(ratios))
    for name, entry in training.items():
        ratios = [a['second_half_mean'] / b['second_half_mean'] for a, b in
            zip(entry['runs'], training['no_chain']['runs'])]
        entry['ratio_to_no_chain'] = dict(min=min(ratios), max=max(ratios), mean=statistics.fmean(ratios))
    _write_atomic(out, json.dumps(result, indent=1) + '\n')
    _write_atomic(out.with_suffix('.md'), _markdown(result))
    print(f'wrote {out} and {out.with_suffix(".md")} in {result["seconds"]} s')

def _markdown(result) -> str:
    lines = ['# D weight-gradient norm with and without CHAIN', '', f'Command: `{result["command"]}`',
        f'(torch {result["torch"]}, CPU, {result["seconds"]} s). Setup: {json.dumps(result["setup"])}', '',
        '## At initialisation (D main loss incl. 0MR; per seed and batch, same data and weights)', '',
        '| config | mean | std | n | ratio to no_chain (min / mean / max) |', '|---|---|---|---|---|']
    for name, entry in result['at_init'].items():
        s, r = entry['summary'], entry['ratio_to_no_chain']
        lines.append(f'| {name} | {s["mean"]:.4f} | {s["std"]:.4f} | {s["n"]} | '
            f'{r["min"]:.3f} / {r["mean"]:.3f} / {r["max"]:.3f} |')
    if result['training']:
        lines += ['', f'## Training, {result["setup"]["steps"]} steps: mean D main-step norm over the second half', '',
            '| config | mean over seeds | std | ratio to no_chain (min / mean / max) | final p |', '|---|---|---|---|---|']
        for name, entry in result['training'].items():
            s, r = entry['summary'], entry['ratio_to_no_chain']
            ps = [run['final_p'] for run in entry['runs']]
            lines.append(f'| {name} | {s["mean"]:.4f} | {s["std"]:.4f} | {r["min"]:.3f} / {r["mean"]:.3f} / '
                f'{r["max"]:.3f} | {ps} |')
    return '\n'.join(lines) + '\n'

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
