"""Helpers of benchmarks/gpu_check.sh: CUDA timings of the plugin path against the PyTorch
path, and the closing summary table.

`time`:  a G forward and a training step (Gmain + Dmain of StyleGAN2Loss with DiffAugment,
         Adam steps) at 256 px, batch 16, the lowshot network (channel_base 16384, mapping 2),
         once with the ops' default path (`impl='cuda'`: the CUDA plugins, built on first
         use) and once with every bias_act / upfirdn2d call forced to `impl='ref'` (PyTorch).
`table`: reads that JSON and the training run directories and prints the table.

    python3 benchmarks/fewshot/gpu_timing.py time --out /tmp/timing.json
    python3 benchmarks/fewshot/gpu_timing.py table --timing /tmp/timing.json --runs /tmp/gpu_check/runs
"""

import contextlib
import json
import os
import pathlib
import statistics
import sys
import time
from typing import Callable, Iterator, List

import click

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.fewshot import report  # noqa: E402

#----------------------------------------------------------------------------

@contextlib.contextmanager
def reference_ops() -> Iterator[None]:
    """Every bias_act and upfirdn2d call takes the PyTorch path (impl='ref') inside.

    The networks and the other ops look these functions up on their modules at call
    time, so replacing the module attributes reaches every call site.
    """
    from torch_utils.ops import bias_act, upfirdn2d
    originals = (bias_act.bias_act, upfirdn2d.upfirdn2d)
    bias_act.bias_act = lambda *args, **kwargs: originals[0](*args, **dict(kwargs, impl='ref'))
    upfirdn2d.upfirdn2d = lambda *args, **kwargs: originals[1](*args, **dict(kwargs, impl='ref'))
    try:
        yield
    finally:
        bias_act.bias_act, upfirdn2d.upfirdn2d = originals


def _median_seconds(fn: Callable[[], None], repeats: int) -> float:
    import torch
    fn()  # Warm-up: plugin build/load, cuDNN autotuning, allocations.
    fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _time_once(res: int, batch: int, repeats: int) -> dict:
    import torch
    from training.diffaug import DiffAugment
    from training.loss import StyleGAN2Loss
    from training.networks import Discriminator, Generator
    device = torch.device('cuda')
    torch.manual_seed(0)
    common = dict(c_dim=0, img_resolution=res, img_channels=3)
    net = dict(channel_base=16384, channel_max=512, num_fp16_res=4, conv_clamp=256)
    G = Generator(z_dim=512, w_dim=512, mapping_kwargs=dict(num_layers=2), synthesis_kwargs=net, **common).to(device)
    D = Discriminator(**net, **common).to(device)
    loss = StyleGAN2Loss(device, G, D, augment_pipe=DiffAugment('color,translation,cutout'))
    opt_G = torch.optim.Adam(G.parameters(), lr=0.002, betas=(0, 0.99))
    opt_D = torch.optim.Adam(D.parameters(), lr=0.002, betas=(0, 0.99))
    z = torch.randn([batch, 512], device=device)
    c = torch.zeros([batch, 0], device=device)
    reals = torch.rand([batch, 3, res, res], device=device) * 2 - 1

    def g_forward():
        with torch.no_grad():
            G(z, c)

    def train_step():
        for phase, module, opt in [('Gmain', G, opt_G), ('Dmain', D, opt_D)]:
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            loss.accumulate_gradients(phase=phase, real_img=reals, real_c=c, gen_z=z, gen_c=c, gain=1, cur_nimg=0)
            module.requires_grad_(False)
            opt.step()

    return dict(g_forward_sec=_median_seconds(g_forward, repeats), train_step_sec=_median_seconds(train_step, repeats))

#----------------------------------------------------------------------------

@click.group()
def cli():
    """GPU timing helpers of benchmarks/gpu_check.sh."""


@cli.command('time')
@click.option('--out', help='JSON file to write', required=True, metavar='FILE')
@click.option('--res', type=click.IntRange(min=4), default=256, show_default=True)
@click.option('--batch', type=click.IntRange(min=4), default=16, show_default=True)
@click.option('--repeats', type=click.IntRange(min=1), default=10, show_default=True)
def time_cmd(out: str, res: int, batch: int, repeats: int) -> None:
    """G forward and a Gmain+Dmain step, plugin path vs PyTorch path."""
    import torch
    if not torch.cuda.is_available():
        raise click.ClickException('no CUDA device is visible to PyTorch (torch.cuda.is_available() is False); '
                                   'run this on a machine with an NVIDIA GPU and a CUDA build of PyTorch')
    results = dict(res=res, batch=batch, repeats=repeats, gpu=torch.cuda.get_device_name(), torch=torch.__version__)
    results['plugin'] = _time_once(res, batch, repeats)
    with reference_ops():
        results['pytorch'] = _time_once(res, batch, repeats)
    report.write_text_atomic(out, json.dumps(results, indent=2) + '\n')
    print(json.dumps(results))


def _run_row(run_dir_parent: str, name: str) -> List[str]:
    history, wall = report.merged_stats(run_dir_parent)
    points = report.series(history, 'Timing/sec_per_kimg')[1:]  # Tick 0 is one step plus start-up.
    kimg = report._mean(history[-1], report.KIMG) if history else None  # pylint: disable=protected-access
    sec_per_kimg = statistics.median(v for _, v in points) if points else None
    return [name, '-' if kimg is None else f'{kimg:.2f}', '-' if sec_per_kimg is None else f'{sec_per_kimg:.1f}',
            report.format_duration(wall if history else None)]


@cli.command('table')
@click.option('--timing', help='JSON written by `time`', metavar='FILE')
@click.option('--runs', help='Folder with one sub-folder of train.py runs per method', metavar='DIR')
def table_cmd(timing: str, runs: str) -> None:
    """The closing summary of gpu_check.sh."""
    if timing and os.path.isfile(timing):
        with open(timing, 'rt') as f:
            t = json.load(f)
        print(f"\nOps timing at {t['res']} px, batch {t['batch']} on {t['gpu']} (median of {t['repeats']}):")
        print(f"| {'what':<22} | {'plugin s':>9} | {'PyTorch s':>9} | {'speed-up':>8} |")
        for key, label in [('g_forward_sec', 'G forward'), ('train_step_sec', 'Gmain+Dmain step')]:
            a, b = t['plugin'][key], t['pytorch'][key]
            print(f'| {label:<22} | {a:9.4f} | {b:9.4f} | {b / a:7.2f}x |')
    if runs and os.path.isdir(runs):
        print(f'\nTraining at 256 px on 100-shot-obama (time-boxed):')
        print(f"| {'method':<18} | {'kimg':>6} | {'s/kimg':>7} | {'wall':>8} |")
        for name in sorted(os.listdir(runs)):
            row = _run_row(os.path.join(runs, name), name)
            print(f'| {row[0]:<18} | {row[1]:>6} | {row[2]:>7} | {row[3]:>8} |')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    cli()

#----------------------------------------------------------------------------
