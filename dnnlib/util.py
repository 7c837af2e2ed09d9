"""Small utilities shared by the whole toolkit (the `dnnlib.util` interface of StyleGAN2-ADA).

- `EasyDict`: a dict whose items are also attributes (configs travel as these).
- `get_obj_by_name`, `construct_class_by_name`, `call_func_by_name`: build the parts named
  by a `class_name` / `func_name` in a `*_kwargs` dict, so parts can be swapped by config.
- `open_url`: open a local path, a file:// URL or an http(s) URL; downloads are cached
  under `$DNNLIB_CACHE_DIR` (or `~/.cache/dnnlib`) as `downloads/<md5(url)>_<name>`, the
  naming the official tools use, so an existing cache is reused.
- `Logger`: tee stdout/stderr into a log file for as long as it is open; `close()` (or
  leaving its `with` block) puts the previous streams back.
- `format_time`: seconds as a short human string ("1h 02m 03s").
"""

import hashlib
import importlib
import io
import os
import re
import sys
import tempfile
import time
import types
import urllib.parse
import urllib.request
from typing import Any, BinaryIO, Optional, TextIO, Union

#----------------------------------------------------------------------------

class EasyDict(dict):
    """A dict whose items are also attributes: `d.key` is `d['key']`.

    Missing attributes raise AttributeError (not KeyError), so `hasattr` and
    `getattr(d, name, default)` behave as for any object.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

#----------------------------------------------------------------------------
# Objects by dotted name.

def _import_longest_module(name: str) -> tuple[types.ModuleType, list[str]]:
    """Import the longest importable module prefix of a dotted name.

    Returns the module and the remaining attribute path. An ImportError raised *inside*
    a module that does exist is a real error and propagates unchanged.
    """
    parts = name.split('.')
    for split in range(len(parts), 0, -1):
        module_name = '.'.join(parts[:split])
        try:
            return importlib.import_module(module_name), parts[split:]
        except ModuleNotFoundError as err:
            # Only swallow "this candidate (or a parent of it) does not exist".
            missing = err.name or ''
            if not (module_name == missing or module_name.startswith(missing + '.')):
                raise
    raise ValueError(f"cannot find '{name}': no importable module in that dotted name; "
                     f"expected something like 'package.module.ClassName'")

#----------------------------------------------------------------------------

def get_obj_by_name(name: str) -> Any:
    """Return the Python object with the given dotted name, e.g. `'torch.optim.Adam'`.

    Raises ValueError naming `name` when it cannot be found.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f'expected a dotted object name such as "torch.optim.Adam", got {name!r}')
    if '.' not in name:
        # A bare name refers to a builtin (e.g. 'dict'), as in the official tools.
        import builtins
        if hasattr(builtins, name):
            return getattr(builtins, name)
        raise ValueError(f"cannot find '{name}': expected a dotted name such as 'training.networks.Generator'")
    obj, attrs = _import_longest_module(name)
    for i, attr in enumerate(attrs):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            found = '.'.join(name.split('.')[:len(name.split('.')) - len(attrs) + i])
            raise ValueError(f"cannot find '{name}': '{found}' has no attribute '{attr}'") from None
    return obj

#----------------------------------------------------------------------------

def call_func_by_name(*args, func_name: Optional[str] = None, **kwargs) -> Any:
    """Call the function (or any callable) named `func_name` with the given arguments."""
    if func_name is None:
        raise ValueError('call_func_by_name() needs func_name="package.module.function"')
    func = get_obj_by_name(func_name)
    if not callable(func):
        raise ValueError(f"'{func_name}' is a {type(func).__name__}, not something callable")
    return func(*args, **kwargs)

#----------------------------------------------------------------------------

def construct_class_by_name(*args, class_name: Optional[str] = None, **kwargs) -> Any:
    """Construct an instance of the class named `class_name`, e.g. from a `*_kwargs` dict:
    `construct_class_by_name(**G_kwargs)` with `G_kwargs.class_name = 'training.networks.Generator'`.
    """
    if class_name is None:
        raise ValueError('construct_class_by_name() needs class_name="package.module.ClassName"')
    return call_func_by_name(*args, func_name=class_name, **kwargs)

#----------------------------------------------------------------------------

def format_time(seconds: Union[int, float]) -> str:
    """Seconds as a short string: '7s', '1m 05s', '2h 03m 04s', '1d 02h 03m'."""
    s = int(round(seconds))
    if s < 60:
        return f'{s}s'
    if s < 60 * 60:
        return f'{s // 60}m {s % 60:02d}s'
    if s < 24 * 60 * 60:
        return f'{s // 3600}h {(s // 60) % 60:02d}m {s % 60:02d}s'
    return f'{s // 86400}d {(s // 3600) % 24:02d}h {(s // 60) % 60:02d}m'

#----------------------------------------------------------------------------
# Cache folder and URLs.

def make_cache_dir_path(*paths: str) -> str:
    """Path inside the dnnlib cache: `$DNNLIB_CACHE_DIR` if set, else `~/.cache/dnnlib`."""
    root = os.environ.get('DNNLIB_CACHE_DIR')
    if not root:
        root = os.path.join(os.path.expanduser('~'), '.cache', 'dnnlib')
    return os.path.join(root, *paths)

#----------------------------------------------------------------------------

def is_url(obj: Any, allow_file_urls: bool = False) -> bool:
    """True if `obj` is a string that looks like an http(s) URL (or file:// when allowed)."""
    if not isinstance(obj, str) or '://' not in obj:
        return False
    parsed = urllib.parse.urlparse(obj)
    if parsed.scheme == 'file':
        return allow_file_urls
    return parsed.scheme in ('http', 'https') and bool(parsed.netloc)

#----------------------------------------------------------------------------

def _file_url_to_path(url: str) -> str:
    """file:///abs/path (or file://localhost/abs/path) -> /abs/path."""
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc not in ('', 'localhost'):
        raise ValueError(f'{url}: file:// URLs must name a local file (file:///path/to/file), got host {parsed.netloc!r}')
    return urllib.request.url2pathname(parsed.path)

#----------------------------------------------------------------------------

def url_cache_name(url: str) -> str:
    """The cache file name of a URL: `<md5(url)>_<sanitised basename>` (the official naming)."""
    digest = hashlib.md5(url.encode('utf-8')).hexdigest()
    base = os.path.basename(urllib.parse.urlparse(url).path) or 'download'
    return digest + '_' + re.sub(r'[^0-9a-zA-Z._-]', '_', base)

#----------------------------------------------------------------------------

def _download_to(url: str, dst_path: str, num_attempts: int, verbose: bool) -> None:
    """Download `url` to `dst_path` atomically (temp file in the same folder + os.replace).

    Retries network errors and truncated bodies; 4xx answers (other than 408/429) are
    permanent and fail at once. Raises OSError with instructions for a manual download.
    """
    import requests  # Imported here: only http(s) needs it.

    os.makedirs(os.path.dirname(dst_path), exist_ok=True)
    last_error: Optional[BaseException] = None
    for attempt in range(max(num_attempts, 1)):
        if attempt > 0:
            time.sleep(min(0.25 * attempt, 2.0))
        tmp_path = None
        try:
            with requests.get(url, stream=True, timeout=(10, 60)) as res:
                if 400 <= res.status_code < 500 and res.status_code not in (408, 429):
                    last_error = OSError(f'HTTP {res.status_code} {res.reason}')
                    break
                res.raise_for_status()
                expected = res.headers.get('Content-Length')
                fd, tmp_path = tempfile.mkstemp(prefix='.tmp-', dir=os.path.dirname(dst_path))
                received = 0
                with os.fdopen(fd, 'wb') as f:
                    for chunk in res.iter_content(chunk_size=1 << 20):
                        f.write(chunk)
                        received += len(chunk)
                    f.flush()
                    os.fsync(f.fileno())
                if expected is not None and 'Content-Encoding' not in res.headers and received != int(expected):
                    raise OSError(f'truncated download: got {received} of {expected} bytes')
                os.replace(tmp_path, dst_path)
                tmp_path = None
                if verbose:
                    print(f'Downloaded {url} ({received} bytes) to {dst_path}', file=sys.stderr)
                return
        except (requests.RequestException, OSError) as err:
            last_error = err
            if verbose:
                print(f'Download of {url} failed (attempt {attempt + 1}/{num_attempts}): {err}', file=sys.stderr)
        finally:
            if tmp_path is not None and os.path.exists(tmp_path):
                os.remove(tmp_path)
    raise OSError(
        f'Could not download {url}: {last_error}\n'
        f'If this machine is offline, fetch the file by hand on a machine that is online '
        f'(e.g. `curl -L -o {os.path.basename(dst_path)} "{url}"`) and put it at\n  {dst_path}\n'
        f'(set DNNLIB_CACHE_DIR to move the cache), or pass the local file path instead of the URL.')

#----------------------------------------------------------------------------

def open_url(url: str, cache_dir: Optional[str] = None, num_attempts: int = 10, verbose: bool = True,
             return_filename: bool = False, cache: bool = True) -> Union[BinaryIO, str]:
    """Open a local path, a file:// URL or an http(s) URL for binary reading.

    http(s) downloads are cached under `cache_dir` (default `make_cache_dir_path('downloads')`)
    as `<md5(url)>_<name>` and served from there afterwards, without the network.
    Returns an open binary file object, or the local file name if `return_filename`
    (which needs `cache=True` for URLs).
    """
    if not isinstance(url, str) or not url:
        raise ValueError(f'open_url() expects a path or URL string, got {url!r}')

    # Local files: a plain path or file://.
    if not is_url(url):
        path = _file_url_to_path(url) if url.startswith('file://') else url
        if '://' in path:
            raise ValueError(f'{url}: unsupported URL scheme; expected a local path, file://, http:// or https://')
        if not os.path.isfile(path):
            raise FileNotFoundError(f'{url}: no such file; check the path (relative paths start at {os.getcwd()})')
        return path if return_filename else open(path, 'rb')

    if return_filename and not cache:
        raise ValueError('open_url(return_filename=True) needs cache=True for http(s) URLs: the file must live somewhere')
    if cache_dir is None:
        cache_dir = make_cache_dir_path('downloads')
    cached_path = os.path.join(cache_dir, url_cache_name(url))

    # Cache hit: no network at all.
    if cache and os.path.isfile(cached_path):
        return cached_path if return_filename else open(cached_path, 'rb')

    if cache:
        _download_to(url, cached_path, num_attempts=num_attempts, verbose=verbose)
        return cached_path if return_filename else open(cached_path, 'rb')

    # No cache: download into a private temp folder and keep the bytes in memory.
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp_path = os.path.join(tmp_dir, url_cache_name(url))
        _download_to(url, tmp_path, num_attempts=num_attempts, verbose=verbose)
        with open(tmp_path, 'rb') as f:
            return io.BytesIO(f.read())

#----------------------------------------------------------------------------
# Logging.

class _TeeStream:
    """Writes to a console stream and to a shared log file; other attributes pass through."""

    def __init__(self, console: TextIO, logger: 'Logger'):
        self.console = console
        self.logger = logger

    def write(self, text: str) -> int:
        if self.logger.file is not None and text:
            self.logger.file.write(text)
            if self.logger.should_flush:
                self.logger.file.flush()
        n = self.console.write(text)
        if self.logger.should_flush:
            self.console.flush()
        return len(text) if n is None else n

    def flush(self) -> None:
        if self.logger.file is not None:
            self.logger.file.flush()
        self.console.flush()

    def __getattr__(self, name: str) -> Any:
        # isatty(), fileno(), encoding... are the console's.
        return getattr(self.console, name)

#----------------------------------------------------------------------------

class Logger:
    """Tee stdout and stderr into `file_name` (if given) while open.

    Use as a context manager, or call `close()`; either puts the previous
    `sys.stdout` / `sys.stderr` back, so nothing stays replaced behind the caller's back.
    Stderr text stays on stderr (and goes to the file too).
    """

    def __init__(self, file_name: Optional[str] = None, file_mode: str = 'w', should_flush: bool = True):
        self.file = open(file_name, file_mode, encoding='utf-8') if file_name is not None else None
        self.should_flush = should_flush
        self._prev_stdout = sys.stdout
        self._prev_stderr = sys.stderr
        self._stdout = _TeeStream(sys.stdout, self)
        self._stderr = _TeeStream(sys.stderr, self)
        sys.stdout = self._stdout
        sys.stderr = self._stderr
        self._closed = False

    def write(self, text: str) -> int:
        """Write to stdout and the log file."""
        return self._stdout.write(text)

    def flush(self) -> None:
        self._stdout.flush()

    def close(self) -> None:
        """Flush, put the previous streams back and close the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.flush()
        # Only undo our own replacement; if someone wrapped us since, their wrapper keeps
        # writing through our tee, which now behaves as the bare console (file closed).
        if sys.stdout is self._stdout:
            sys.stdout = self._prev_stdout
        if sys.stderr is self._stderr:
            sys.stderr = self._prev_stderr
        if self.file is not None:
            file, self.file = self.file, None
            file.close()

    def __enter__(self) -> 'Logger':
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

#----------------------------------------------------------------------------

