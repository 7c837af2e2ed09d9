"""Network snapshots: atomic saving and safe loading of StyleGAN2-ADA-format pickles.

Snapshots are pickled dicts `{training_set_kwargs, G, D, G_ema, augment_pipe, ...}` whose
modules are persistent objects (torch_utils.persistence, DESIGN §3): each carries the
source of its defining module and its constructor arguments. Unpickling them the normal
way executes that source. `load_network_pkl` never does:

1. A restricted unpickler admits only the globals such files need (listed in
   `_SAFE_GLOBALS`; the official ones are in DESIGN §3, the rest were read off our own
   snapshots with pickletools) and refuses anything else, naming it.
2. `_reconstruct_persistent_obj(meta)` is mapped to a recorder that keeps the class name
   and state and runs nothing. Tensor storages (nested torch.save blobs) are read with
   `torch.load(weights_only=True)`.
3. Each recorded object is rebuilt as the class of that name registered in this code base
   (`persistence.get_registered_class`), from its stored `_init_args`/`_init_kwargs`; its
   parameters and buffers are then copied by name, through its whole tree of submodules
   (submodules are not rebuilt separately: the parent's constructor made them).
"""

import builtins
import collections
import importlib
import io
import os
import pickle
import sys
import warnings
from typing import Any, BinaryIO, Optional, Union

import numpy as np
import torch

import dnnlib
from torch_utils import persistence

#----------------------------------------------------------------------------

OFFICIAL_PRETRAINED_URL = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/{}.pkl'
OFFICIAL_PRETRAINED = ('ffhq', 'metfaces', 'afhqcat', 'afhqdog', 'afhqwild', 'brecahad', 'cifar10')

# Modules whose import registers the persistent classes that snapshots name.
_NETWORK_MODULES = ('training.networks', 'training.augment', 'training.chain', 'training.diffaug')

PICKLE_PROTOCOL = 4  # Readable by every Python 3 the official tools run on.

#----------------------------------------------------------------------------
# Step 2: what the restricted unpickler makes of a persistent object.

class _PersistentRecord:
    """A persistent object as stored: its class name, state and module source (never run)."""

    def __init__(self, class_name: str, state: dict, module_src: str):
        self.class_name = class_name
        self.state = state
        self.module_src = module_src

    def __repr__(self) -> str:
        return f'<persistent {self.class_name} (not rebuilt)>'

#----------------------------------------------------------------------------

def _record_persistent_obj(meta: Any) -> _PersistentRecord:
    """Stands in for persistence._reconstruct_persistent_obj: records, executes nothing."""
    if not isinstance(meta, dict):
        raise pickle.UnpicklingError(f'persistent object: expected a meta dict, got {type(meta).__name__}')
    if meta.get('type') != 'class' or meta.get('version') != persistence.FORMAT_VERSION:
        raise pickle.UnpicklingError(f"persistent object of type {meta.get('type')!r} version {meta.get('version')!r}; "
                                     f"expected type 'class' version {persistence.FORMAT_VERSION}")
    state = meta.get('state')
    if not isinstance(meta.get('class_name'), str) or not isinstance(state, dict):
        raise pickle.UnpicklingError('persistent object: meta lacks a class_name string or a state dict')
    return _PersistentRecord(meta['class_name'], state, str(meta.get('module_src', '')))

class _PlainModuleRecord:
    """A plain torch.nn module (e.g. a Linear) inside a persistent one, as stored: its
    state only. Its parent's constructor rebuilds it; the loader copies its tensors."""
    torch_class = ''

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f'{self.torch_class}: expected a state dict, got {type(state).__name__}')
        self.state = state

_plain_module_stubs: dict[tuple[str, str], type] = {}

def _plain_module_stub(module: str, name: str) -> Optional[type]:
    """A recording stand-in for the torch.nn module class `module.name`, or None if it is not one."""
    key = (module, name)
    if key not in _plain_module_stubs:
        cls = getattr(sys.modules.get(module), name, None) if module.startswith('torch.nn.modules.') else None
        if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
            return None
        _plain_module_stubs[key] = type(f'{name}Record', (_PlainModuleRecord,), {'torch_class': f'{module}.{name}'})
    return _plain_module_stubs[key]

#----------------------------------------------------------------------------
# Step 1: the globals a snapshot may reference.

def _load_storage_from_bytes(blob: bytes) -> Any:
    """torch.storage._load_from_bytes, restricted to tensor data."""
    if not isinstance(blob, (bytes, bytearray)):
        raise pickle.UnpicklingError(f'tensor storage: expected bytes, got {type(blob).__name__}')
    return torch.load(io.BytesIO(blob), weights_only=True, map_location='cpu')

def _no_hooks(hooks: Any, what: str) -> None:
    if hooks:  # Hooks are callables run during backward: a tensor in a snapshot has none.
        raise pickle.UnpicklingError(f'refusing {what} with backward hooks')

def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad, backward_hooks, *metadata):
    """torch._utils._rebuild_tensor_v2, for tensors without backward hooks."""
    _no_hooks(backward_hooks, 'a tensor')
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
                                           collections.OrderedDict(), *metadata)

def _rebuild_parameter(data, requires_grad, backward_hooks):
    """torch._utils._rebuild_parameter, for parameters without backward hooks."""
    _no_hooks(backward_hooks, 'a parameter')
    return torch._utils._rebuild_parameter(data, requires_grad, collections.OrderedDict())

def _codecs_encode(text: str, encoding: str = 'utf-8') -> bytes:
    """_codecs.encode as protocol-2 pickles use it for bytes: latin-1 only."""
    if encoding not in ('latin1', 'latin-1') or not isinstance(text, str):
        raise pickle.UnpicklingError(f'refusing _codecs.encode with encoding {encoding!r}')
    return text.encode('latin-1')

def _numpy_attr(name: str) -> Any:
    """A numpy internal that moved from numpy.core to numpy._core in numpy 2."""
    module_name, _, attr = name.rpartition('.')
    for prefix in ('numpy._core', 'numpy.core'):
        try:
            return getattr(importlib.import_module(f'{prefix}.{module_name}'), attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f'numpy has no {name}')

def _build_safe_globals() -> dict[tuple[str, str], Any]:
    safe = {
        ('collections', 'OrderedDict'): collections.OrderedDict,
        ('dnnlib.util', 'EasyDict'): dnnlib.EasyDict,
        ('torch_utils.persistence', '_reconstruct_persistent_obj'): _record_persistent_obj,
        ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
        ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
        ('torch.storage', '_load_from_bytes'): _load_storage_from_bytes,
        ('torch', 'Size'): torch.Size,
        ('torch', 'device'): torch.device,
        ('numpy', 'dtype'): np.dtype,
        ('numpy', 'ndarray'): np.ndarray,
        ('_codecs', 'encode'): _codecs_encode,
    }
    for prefix in ('numpy.core', 'numpy._core'):
        safe[(f'{prefix}.multiarray', 'scalar')] = _numpy_attr('multiarray.scalar')
        safe[(f'{prefix}.multiarray', '_reconstruct')] = _numpy_attr('multiarray._reconstruct')
        try:
            safe[(f'{prefix}.numeric', '_frombuffer')] = _numpy_attr('numeric._frombuffer')
        except ImportError:
            pass
    for module in ('builtins', '__builtin__'):  # Protocol 2 writes '__builtin__'.
        for name in ('set', 'frozenset', 'slice', 'complex', 'bytearray', 'range'):
            safe[(module, name)] = getattr(builtins, name)
    return safe

_SAFE_GLOBALS = _build_safe_globals()

#----------------------------------------------------------------------------

class _LegacyTFPickleError(pickle.UnpicklingError):
    pass

class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only `_SAFE_GLOBALS` (and torch dtypes)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == 'torch' and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        stub = _plain_module_stub(module, name)
        if stub is not None:
            return stub
        if module.startswith('dnnlib.tflib'):
            raise _LegacyTFPickleError(
                'this is a legacy TensorFlow StyleGAN/StyleGAN2 pickle, which is not supported; convert it to '
                'the PyTorch format first (e.g. with the official stylegan2-ada-pytorch legacy.py converter, '
                'on a machine where running its code is acceptable)')
        raise pickle.UnpicklingError(
            f'refusing to load global {module}.{name}: network pickles are loaded without running code, '
            f'and only the globals that snapshots need are allowed (a pickle naming anything else was not '
            f'written by StyleGAN2-ADA or by this toolkit, or it was tampered with)')

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError('pickle uses persistent ids (a torch.save file?); expected a network pickle')

#----------------------------------------------------------------------------
# Step 3: rebuild recorded objects as our own classes.

def _import_network_modules() -> None:
    """Import the modules that register persistent classes (those that exist yet)."""
    for name in _NETWORK_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise

def _registered_class(record: _PersistentRecord) -> type:
    """Our class for a record; if several modules define that name, the one whose source
    equals the pickled source (a plain string comparison; nothing is run)."""
    try:
        return persistence.get_registered_class(record.class_name)
    except ValueError:
        for module in persistence.registered_classes().get(record.class_name, []):
            cls = persistence.get_registered_class(record.class_name, prefer_module=module)
            if cls._orig_module_src == record.module_src:
                return cls
        raise

#----------------------------------------------------------------------------

class _Rebuilder:
    """Walks unpickled data, replacing each _PersistentRecord with a rebuilt object."""

    def __init__(self):
        self.memo: dict[int, Any] = {}  # id(record) -> rebuilt object (shared references stay shared)

    def rebuild(self, obj: Any) -> Any:
        if isinstance(obj, _PersistentRecord):
            if id(obj) not in self.memo:
                self.memo[id(obj)] = self._rebuild_record(obj)
            return self.memo[id(obj)]
        if isinstance(obj, _PlainModuleRecord):
            raise pickle.UnpicklingError(f'a plain {obj.torch_class} outside any persistent module cannot be rebuilt '
                                         f'safely (no constructor arguments are stored); save persistent modules')
        if isinstance(obj, dict):
            items = [(k, self.rebuild(v)) for k, v in obj.items()]
            return type(obj)(items) if isinstance(obj, (dnnlib.EasyDict, collections.OrderedDict)) else dict(items)
        if isinstance(obj, list):
            return [self.rebuild(v) for v in obj]
        if isinstance(obj, tuple) and not isinstance(obj, torch.Size):
            return tuple(self.rebuild(v) for v in obj)
        return obj

    def _init_value(self, obj: Any) -> Any:
        """Constructor arguments as plain data: EasyDicts become dicts, records are rebuilt."""
        if isinstance(obj, dict):
            return {k: self._init_value(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self._init_value(v) for v in obj]
        if isinstance(obj, tuple) and not isinstance(obj, torch.Size):
            return tuple(self._init_value(v) for v in obj)
        return self.rebuild(obj)

    def _rebuild_record(self, record: _PersistentRecord) -> Any:
        try:
            cls = _registered_class(record)
        except (KeyError, ValueError) as err:
            raise pickle.UnpicklingError(f'cannot rebuild persistent class {record.class_name}: {err.args[0]}') from None
        args = self._init_value(record.state.get('_init_args', ()))
        kwargs = self._init_value(record.state.get('_init_kwargs', {}))
        try:
            obj = cls(*args, **kwargs)
        except Exception as err:
            raise pickle.UnpicklingError(
                f'cannot rebuild {record.class_name} from its stored constructor arguments '
                f'(kwargs: {", ".join(sorted(kwargs)) or "none"}): {type(err).__name__}: {err}; '
                f'the pickle was written by a version of the code whose {record.class_name} takes other arguments') from err
        if isinstance(obj, torch.nn.Module):
            report = dnnlib.EasyDict(loaded=set(), unexpected=[], mismatched=[])
            self._load_module_state(obj, record.state, '', report)
            self._check_report(record.class_name, obj, report)
        else:
            extra = {k: self.rebuild(v) for k, v in record.state.items() if k not in ('_init_args', '_init_kwargs')}
            obj.__dict__.update(extra)
        return obj

    def _load_module_state(self, module: torch.nn.Module, state: dict, prefix: str, report: dnnlib.EasyDict) -> None:
        """Copy the tensors of a recorded module tree into `module`, name by name."""
        with torch.no_grad():
            for kind in ('_parameters', '_buffers'):
                dst = module.__dict__.get(kind, {})
                for name, tensor in (state.get(kind) or {}).items():
                    if tensor is None:
                        continue
                    if not isinstance(tensor, torch.Tensor):
                        raise pickle.UnpicklingError(f'{prefix + name}: expected a tensor, got {type(tensor).__name__}')
                    if dst.get(name) is None:
                        report.unexpected.append(prefix + name)
                    elif dst[name].shape != tensor.shape:
                        report.mismatched.append((prefix + name, tuple(tensor.shape), tuple(dst[name].shape)))
                    else:
                        dst[name].copy_(tensor)
                        report.loaded.add(prefix + name)

        # Registered submodules, and modules kept as plain attributes (e.g. CHAIN layers).
        children = dict(state.get('_modules') or {})
        children.update({k: v for k, v in state.items() if isinstance(v, _PersistentRecord) and k not in children})
        for name, child in children.items():
            if child is None:
                continue
            dst_child = module._modules.get(name) if name in module._modules else module.__dict__.get(name)
            if isinstance(child, (_PersistentRecord, _PlainModuleRecord)):
                child_state = child.state
            else:
                raise pickle.UnpicklingError(f'{prefix + name}: a {type(child).__name__} where a persistent module '
                                             f'was expected')
            if not isinstance(dst_child, torch.nn.Module):
                report.unexpected.append(prefix + name + '.*')
                continue
            self.memo[id(child)] = dst_child
            self._load_module_state(dst_child, child_state, prefix + name + '.', report)

        if isinstance(state.get('training'), bool):
            module.training = state['training']

    @staticmethod
    def _check_report(class_name: str, module: torch.nn.Module, report: dnnlib.EasyDict) -> None:
        if report.unexpected or report.mismatched:
            lines = [f'  {n}: in the pickle, not in our {class_name}' for n in report.unexpected]
            lines += [f'  {n}: shape {list(s)} in the pickle, {list(d)} in our {class_name}' for n, s, d in report.mismatched]
            raise pickle.UnpicklingError(
                f'{class_name} rebuilt from its stored arguments does not match the pickled tensors '
                f'(the pickle was written by different network code):\n' + '\n'.join(lines))
        names = [n for n, _ in list(module.named_parameters()) + list(module.named_buffers())]
        missing = [n for n in names if n not in report.loaded]
        if missing:
            warnings.warn(f'{class_name}: {len(missing)} tensors were not in the pickle and keep their initial '
                          f'values: {", ".join(missing[:10])}{" ..." if len(missing) > 10 else ""}')

#----------------------------------------------------------------------------

def _resolve_source(f_or_path_or_url: Union[str, os.PathLike, BinaryIO]) -> tuple[str, Optional[str]]:
    """(name for messages, path or URL to open) for a loader argument."""
    if isinstance(f_or_path_or_url, os.PathLike):
        f_or_path_or_url = os.fspath(f_or_path_or_url)
    if isinstance(f_or_path_or_url, str):
        spec = f_or_path_or_url
        if spec in OFFICIAL_PRETRAINED:
            spec = OFFICIAL_PRETRAINED_URL.format(spec)
        return spec, spec
    if hasattr(f_or_path_or_url, 'read'):
        return str(getattr(f_or_path_or_url, 'name', '<open file>')), None
    raise TypeError(f'load_network_pkl expects a path, a URL, one of {", ".join(OFFICIAL_PRETRAINED)} '
                    f'or an open binary file, got {type(f_or_path_or_url).__name__}')

#----------------------------------------------------------------------------

def _unpickle_safely(f: BinaryIO, name: str) -> Any:
    """Restricted unpickling of one stream; every failure names the file."""
    head = b''
    if f.seekable():
        pos = f.tell()
        head = f.read(4)
        f.seek(pos)
    if head.startswith(b'PK\x03\x04'):
        raise pickle.UnpicklingError(f'{name}: this is a zip archive (torch.save / a dataset?), not a network pickle')
    try:
        return _SafeUnpickler(f).load()
    except _LegacyTFPickleError as err:
        raise pickle.UnpicklingError(f'{name}: {err}') from None
    except pickle.UnpicklingError as err:
        if str(err).startswith('refusing'):
            raise pickle.UnpicklingError(f'{name}: {err}') from None
        raise pickle.UnpicklingError(f'{name}: corrupt or truncated pickle ({err}); re-download or re-save it') from err
    except Exception as err:  # EOFError, ValueError, RuntimeError from a damaged tensor blob...
        raise pickle.UnpicklingError(f'{name}: corrupt or truncated pickle ({type(err).__name__}: {err}); '
                                     f're-download or re-save it') from err

#----------------------------------------------------------------------------

def load_network_pkl(f_or_path_or_url: Union[str, os.PathLike, BinaryIO],
                     device: Optional[Union[str, torch.device]] = None) -> dict:
    """Load a snapshot pickle (ours or official StyleGAN2-ADA) without running embedded code.

    Accepts a path, a file:// or http(s) URL (cached by dnnlib.open_url), an official
    short name (ffhq, metfaces, afhqcat, afhqdog, afhqwild, brecahad, cifar10) or an
    open binary file. Returns the snapshot dict with `training_set_kwargs` and
    `augment_pipe` present (None when absent); modules are our own classes, moved to
    `device` if given. Raises pickle.UnpicklingError naming the file for refused
    globals, legacy TensorFlow pickles and corrupt or truncated files.
    """
    name, spec = _resolve_source(f_or_path_or_url)
    _import_network_modules()
    if spec is None:
        data = _unpickle_safely(f_or_path_or_url, name)
    else:
        with dnnlib.util.open_url(spec) as f:
            data = _unpickle_safely(f, name)

    try:
        data = _Rebuilder().rebuild(data)
    except pickle.UnpicklingError as err:
        raise pickle.UnpicklingError(f'{name}: {err}') from err

    if isinstance(data, torch.nn.Module):
        raise pickle.UnpicklingError(f'{name}: holds a single {type(data).__name__}, not a snapshot dict '
                                     f'{{G, D, G_ema, ...}}; wrap it as dict(G_ema=...) when saving')
    if not isinstance(data, dict):
        raise pickle.UnpicklingError(f'{name}: expected a snapshot dict {{G, D, G_ema, ...}}, got {type(data).__name__}')
    data.setdefault('training_set_kwargs', None)
    data.setdefault('augment_pipe', None)
    for key in ('G', 'D', 'G_ema', 'augment_pipe'):
        value = data.get(key)
        if value is not None and not isinstance(value, torch.nn.Module):
            raise pickle.UnpicklingError(f'{name}: {key} is a {type(value).__name__}, expected a torch.nn.Module')
    if device is not None:
        for key, value in data.items():
            if isinstance(value, torch.nn.Module):
                data[key] = value.to(device)
    return data

#----------------------------------------------------------------------------

def save_snapshot(path: Union[str, os.PathLike], data: dict) -> None:
    """Pickle `data` to `path` atomically: write a temp file in the same folder, flush and
    fsync it, then os.replace it over `path`. A crash never leaves a half-written file
    where a good one was (at worst a stray `.<name>.*.tmp` next to it)."""
    if not isinstance(data, dict):
        raise TypeError(f'save_snapshot expects a dict {{G, D, G_ema, ...}}, got {type(data).__name__}')
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)

    # O_EXCL with a random name; mode 0o666 so the umask applies as for any new file.
    tmp_path = None
    for _ in range(100):
        candidate = os.path.join(folder, f'.{os.path.basename(path)}.{os.urandom(6).hex()}.tmp')
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0), 0o666)
        except FileExistsError:
            continue
        tmp_path = candidate
        break
    if tmp_path is None:
        raise OSError(f'{folder}: could not create a temporary file for {os.path.basename(path)}')

    try:
        with os.fdopen(fd, 'wb') as f:
            pickle.dump(data, f, protocol=PICKLE_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        tmp_path = None
    finally:
        if tmp_path is not None and os.path.exists(tmp_path):
            os.remove(tmp_path)
    _fsync_dir(folder)

def _fsync_dir(folder: str) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

#----------------------------------------------------------------------------
