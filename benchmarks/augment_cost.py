"""Cost of augmentation per batch against a discriminator training step (issue 4).

Times, per resolution, at a fixed batch size:
  - ADA `AugmentPipe` with the `bgc` preset at p = 0.5,
  - DiffAugment `color,translation,cutout`,
each forward only and forward + backward (the gradient reaches the input, as it does for
fakes and for R1), against a forward + backward of a StyleGAN2 `Discriminator` (resnet) at
the same size: the part of a D step that sees the augmented images. The default D is small
(channel_base 4096, channel_max 256, i.e. 1/4 to 1/8 of the lowshot/paper widths) so that
the CPU run takes minutes; the augmentation's share of a real (wider) D step is smaller. Reported: median and min seconds over the repeats, and the median as a
fraction of the D step.

    python3 benchmarks/augment_cost.py                      # CPU, 32/64/256 px, batch 16
    python3 benchmarks/augment_cost.py --device cuda --res 256,512 --out benchmarks/results/augment_cost_cuda.json

Writes JSON (with the command, versions and machine load) and a Markdown table beside it,
both atomically. Timings on a shared machine vary; the load average is recorded.
"""

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from training.augment import AugmentPipe, augpipe_specs  # pylint: disable=wrong-import-position
from training.diffaug import DiffAugment  # pylint: disable=wrong-import-position
from training.networks import Discriminator  # pylint: disable=wrong-import-position

#----------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)

def _time(fn: Callable[[], None], device: torch.device, repeats: int) -> List[float]:
    fn() # warm-up: allocations, lazy inits, probes
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times

def _aug_forward(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def fn():
        with torch.no_grad():
            module(x)
    return fn

def _aug_backward(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def fn():
        xg = x.detach().requires_grad_(True)
        module(xg).square().sum().backward()
    return fn

def _d_step(D: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    c = torch.zeros([x.shape[0], 0], device=x.device)
    def fn():
        D.zero_grad(set_to_none=True)
        torch.nn.functional.softplus(D(x, c)).mean().backward()
    return fn

#----------------------------------------------------------------------------

def _write_atomic(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix='.tmp')
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    os.replace(tmp, path)

def _markdown(report: dict) -> str:
    lines = [f'# Augmentation cost per batch ({report["device"]}, batch {report["batch"]}, '
             f'D channel_base {report["channel_base"]}, channel_max {report["channel_max"]})', '',
             f'Command: `{report["command"]}`', '',
             f'torch {report["torch"]}, {report["threads"]} threads, load average at start {report["loadavg_start"]}, '
             f'at end {report["loadavg_end"]}. Median (min) seconds over {report["repeats"]} runs; '
             f'"x D" = median / median of the D forward+backward at the same size.', '',
             '| res | what | median s | min s | x D |', '| --- | --- | --- | --- | --- |']
    for r in report['results']:
        lines.append(f'| {r["res"]} | {r["what"]} | {r["median_s"]:.4f} | {r["min_s"]:.4f} | {r["fraction_of_d_step"]:.3f} |')
    return '\n'.join(lines) + '\n'

#----------------------------------------------------------------------------

@click.command()
@click.option('--device', default='cpu', show_default=True, help='cpu, cuda, cuda:1, ...')
@click.option('--res', 'resolutions', default='32,64,256', show_default=True, help='Comma-separated resolutions.')
@click.option('--batch', type=click.IntRange(min=1), default=16, show_default=True, help='Images per batch.')
@click.option('--repeats', type=click.IntRange(min=1), default=3, show_default=True, help='Timed runs per item.')
@click.option('--channel-base', type=click.IntRange(min=1), default=4096, show_default=True, help='D channel_base (lowshot: 16384).')
@click.option('--channel-max', type=click.IntRange(min=1), default=256, show_default=True, help='D channel_max (official: 512).')
@click.option('--out', default='benchmarks/results/augment_cost_cpu.json', show_default=True, help='JSON result path (.md beside it).')
def main(device: str, resolutions: str, batch: int, repeats: int, channel_base: int, channel_max: int, out: str) -> None:
    """Time ADA (bgc, p = 0.5) and DiffAugment per batch against a D forward+backward."""
    try:
        res_list = [int(r) for r in resolutions.split(',') if r.strip()]
    except ValueError:
        raise click.BadParameter(f'expected comma-separated integers such as 32,64,256; got {resolutions!r}', param_hint='--res')
    dev = torch.device(device)
    torch.manual_seed(0)
    loadavg_start = os.getloadavg()
    results: List[Dict] = []
    for res in res_list:
        x = torch.rand([batch, 3, res, res], device=dev) * 2 - 1
        ada = AugmentPipe(**augpipe_specs['bgc']).to(dev)
        ada.p.fill_(0.5)
        da = DiffAugment('color,translation,cutout').to(dev)
        D = Discriminator(c_dim=0, img_resolution=res, img_channels=3, channel_base=channel_base,
                          channel_max=channel_max).to(dev)
        d_times = _time(_d_step(D, x), dev, repeats)
        items = [
            ('D forward+backward', d_times),
            ('ADA bgc p=0.5 forward', _time(_aug_forward(ada, x), dev, repeats)),
            ('ADA bgc p=0.5 forward+backward', _time(_aug_backward(ada, x), dev, repeats)),
            ('DiffAugment c,t,c forward', _time(_aug_forward(da, x), dev, repeats)),
            ('DiffAugment c,t,c forward+backward', _time(_aug_backward(da, x), dev, repeats)),
        ]
        d_median = statistics.median(d_times)
        for what, times in items:
            results.append(dict(res=res, what=what, median_s=statistics.median(times), min_s=min(times),
                                fraction_of_d_step=statistics.median(times) / d_median))
            print(f'{res:4d} px  {what:36s} median {statistics.median(times):8.4f} s  min {min(times):8.4f} s  '
                  f'x D {statistics.median(times) / d_median:6.3f}', flush=True)
    report = dict(
        command='python3 ' + ' '.join(sys.argv),
        device=str(dev) if dev.type != 'cuda' else torch.cuda.get_device_name(dev),
        batch=batch, repeats=repeats, channel_base=channel_base, channel_max=channel_max,
        torch=torch.__version__, python=platform.python_version(), threads=torch.get_num_threads(),
        cpu_count=os.cpu_count(), loadavg_start=[round(v, 2) for v in loadavg_start],
        loadavg_end=[round(v, 2) for v in os.getloadavg()],
        date=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), results=results)
    _write_atomic(out, json.dumps(report, indent=2) + '\n')
    _write_atomic(os.path.splitext(out)[0] + '.md', _markdown(report))
    print(f'wrote {out}')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main() # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
