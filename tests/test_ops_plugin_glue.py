"""The CUDA plugins' autograd glue and custom_ops' build machinery, checked on CPU.

The glue (bias_act_by_kernel, upfirdn2d_by_kernel) is driven with PyTorch kernels that
follow the plugin kernels' contract, so its gradient formulas (order-k derivatives for
bias_act, the adjoint padding of upfirdn2d) are checked by gradcheck without a GPU.
"""
import os
import subprocess
import sys
import time
import warnings

import pytest
import torch

from torch_utils import custom_ops
from torch_utils.ops import bias_act, upfirdn2d

#----------------------------------------------------------------------------

@pytest.mark.parametrize('act', sorted(bias_act.activation_funcs))
def test_bias_act_kernel_glue_matches_pytorch_to_third_order(act):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    x = (x + 0.1 * torch.sign(x)).requires_grad_()
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    glue = lambda x, b: bias_act.bias_act_by_kernel(bias_act.reference_kernel, x, b, 1, act, 0.2, 0.7, -1)
    plain = lambda x, b: bias_act.bias_act(x, b, act=act, alpha=0.2, gain=0.7, impl='ref')
    torch.testing.assert_close(glue(x, b), plain(x, b))
    assert torch.autograd.gradcheck(glue, (x, b))
    assert torch.autograd.gradgradcheck(glue, (x, b))
    def third(fn):
        g, = torch.autograd.grad(fn(x, b).square().sum(), x, create_graph=True)
        g2, = torch.autograd.grad(g.pow(3).sum(), x, create_graph=True)
        return torch.autograd.grad(g2.sum(), [x, b])
    for a, c in zip(third(glue), third(plain)):
        torch.testing.assert_close(a, c)

def test_bias_act_kernel_glue_with_clamp_zeroes_clamped_gradient():
    x = torch.tensor([[-3.0, -0.5, 0.5, 3.0]], dtype=torch.float64, requires_grad=True)
    y = bias_act.bias_act_by_kernel(bias_act.reference_kernel, x, None, 1, 'lrelu', 0.2, 1.0, 1.0)
    torch.testing.assert_close(y.detach(), torch.tensor([[-0.6, -0.1, 0.5, 1.0]], dtype=torch.float64))
    g, = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, torch.tensor([[0.2, 0.2, 1.0, 0.0]], dtype=torch.float64))

@pytest.mark.parametrize('up, down, padding', [(1, 1, 1), (2, 1, [2, 1, 1, 2]), (1, 2, [1, 2, 2, 1]), (2, 2, 1),
                                               ([3, 1], [1, 2], [2, -1, 0, 3]), (1, 3, [0, 2, 1, 1])])
@pytest.mark.parametrize('flip', [False, True])
def test_upfirdn2d_kernel_glue_adjoint_gradients(up, down, padding, flip):
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    f = torch.randn([3, 4] if flip else [4], dtype=torch.float64)  # 2-D, and 1-D (made 2-D by the glue)
    args = (upfirdn2d._parse_scaling(up, 'up'), upfirdn2d._parse_scaling(down, 'down'),
            upfirdn2d._parse_padding(padding), flip, 1.5)
    glue = lambda x: upfirdn2d.upfirdn2d_by_kernel(upfirdn2d.reference_kernel, x, f, *args)
    plain = upfirdn2d.upfirdn2d(x, f, up, down, padding, flip, 1.5, impl='ref')
    torch.testing.assert_close(glue(x), plain, rtol=1e-6, atol=1e-6)  # the plugin's taps are float32
    assert torch.autograd.gradcheck(glue, (x,))
    assert torch.autograd.gradgradcheck(glue, (x,))

#----------------------------------------------------------------------------

def test_cuda_impl_on_cpu_tensors_takes_the_pytorch_path():
    x = torch.randn(2, 3, 8, 8)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    torch.testing.assert_close(upfirdn2d.upsample2d(x, f, impl='cuda'), upfirdn2d.upsample2d(x, f, impl='ref'))
    torch.testing.assert_close(bias_act.bias_act(x, act='lrelu', impl='cuda'), bias_act.bias_act(x, act='lrelu', impl='ref'))

def test_missing_prerequisites_warn_once_and_return_none(monkeypatch):
    custom_ops.reset_for_tests()
    monkeypatch.setattr(custom_ops, 'missing_prerequisites', lambda: ['nvcc (install the CUDA toolkit)'])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert custom_ops.get_plugin('bias_act_plugin', sources=['x.cu']) is None
        assert custom_ops.get_plugin('upfirdn2d_plugin', sources=['y.cu']) is None
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and 'nvcc' in messages[0] and 'PyTorch' in messages[0]
    custom_ops.reset_for_tests()

def test_failed_build_warns_once_and_falls_back(monkeypatch, tmp_path):
    custom_ops.reset_for_tests()
    monkeypatch.setattr(custom_ops, 'missing_prerequisites', lambda: [])
    def failing_build(*args):
        raise RuntimeError('error: expected ";" before "}" token')
    monkeypatch.setattr(custom_ops, '_build', failing_build)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert custom_ops.get_plugin('broken_plugin', sources=['a.cu']) is None
        assert custom_ops.get_plugin('broken_plugin', sources=['a.cu']) is None  # cached: no second build
    assert len(caught) == 1 and 'expected' in str(caught[0].message)
    custom_ops.reset_for_tests()

def test_import_of_ops_builds_nothing():
    code = ('import sys; sys.path.insert(0, "."); '
            'from torch_utils.ops import bias_act, upfirdn2d, conv2d_resample, conv2d_gradfix, grid_sample_gradfix, fma; '
            'from torch_utils import custom_ops; '
            'assert not custom_ops._plugins, custom_ops._plugins')
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, '-c', code], check=True, cwd=root)

#----------------------------------------------------------------------------

def test_source_digest_changes_with_contents(tmp_path):
    a = tmp_path / 'a.cu'
    a.write_text('int x;')
    d1 = custom_ops.source_digest([str(a)], {})
    a.write_text('int y;')
    assert custom_ops.source_digest([str(a)], {}) != d1
    assert custom_ops.source_digest([str(a)], dict(extra_cuda_cflags=['-O3'])) != custom_ops.source_digest([str(a)], {})

def test_build_lock_is_exclusive_and_released(tmp_path):
    path = str(tmp_path / 'build.lock')
    with custom_ops.BuildLock(path, timeout_s=5):
        assert os.path.exists(path)
        other = custom_ops.BuildLock(path, timeout_s=0.3, poll_s=0.05)
        t0 = time.time()
        other.acquire()  # a live owner: waits out the timeout, then breaks it with a message
        assert time.time() - t0 >= 0.3
        other.release()
    assert not os.path.exists(path)

def test_build_lock_of_a_dead_process_is_broken_at_once(tmp_path, capsys):
    path = tmp_path / 'build.lock'
    proc = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    dead_pid = int(proc.stdout)
    import socket
    path.write_text(f'{socket.gethostname()} {dead_pid} {time.time()}')
    lock = custom_ops.BuildLock(str(path), timeout_s=60, poll_s=0.05)
    t0 = time.time()
    lock.acquire()
    assert time.time() - t0 < 5
    assert 'no longer running' in capsys.readouterr().err
    assert path.read_text().split()[1] == str(os.getpid())
    lock.release()

#----------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the no-GPU behaviour of benchmarks/gpu_ops_check.py')
def test_gpu_ops_check_skips_cleanly_without_cuda():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(root, 'benchmarks', 'gpu_ops_check.py')
    plain = subprocess.run([sys.executable, script, '--quick'], capture_output=True, text=True, cwd=root)
    assert plain.returncode == 0 and 'SKIPPED' in plain.stdout
    strict = subprocess.run([sys.executable, script, '--require-cuda'], capture_output=True, text=True, cwd=root)
    assert strict.returncode == 2
    bad = subprocess.run([sys.executable, script, '--dtypes', 'bf16'], capture_output=True, text=True, cwd=root)
    assert bad.returncode != 0 and '--dtypes' in bad.stderr
