"""The CUDA plugin sources compile: each .cu with nvcc -c and each .cpp with the C++ compiler,
against this torch's headers, so that a syntax error cannot hide on machines without a GPU."""
import os
import pathlib
import shutil
import subprocess
import sysconfig

import pytest
import torch
from torch.utils import cpp_extension

OPS_DIR = pathlib.Path(__file__).resolve().parents[1] / 'torch_utils' / 'ops'
PLUGINS = ['bias_act', 'upfirdn2d']

pytestmark = pytest.mark.slow

#----------------------------------------------------------------------------

def _torch_includes():
    """torch's include dirs (CPU set: the sources need no CUDA headers from torch)."""
    try:
        paths = cpp_extension.include_paths(device_type='cpu')
    except TypeError:  # torch < 2.5: include_paths(cuda=False)
        paths = cpp_extension.include_paths(cuda=False)
    return [f'-I{p}' for p in paths]

def _cxx_std():
    # torch >= 2.10 headers need C++20; older ones build with C++17.
    major, minor = (int(v) for v in torch.__version__.split('.')[:2])
    return '-std=c++20' if (major, minor) >= (2, 10) else '-std=c++17'

def _run(cmd, what):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f'{what} failed:\n{" ".join(cmd)}\n{proc.stderr[-4000:]}'

#----------------------------------------------------------------------------

@pytest.mark.parametrize('name', PLUGINS)
def test_cu_source_compiles_with_nvcc(name, tmp_path):
    nvcc = shutil.which('nvcc')
    if nvcc is None:
        pytest.skip('nvcc is not on PATH: install the CUDA toolkit to check the .cu sources')
    _run([nvcc, '-c', str(OPS_DIR / f'{name}.cu'), '-o', str(tmp_path / f'{name}.o'), '-std=c++17',
          '-Xcompiler', '-fPIC'] + _torch_includes(), f'nvcc on {name}.cu')
    assert (tmp_path / f'{name}.o').stat().st_size > 0

@pytest.mark.parametrize('name', PLUGINS)
def test_cpp_binding_compiles(name, tmp_path):
    cxx = shutil.which(os.environ.get('CXX', 'c++'))
    if cxx is None:
        pytest.skip('no C++ compiler on PATH (set CXX)')
    if shutil.which('nvcc') is None:
        pytest.skip('nvcc is not on PATH: the plugins are only built where CUDA exists')
    _run([cxx, '-c', str(OPS_DIR / f'{name}.cpp'), '-o', str(tmp_path / f'{name}.o'), _cxx_std(), '-fPIC',
          f'-DTORCH_EXTENSION_NAME={name}_plugin', f'-I{sysconfig.get_paths()["include"]}'] + _torch_includes(),
         f'c++ on {name}.cpp')
    assert (tmp_path / f'{name}.o').stat().st_size > 0
