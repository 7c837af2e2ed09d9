"""CPU speed of StyleGAN2 (paper256 channels, fp32): G forward and one full training step.

Issue 2's benchmark. For each resolution it runs, each in a fresh subprocess (so that the
peak RSS belongs to that configuration alone):

- `gforward`: G(z) with no gradient, batch 8, noise 'random';
- `train`: one training step as the loop does it: Gmain (G+D forward/backward on a fake
  batch), Dmain (D forward/backward on a fake and a real batch), each followed by an Adam
  step, plus the R1 pass (Dreg: D forward on reals, input gradient, double backward)
  timed separately and amortised as every 16th step (lazy regularisation). Path-length
  regularisation is off (pl_weight 0), as in the reference measurement.

and reports images/s, GFLOP per image (torch.utils.flop_counter; a
multiply-add is 2 FLOPs; FlopCounterMode's formulas), achieved GFLOP/s, this machine's sgemm GFLOP/s measured in the
same process just before (2048x2048 torch.mm), and the peak RSS.

Usage:
    python3 benchmarks/cpu_speed.py                               # 64,128,256 px, both modes
    python3 benchmarks/cpu_speed.py --res 64 --modes train --repeats 2
    python3 benchmarks/cpu_speed.py --res 64 --modes gforward --profile   # + torch.profiler table

Results go to benchmarks/results/cpu_speed.json (atomic write) with the exact command,
the torch version and the machine's CPU count; `--out` chooses another file.
"""

import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List

import click

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, 'benchmarks', 'results', 'cpu_speed.json')
R1_INTERVAL = 16

#----------------------------------------------------------------------------

def _timed(fn: Callable[[], None], repeats: int) -> List[float]:
    """Seconds per call for `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times

def _flops(fn: Callable[[], None]) -> float:
    """FLOPs of one call of fn, by torch.utils.flop_counter's per-op formulas.

    FlopCounterMode itself also tracks modules with autograd hooks, which PyTorch refuses
    inside torch.autograd.grad (the R1 pass); its op formulas (flop_registry) are applied
    here by a minimal dispatch mode instead, which gives the same totals.
    """
    import torch
    from torch.utils import flop_counter
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Counter(TorchDispatchMode):
        total = 0
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_counter.flop_registry.get(func._overloadpacket)
            if formula is not None:
                _Counter.total += formula(*args, **kwargs, out_val=out)
            return out

    with _Counter():
        fn()
    return float(_Counter.total)

def _sgemm_gflops() -> float:
    import torch
    a = torch.randn(2048, 2048)
    b = torch.randn(2048, 2048)
    best = min(_timed(lambda: torch.mm(a, b), 5))
    return 2 * 2048 ** 3 / best / 1e9

def _build(res: int):
    """paper256 channels (channel_base 16384, channel_max 512), 8 mapping layers, fp32."""
    import torch
    from training.networks import Discriminator, Generator
    torch.manual_seed(0)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3,
                  mapping_kwargs=dict(num_layers=8),
                  synthesis_kwargs=dict(channel_base=16384, channel_max=512, num_fp16_res=0, conv_clamp=None))
    D = Discriminator(c_dim=0, img_resolution=res, img_channels=3, channel_base=16384, channel_max=512,
                      num_fp16_res=0, conv_clamp=None, epilogue_kwargs=dict(mbstd_group_size=8))
    return G, D

#----------------------------------------------------------------------------

def _worker(res: int, mode: str, batch: int, repeats: int, threads: int, profile: bool) -> Dict:
    """One configuration in this process; returns the measurements."""
    import torch
    torch.set_num_threads(threads)
    sgemm = _sgemm_gflops()
    G, D = _build(res)
    z = torch.randn(batch, 512)
    c = torch.zeros(batch, 0)
    result = dict(res=res, mode=mode, batch=batch, threads=threads, repeats=repeats, sgemm_gflops=sgemm)

    if mode == 'gforward':
        G.eval()
        def step():
            with torch.no_grad():
                G(z, c, noise_mode='random')
        flops = _flops(step)
        times = _timed(step, repeats)
        sec = min(times)
        phases = None
    else:
        from training.loss import StyleGAN2Loss
        loss = StyleGAN2Loss(torch.device('cpu'), G, D, r1_gamma=1.0, pl_weight=0, style_mixing_prob=0.9)
        opt_G = torch.optim.Adam(G.parameters(), lr=0.0025, betas=(0.0, 0.99), eps=1e-8)
        opt_D = torch.optim.Adam(D.parameters(), lr=0.0025, betas=(0.0, 0.99), eps=1e-8)
        real = torch.rand(batch, 3, res, res) * 2 - 1
        def phase(name, opt):
            def run():
                opt.zero_grad(set_to_none=True)
                loss.accumulate_gradients(name, real, c, torch.randn(batch, 512), c, gain=1.0, cur_nimg=0)
                opt.step()
            return run
        main = [phase('Gmain', opt_G), phase('Dmain', opt_D)]
        reg = phase('Dreg', opt_D)
        def main_step():
            for fn in main:
                fn()
        flops_main = _flops(main_step)
        flops_reg = _flops(reg)
        times_main = _timed(main_step, repeats)
        times_reg = _timed(reg, max(1, repeats // 2))
        flops = flops_main + flops_reg / R1_INTERVAL
        sec = min(times_main) + min(times_reg) / R1_INTERVAL
        phases = dict(main_sec=min(times_main), r1_sec=min(times_reg), main_gflop=flops_main / 1e9,
                      r1_gflop=flops_reg / 1e9)
        step = main_step

    if profile:
        from torch.profiler import ProfilerActivity, profile as torch_profile
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        result['profile'] = prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=25)

    result.update(
        sec_per_step=sec, all_times=times if mode == 'gforward' else times_main,
        images_per_sec=batch / sec, gflop_per_image=flops / batch / 1e9,
        achieved_gflops=flops / sec / 1e9, fraction_of_sgemm=flops / sec / 1e9 / sgemm,
        peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, phases=phases)
    return result

#----------------------------------------------------------------------------

def _write_json_atomic(path: str, data) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix='.tmp')
    with os.fdopen(fd, 'w') as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)

def _parse_res(value: str) -> List[int]:
    try:
        res = [int(v) for v in value.split(',') if v.strip()]
    except ValueError:
        raise click.BadParameter(f'expected comma-separated powers of two like 64,128,256, got {value!r}') from None
    if not res or any(r < 4 or r & (r - 1) for r in res):
        raise click.BadParameter(f'expected comma-separated powers of two >= 4 like 64,128,256, got {value!r}')
    return res

@click.command()
@click.option('--res', 'res_list', default='64,128,256', show_default=True, help='Resolutions, comma-separated.')
@click.option('--modes', default='gforward,train', show_default=True, help='gforward and/or train, comma-separated.')
@click.option('--batch', default=8, show_default=True, type=click.IntRange(min=1), help='Batch size.')
@click.option('--repeats', default=3, show_default=True, type=click.IntRange(min=1), help='Timed repetitions (best is kept).')
@click.option('--threads', default=2, show_default=True, type=click.IntRange(min=1), help='torch.set_num_threads.')
@click.option('--profile', is_flag=True, help='Add a torch.profiler table (top ops by self CPU time) per config.')
@click.option('--out', default=DEFAULT_OUT, show_default=True, help='Result JSON file.')
@click.option('--note', default='', help='Free text stored with the results (e.g. "machine shared with 7 jobs").')
@click.option('--worker', is_flag=True, hidden=True)
def main(res_list, modes, batch, repeats, threads, profile, out, note, worker):
    """Measure G forward and training-step speed on this CPU (see the module docstring)."""
    resolutions = _parse_res(res_list)
    mode_list = [m.strip() for m in modes.split(',') if m.strip()]
    bad = [m for m in mode_list if m not in ('gforward', 'train')]
    if bad or not mode_list:
        raise click.BadParameter(f'--modes takes gforward and/or train, got {modes!r}')
    if worker:
        sys.path.insert(0, REPO_ROOT)
        print(json.dumps(_worker(resolutions[0], mode_list[0], batch, repeats, threads, profile)))
        return

    import torch
    runs = []
    for res in resolutions:
        for mode in mode_list:
            cmd = [sys.executable, os.path.abspath(__file__), '--worker', '--res', str(res), '--modes', mode,
                   '--batch', str(batch), '--repeats', str(repeats), '--threads', str(threads)] + \
                  (['--profile'] if profile else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
            if proc.returncode != 0:
                print(f'{mode} at {res} px failed:\n{proc.stderr[-3000:]}', file=sys.stderr)
                runs.append(dict(res=res, mode=mode, error=proc.stderr[-3000:]))
            else:
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                runs.append(r)
                print(f"{mode:8s} {res:4d}px: {r['images_per_sec']:.3f} img/s, {r['gflop_per_image']:.1f} GFLOP/img, "
                      f"{r['achieved_gflops']:.1f} GFLOP/s = {100 * r['fraction_of_sgemm']:.0f}% of sgemm "
                      f"({r['sgemm_gflops']:.0f}), peak RSS {r['peak_rss_gb']:.2f} GB", flush=True)
                if profile:
                    print(r['profile'])
            # Written after every configuration, so a long run that is stopped keeps what it measured.
            data = dict(command='python3 ' + shlex.join([os.path.relpath(os.path.abspath(__file__), REPO_ROOT)] + sys.argv[1:]),
                        torch_version=torch.__version__, cpu_count=os.cpu_count(),
                        load_average=os.getloadavg(), date_utc=time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime()),
                        note=note, runs=runs)
            _write_json_atomic(out, data)
    print(f'wrote {out}')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
