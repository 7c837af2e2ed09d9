"""Just-in-time build of the C++/CUDA plugins of torch_utils.ops (bias_act, upfirdn2d).

`get_plugin(module_name, sources, headers=None, source_dir=None, **build_kwargs)` builds
the sources with `torch.utils.cpp_extension.load` and ninja the first time a CUDA op asks
for them (never at import), and returns the loaded module. It is never fatal: when CUDA,
nvcc, ninja or a C++ compiler is missing, or the build fails, it emits ONE warning saying
what is missing (or the compiler's last lines) and returns None, and the op runs its
PyTorch path.

Builds are cached in `<cache>/torch_extensions/<module_name>-<digest>`, where the digest
covers the sources, headers, build flags and the torch/CUDA versions; `<cache>` is
`$TORCH_EXTENSIONS_DIR` or dnnlib's cache dir. Concurrent processes serialise on a lock
file with a timeout: a lock whose owner process is gone, or that is older than the
timeout, is reported and broken instead of being waited on forever. (PyTorch's own build
lock in the same directory is cleared under our lock for the same reason.)
"""

import hashlib
import os
import shutil
import socket
import sys
import time
import types
import warnings
from typing import Dict, List, Optional

import torch

verbosity = 'brief'        # 'none', 'brief' or 'full': what to print while building.
lock_timeout_s = 600.0     # Longest a build waits for another process's lock.

_plugins: Dict[str, Optional[types.ModuleType]] = {}
_warned: set = set()

#----------------------------------------------------------------------------

def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

def missing_prerequisites() -> List[str]:
    """What a CUDA plugin build needs and this machine lacks (empty when all is there)."""
    from torch.utils import cpp_extension  # pylint: disable=import-outside-toplevel
    missing = []
    if torch.version.cuda is None:
        missing.append('a CUDA build of PyTorch (this one is CPU-only)')
    elif not torch.cuda.is_available():
        missing.append('a CUDA device')
    cuda_home = cpp_extension.CUDA_HOME
    nvcc = os.path.join(cuda_home, 'bin', 'nvcc') if cuda_home else shutil.which('nvcc')
    if not nvcc or not os.path.isfile(nvcc):
        missing.append('nvcc (install the CUDA toolkit or set CUDA_HOME)')
    if not cpp_extension.is_ninja_available():
        missing.append('ninja (pip install ninja)')
    cxx = os.environ.get('CXX', 'c++')
    if shutil.which(cxx) is None:
        missing.append(f'a C++ compiler ({cxx!r} not on PATH; set CXX)')
    return missing

def _cache_root() -> str:
    root = os.environ.get('TORCH_EXTENSIONS_DIR')
    if root:
        return root
    try:
        from dnnlib import util  # pylint: disable=import-outside-toplevel
        return util.make_cache_dir_path('torch_extensions')
    except Exception:  # pylint: disable=broad-except
        return os.path.join(os.path.expanduser('~'), '.cache', 'dnnlib', 'torch_extensions')

def source_digest(paths: List[str], build_kwargs: dict) -> str:
    """A digest of the files' names and contents, the build flags and the torch/CUDA versions."""
    h = hashlib.md5()
    for path in sorted(paths):
        h.update(os.path.basename(path).encode())
        with open(path, 'rb') as f:
            h.update(f.read())
    h.update(repr(sorted(build_kwargs.items())).encode())
    h.update(f'{torch.__version__} {torch.version.cuda}'.encode())
    return h.hexdigest()

#----------------------------------------------------------------------------

class BuildLock:
    """An exclusive lock file (O_CREAT|O_EXCL) holding 'host pid time'; breaks stale locks."""

    def __init__(self, path: str, timeout_s: float = 600.0, poll_s: float = 0.5):
        self.path = path
        self.timeout_s = timeout_s
        self.poll_s = poll_s

    def _stale_reason(self) -> Optional[str]:
        try:
            with open(self.path) as f:
                host, pid, stamp = f.read().split()
            pid, stamp = int(pid), float(stamp)
        except (OSError, ValueError):
            # Unreadable or half-written: judge by age alone.
            try:
                stamp, host, pid = os.path.getmtime(self.path), None, None
            except OSError:
                return None  # gone meanwhile
        age = time.time() - stamp
        if host == socket.gethostname() and pid is not None and not _pid_alive(pid):
            return f'its owner (pid {pid}) is no longer running'
        if age > self.timeout_s:
            return f'it is {age:.0f} s old (timeout {self.timeout_s:.0f} s)'
        return None

    def acquire(self) -> None:
        deadline = time.time() + self.timeout_s
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                with os.fdopen(fd, 'w') as f:
                    f.write(f'{socket.gethostname()} {os.getpid()} {time.time()}')
                return
            except FileExistsError:
                reason = self._stale_reason()
                if reason is not None or time.time() > deadline:
                    reason = reason or f'waited {self.timeout_s:.0f} s for it'
                    print(f'custom_ops: breaking the stale build lock {self.path}: {reason}', file=sys.stderr)
                    try:
                        os.remove(self.path)
                    except FileNotFoundError:
                        pass
                    continue
                time.sleep(self.poll_s)

    def release(self) -> None:
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

#----------------------------------------------------------------------------

def get_plugin(module_name: str, sources: List[str], headers: Optional[List[str]] = None,
               source_dir: Optional[str] = None, **build_kwargs) -> Optional[types.ModuleType]:
    """The compiled plugin module, or None (after one warning) when it cannot be built.

    sources/headers: file names, relative to source_dir when given. build_kwargs go to
    torch.utils.cpp_extension.load (e.g. extra_cuda_cflags).
    """
    if module_name in _plugins:
        return _plugins[module_name]
    _plugins[module_name] = None
    missing = missing_prerequisites()
    if missing:
        _warn_once('prerequisites', f'custom_ops: CUDA plugins are unavailable, using the PyTorch ops instead '
                                    f'(slower on GPU, same results). Missing: {"; ".join(missing)}.')
        return None
    headers = headers or []
    if source_dir is not None:
        sources = [os.path.join(source_dir, s) for s in sources]
        headers = [os.path.join(source_dir, h) for h in headers]
    try:
        _plugins[module_name] = _build(module_name, sources, headers, build_kwargs)
    except Exception as e:  # pylint: disable=broad-except
        text = str(e).strip().splitlines()
        _warn_once(module_name, f'custom_ops: building the {module_name} plugin failed, using the PyTorch ops '
                                f'instead. Last lines: {" | ".join(text[-6:])}')
    return _plugins[module_name]

def _build(module_name, sources, headers, build_kwargs) -> types.ModuleType:
    from torch.utils import cpp_extension  # pylint: disable=import-outside-toplevel
    digest = source_digest(sources + headers, build_kwargs)
    build_dir = os.path.join(_cache_root(), f'{module_name}-{digest}')
    os.makedirs(build_dir, exist_ok=True)
    if verbosity != 'none':
        print(f'custom_ops: setting up the {module_name} plugin in {build_dir} ...', file=sys.stderr, flush=True)
    with BuildLock(os.path.join(build_dir, 'build.lock'), timeout_s=lock_timeout_s):
        # We hold the lock, so a PyTorch 'lock' file left here belongs to a dead build and
        # would make cpp_extension.load wait forever.
        torch_lock = os.path.join(build_dir, 'lock')
        if os.path.exists(torch_lock):
            print(f'custom_ops: removing the stale PyTorch build lock {torch_lock}', file=sys.stderr)
            os.remove(torch_lock)
        local_sources = []
        for path in sources + headers:
            dst = os.path.join(build_dir, os.path.basename(path))
            if not os.path.isfile(dst):
                tmp = dst + f'.tmp{os.getpid()}'
                shutil.copyfile(path, tmp)
                os.replace(tmp, dst)
            if path in sources:
                local_sources.append(dst)
        module = cpp_extension.load(name=module_name, sources=local_sources, build_directory=build_dir,
                                    verbose=(verbosity == 'full'), **build_kwargs)
    if verbosity != 'none':
        print(f'custom_ops: {module_name} ready.', file=sys.stderr, flush=True)
    return module

#----------------------------------------------------------------------------

def reset_for_tests() -> None:
    """Forget loaded plugins and emitted warnings (tests only)."""
    _plugins.clear()
    _warned.clear()

#----------------------------------------------------------------------------
