"""GPU check of the CUDA plugins against the PyTorch paths: values, first- and second-order
gradients, and speed, for bias_act (every activation, with/without bias, gain, clamp) and
upfirdn2d (up/down/padding/filter shapes, upsample2d/downsample2d/filter2d).

Usage (on a machine with CUDA, nvcc and ninja; the plugins are built on first use):
    python3 benchmarks/gpu_ops_check.py                  # float32 and float16, full table
    python3 benchmarks/gpu_ops_check.py --quick --dtypes float32
    python3 benchmarks/gpu_ops_check.py --require-cuda   # exit 2 (not 0) when there is no GPU

Prints one row per case (max abs error of y, dy/dx, d(dy/dx)/dx, and both timings) and
exits 1 if any case exceeds its tolerance or the plugin could not be built. Without CUDA it
says so and exits 0 (or 2 with --require-cuda).
"""

import sys
import time
from typing import Callable, List

import click
import torch

#----------------------------------------------------------------------------

TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-2, torch.float64: 1e-9}

def _time_ms(fn: Callable[[], torch.Tensor], iters: int) -> float:
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters * 1e3

def _grads(op: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, seed: int):
    """(y, dL/dx, d(sum (dL/dx)^2)/dx) for L = sum(y * r) with a fixed random r."""
    x = x.detach().requires_grad_()
    y = op(x)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    r = torch.randn(y.shape, device=x.device, dtype=y.dtype, generator=gen)
    g, = torch.autograd.grad((y * r).sum(), x, create_graph=True)
    gg = None
    if g.requires_grad:  # else dy/dx is constant (linear ops) and the second order is 0
        gg, = torch.autograd.grad(g.float().square().sum(), x, allow_unused=True)
    if gg is None:
        gg = torch.zeros_like(x)
    return y.detach(), g.detach(), gg.detach()

def _compare(name: str, plugin_op, torch_op, x: torch.Tensor, iters: int, rows: List, scale_tol: float = 1.0) -> bool:
    outs_p = _grads(plugin_op, x, 1)
    outs_t = _grads(torch_op, x, 1)
    errs = []
    for a, b in zip(outs_p, outs_t):
        denom = max(float(b.float().abs().max()), 1.0)
        errs.append(float((a.float() - b.float()).abs().max()) / denom)
    tol = TOLERANCE[x.dtype] * scale_tol
    ok = all(e <= tol for e in errs)
    t_p = _time_ms(lambda: plugin_op(x), iters)
    t_t = _time_ms(lambda: torch_op(x), iters)
    rows.append((name, str(x.dtype).replace('torch.', ''), *errs, t_p, t_t, 'ok' if ok else 'MISMATCH'))
    return ok

#----------------------------------------------------------------------------

def _bias_act_cases(quick: bool):
    from torch_utils.ops import bias_act
    acts = ['linear', 'lrelu', 'tanh', 'swish'] if quick else sorted(bias_act.activation_funcs)
    shapes = [([8, 512, 32, 32], 1)] if quick else [([8, 512, 32, 32], 1), ([4, 64, 256, 256], 1), ([64, 512], 1),
                                                    ([3, 5, 7], 2)]
    for act in acts:
        for shape, dim in shapes:
            for use_b, gain, clamp in [(True, None, None), (True, 0.5, 256.0), (False, None, 1.0)]:
                yield act, shape, dim, use_b, gain, clamp

def check_bias_act(dtypes, quick: bool, iters: int, rows: List) -> bool:
    from torch_utils.ops import bias_act
    ok = True
    for dtype in dtypes:
        for act, shape, dim, use_b, gain, clamp in _bias_act_cases(quick):
            torch.manual_seed(0)
            x = torch.randn(shape, device='cuda', dtype=dtype) * 2
            b = torch.randn(shape[dim], device='cuda', dtype=dtype) if use_b else None
            kw = dict(b=b, dim=dim, act=act, gain=gain, clamp=clamp)
            name = f'bias_act {act} {shape} dim{dim} b={use_b} gain={gain} clamp={clamp}'
            ok &= _compare(name, lambda t: bias_act.bias_act(t, impl='cuda', **kw),
                           lambda t: bias_act.bias_act(t, impl='ref', **kw), x, iters, rows)
    return ok

def check_upfirdn2d(dtypes, quick: bool, iters: int, rows: List) -> bool:
    from torch_utils.ops import upfirdn2d
    ok = True
    filters = {'[1,3,3,1]': upfirdn2d.setup_filter([1, 3, 3, 1], device='cuda'),
               '12-tap separable': upfirdn2d.setup_filter(torch.arange(1, 13).float(), device='cuda'),
               'random 3x5': torch.randn(3, 5, device='cuda')}
    cases = [('upsample2d', dict(up=2)), ('downsample2d', dict(down=2)), ('filter2d', dict()),
             ('upfirdn2d', dict(up=2, down=1, padding=[2, 1, 1, 2])), ('upfirdn2d', dict(up=[3, 1], down=[1, 2], padding=[1, 0, 2, -1])),
             ('upfirdn2d', dict(up=4, down=2, padding=3)), ('upfirdn2d', dict(up=1, down=4, padding=[0, 3, 3, 0], flip_filter=True))]
    shapes = [[8, 64, 128, 128]] if quick else [[8, 64, 128, 128], [4, 3, 256, 256], [16, 512, 8, 8], [2, 5, 7, 9]]
    for dtype in dtypes:
        for fname, f in filters.items():
            for op_name, kw in cases:
                for shape in shapes:
                    torch.manual_seed(0)
                    x = torch.randn(shape, device='cuda', dtype=dtype)
                    op = getattr(upfirdn2d, op_name)
                    try:
                        op(x, f, impl='ref', **kw)
                    except ValueError:
                        continue  # this filter leaves no output on this shape
                    name = f'{op_name} {fname} {kw} {shape}'
                    ok &= _compare(name, lambda t: op(t, f, impl='cuda', **kw), lambda t: op(t, f, impl='ref', **kw),
                                   x, iters, rows, scale_tol=10.0 if dtype == torch.float16 else 1.0)
    return ok

#----------------------------------------------------------------------------

def _print_table(rows: List) -> None:
    header = ('case', 'dtype', 'err y', 'err dx', 'err ddx', 'plugin ms', 'torch ms', 'result')
    print(f'{header[0]:70s} {header[1]:8s} {header[2]:>9s} {header[3]:>9s} {header[4]:>9s} {header[5]:>10s} {header[6]:>9s}  {header[7]}')
    for r in rows:
        print(f'{r[0][:70]:70s} {r[1]:8s} {r[2]:9.2e} {r[3]:9.2e} {r[4]:9.2e} {r[5]:10.3f} {r[6]:9.3f}  {r[7]}')

@click.command()
@click.option('--dtypes', default='float32,float16', show_default=True, help='Comma-separated: float16, float32, float64.')
@click.option('--quick', is_flag=True, help='A few cases per op instead of the full grid.')
@click.option('--iters', default=20, show_default=True, type=click.IntRange(min=1), help='Timing iterations per case.')
@click.option('--require-cuda', is_flag=True, help='Exit 2 (instead of 0) when no CUDA device is present.')
def main(dtypes: str, quick: bool, iters: int, require_cuda: bool):
    """Compare the CUDA plugins with the PyTorch paths (values, 1st/2nd-order grads, speed)."""
    names = [d.strip() for d in dtypes.split(',') if d.strip()]
    bad = [d for d in names if d not in ('float16', 'float32', 'float64')]
    if bad or not names:
        raise click.BadParameter(f'--dtypes takes float16, float32 and/or float64, got {dtypes!r}')
    dtype_list = [getattr(torch, d) for d in names]
    if not torch.cuda.is_available():
        print('gpu_ops_check: SKIPPED: no CUDA device (torch.cuda.is_available() is False); nothing was compared.')
        sys.exit(2 if require_cuda else 0)

    import os
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from torch_utils.ops import bias_act, upfirdn2d
    if bias_act._cuda_kernel() is None or upfirdn2d._cuda_kernel() is None:  # pylint: disable=protected-access
        print('gpu_ops_check: FAILED: a CUDA plugin could not be built (see the warning above).')
        sys.exit(1)
    rows: List = []
    ok = check_bias_act(dtype_list, quick, iters, rows)
    ok &= check_upfirdn2d(dtype_list, quick, iters, rows)
    _print_table(rows)
    bad_rows = sum(r[-1] != 'ok' for r in rows)
    print(f'gpu_ops_check: {len(rows) - bad_rows}/{len(rows)} cases match' + ('' if ok else f'; {bad_rows} MISMATCH'))
    sys.exit(0 if ok else 1)

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
