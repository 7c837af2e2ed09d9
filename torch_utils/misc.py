"""Small PyTorch helpers used across the toolkit (the `torch_utils.misc` interface of StyleGAN2-ADA).

- `constant`: cached constant tensors (no re-upload per call).
- `assert_shape`: shape checks with a message giving expected and actual shapes.
- `InfiniteSampler`: an endless, rank-sharded, window-shuffled index stream that can
  restart at any position of its sequence (exact resume).
- `params_and_buffers`, `named_params_and_buffers`, `copy_params_and_buffers`: copy
  weights by name, reporting what did not match (transfer learning across configs).
- `ddp_sync`, `check_ddp_consistency`: multi-process helpers.
- `print_module_summary`: a table of submodules, parameter counts and output shapes.
"""

import contextlib
import re
import warnings
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import torch

import dnnlib

#----------------------------------------------------------------------------

_constant_cache: dict[tuple, torch.Tensor] = {}

def constant(value: Any, shape: Optional[Sequence[int]] = None, dtype: Optional[torch.dtype] = None,
             device: Optional[Union[str, torch.device]] = None,
             memory_format: Optional[torch.memory_format] = None) -> torch.Tensor:
    """A cached constant tensor made from `value` (number, list, numpy array or tensor).

    `shape` broadcasts the value. The same arguments return the same tensor object,
    so callers must never modify it in place.
    """
    value = np.asarray(value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value)
    if shape is not None:
        shape = tuple(int(s) for s in shape)
    if dtype is None:
        dtype = torch.get_default_dtype()
    if device is None:
        device = torch.device('cpu')
    device = torch.device(device)
    if memory_format is None:
        memory_format = torch.contiguous_format

    key = (value.shape, value.dtype, value.tobytes(), shape, dtype, device, memory_format)
    tensor = _constant_cache.get(key)
    if tensor is None:
        tensor = torch.as_tensor(value.copy(), dtype=dtype, device=device)
        if shape is not None:
            tensor, _ = torch.broadcast_tensors(tensor, torch.empty(shape))
        tensor = tensor.contiguous(memory_format=memory_format)
        _constant_cache[key] = tensor
    return tensor

#----------------------------------------------------------------------------

def nan_to_num(input: torch.Tensor, nan: float = 0.0, posinf: Optional[float] = None,
               neginf: Optional[float] = None) -> torch.Tensor:
    """`torch.nan_to_num` (kept under this name for code written against the official misc)."""
    return torch.nan_to_num(input, nan=nan, posinf=posinf, neginf=neginf)

#----------------------------------------------------------------------------

@contextlib.contextmanager
def suppress_tracer_warnings() -> Iterator[None]:
    """Silence `torch.jit.TracerWarning` inside the block (e.g. shape checks during tracing)."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        yield

#----------------------------------------------------------------------------

class ShapeError(ValueError, AssertionError):
    """A tensor has the wrong shape. Also an AssertionError, as in the official code."""

#----------------------------------------------------------------------------

def assert_shape(tensor: torch.Tensor, ref_shape: Sequence[Optional[int]]) -> None:
    """Check `tensor.shape` against `ref_shape`, where None matches any size.

    Raises ShapeError (a ValueError) giving the expected and the actual shape.
    Under tracing, tensor-valued sizes are checked with `torch._assert`.
    """
    shape = tuple(tensor.shape)
    pretty_ref = '[' + ', '.join('*' if s is None else str(int(s)) for s in ref_shape) + ']'
    if len(shape) != len(ref_shape):
        raise ShapeError(f'wrong number of dimensions: expected shape {pretty_ref} '
                         f'({len(ref_shape)} dims), got {list(shape)} ({len(shape)} dims)')
    for idx, (size, ref_size) in enumerate(zip(shape, ref_shape)):
        if ref_size is None:
            continue
        if isinstance(ref_size, torch.Tensor) or isinstance(size, torch.Tensor):
            with suppress_tracer_warnings():
                torch._assert(torch.as_tensor(size) == torch.as_tensor(ref_size),
                              f'wrong size for dimension {idx}: expected shape {pretty_ref}')
        elif int(size) != int(ref_size):
            raise ShapeError(f'wrong size for dimension {idx}: expected shape {pretty_ref}, got {list(shape)}')

#----------------------------------------------------------------------------

class InfiniteSampler(torch.utils.data.Sampler):
    """Endless stream of dataset indices, sharded over ranks, shuffled within a sliding window.

    One global sequence is drawn (seeded); position `idx` of it goes to rank
    `idx % num_replicas`. After an item is visited, it is swapped with one of the
    previous `window_size * len(dataset)` positions, so the order keeps changing epoch
    to epoch while staying reproducible. `start_idx` starts the stream at that global
    position (e.g. `cur_nimg` on resume), giving exactly the items an uninterrupted
    run would have given from there.
    """

    def __init__(self, dataset: Any, rank: int = 0, num_replicas: int = 1, shuffle: bool = True,
                 seed: int = 0, window_size: float = 0.5, start_idx: int = 0):
        if len(dataset) <= 0:
            raise ValueError('InfiniteSampler: the dataset is empty; expected at least one item')
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f'InfiniteSampler: expected 0 <= rank < num_replicas, got rank={rank}, '
                             f'num_replicas={num_replicas}')
        if not 0 <= window_size <= 1:
            raise ValueError(f'InfiniteSampler: window_size is a fraction of the dataset in [0, 1], got {window_size}')
        if start_idx < 0:
            raise ValueError(f'InfiniteSampler: start_idx must be >= 0, got {start_idx}')
        super().__init__()
        self.dataset = dataset
        self.rank = rank
        self.num_replicas = num_replicas
        self.shuffle = shuffle
        self.seed = seed
        self.window_size = window_size
        self.start_idx = start_idx

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        order = np.arange(n)
        draws = None
        if self.shuffle:
            rnd = np.random.RandomState(self.seed)
            rnd.shuffle(order)
            window = int(np.rint(n * self.window_size))
            if window >= 2:
                draws = self._draws(rnd, window)
        order = order.tolist()  # Python ints: element swaps are much cheaper than on an ndarray.

        # Replay the swaps of the positions before start_idx (integer work only).
        if draws is not None:
            for idx in range(self.start_idx):
                i = idx % n
                j = (i - next(draws)) % n
                order[i], order[j] = order[j], order[i]

        # The stream itself: yield this rank's positions, swapping after every visit.
        idx = self.start_idx
        while True:
            i = idx % n
            if idx % self.num_replicas == self.rank:
                yield order[i]
            if draws is not None:
                j = (i - next(draws)) % n
                order[i], order[j] = order[j], order[i]
            idx += 1

    @staticmethod
    def _draws(rnd: np.random.RandomState, window: int, chunk: int = 4096) -> Iterator[int]:
        """rnd.randint(window) per visited position, drawn in chunks (the same stream)."""
        while True:
            yield from rnd.randint(window, size=chunk).tolist()

#----------------------------------------------------------------------------

def params_and_buffers(module: torch.nn.Module) -> list[torch.Tensor]:
    """All parameters, then all buffers, of a module and its submodules."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f'expected a torch.nn.Module, got {type(module).__name__}')
    return list(module.parameters()) + list(module.buffers())

#----------------------------------------------------------------------------

def named_params_and_buffers(module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) of all parameters, then all buffers, e.g. ('mapping.fc0.weight', ...)."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f'expected a torch.nn.Module, got {type(module).__name__}')
    return list(module.named_parameters()) + list(module.named_buffers())

#----------------------------------------------------------------------------

def copy_params_and_buffers(src_module: Union[torch.nn.Module, Mapping[str, torch.Tensor]],
                            dst_module: torch.nn.Module, require_all: bool = False,
                            verbose: bool = False) -> dnnlib.EasyDict:
    """Copy parameters and buffers by name from `src_module` (a module or a name->tensor
    mapping) into `dst_module`, in place, keeping each destination's requires_grad.

    Returns EasyDict(copied, missing, unexpected, mismatched): lists of names copied,
    destination names absent from the source, source names absent from the destination,
    and (name, src_shape, dst_shape) skipped for a shape mismatch.
    With `require_all`, anything missing or mismatched raises ValueError listing it.
    With `verbose`, prints what was not copied.
    """
    if isinstance(src_module, torch.nn.Module):
        src = dict(named_params_and_buffers(src_module))
    elif isinstance(src_module, Mapping):
        src = dict(src_module)
    else:
        raise TypeError(f'copy_params_and_buffers: src must be a module or a name->tensor mapping, '
                        f'got {type(src_module).__name__}')
    dst = dict(named_params_and_buffers(dst_module))

    result = dnnlib.EasyDict(copied=[], missing=[], unexpected=sorted(set(src) - set(dst)), mismatched=[])
    for name, tensor in dst.items():
        if name not in src:
            result.missing.append(name)
        elif tuple(src[name].shape) != tuple(tensor.shape):
            result.mismatched.append((name, tuple(src[name].shape), tuple(tensor.shape)))
        else:
            result.copied.append(name)

    if require_all and (result.missing or result.mismatched):
        lines = [f'  missing from source: {n}' for n in result.missing]
        lines += [f'  shape mismatch: {n}: source {list(s)} vs destination {list(d)}' for n, s, d in result.mismatched]
        raise ValueError(f'copy_params_and_buffers(require_all=True): {len(lines)} tensors cannot be copied:\n'
                         + '\n'.join(lines))

    with torch.no_grad():
        for name in result.copied:
            dst[name].copy_(src[name].detach())

    if verbose and (result.missing or result.unexpected or result.mismatched):
        print(f'Copied {len(result.copied)} of {len(dst)} tensors by name.')
        for name in result.missing:
            print(f'  kept initial value (not in source): {name}')
        for name, s, d in result.mismatched:
            print(f'  kept initial value (shape {list(s)} in source, {list(d)} here): {name}')
        for name in result.unexpected:
            print(f'  ignored (no such tensor here): {name}')
    return result

#----------------------------------------------------------------------------

@contextlib.contextmanager
def ddp_sync(module: torch.nn.Module, sync: bool) -> Iterator[None]:
    """Within the block, skip DDP's gradient all-reduce when `sync` is False
    (gradient accumulation); a no-op for modules that are not DistributedDataParallel."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f'expected a torch.nn.Module, got {type(module).__name__}')
    if sync or not isinstance(module, torch.nn.parallel.DistributedDataParallel):
        yield
    else:
        with module.no_sync():
            yield

#----------------------------------------------------------------------------

def check_ddp_consistency(module: torch.nn.Module, ignore_regex: Optional[str] = None) -> None:
    """Check that every rank holds the same parameters and buffers as rank 0.

    Raises RuntimeError naming the first tensor that differs. NaNs compare equal to NaNs.
    Names matching `ignore_regex` are skipped. A no-op without torch.distributed.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    for name, tensor in named_params_and_buffers(module):
        fullname = type(module).__name__ + '.' + name
        if ignore_regex is not None and re.fullmatch(ignore_regex, fullname):
            continue
        tensor = tensor.detach()
        other = tensor.clone()
        torch.distributed.broadcast(tensor=other, src=0)
        same = (tensor == other)
        if tensor.is_floating_point():
            same = same | (tensor.isnan() & other.isnan())
        if not bool(same.all()):
            raise RuntimeError(f'rank {torch.distributed.get_rank()} differs from rank 0 in {fullname}')

#----------------------------------------------------------------------------

def _flatten_tensors(obj: Any) -> list[torch.Tensor]:
    """Tensors inside nested tuples/lists/dicts, in order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in _flatten_tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _flatten_tensors(item)]
    return []

#----------------------------------------------------------------------------

def print_module_summary(module: torch.nn.Module, inputs: Union[Sequence[Any], Any], max_nesting: int = 3,
                         skip_redundant: bool = True) -> Any:
    """Run `module(*inputs)` and print a table of its submodules: parameter and buffer
    counts, output shapes and dtypes (collected with forward hooks). Returns the outputs.

    Submodules deeper than `max_nesting` are folded into their parent; with
    `skip_redundant`, rows with no parameters, buffers or outputs of their own are dropped.
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f'expected a torch.nn.Module, got {type(module).__name__}')
    if not isinstance(inputs, (tuple, list)):
        inputs = [inputs]

    # Record every submodule's outputs, outermost call only (nesting depth 0 inside it).
    entries = []
    depth = [0]

    def pre_hook(_mod, _inputs):
        depth[0] += 1

    def post_hook(mod, _inputs, outputs):
        depth[0] -= 1
        if depth[0] <= max_nesting:
            entries.append(dnnlib.EasyDict(mod=mod, outputs=_flatten_tensors(outputs)))

    hooks = [m.register_forward_pre_hook(pre_hook) for m in module.modules()]
    hooks += [m.register_forward_hook(post_hook) for m in module.modules()]
    try:
        outputs = module(*inputs)
    finally:
        for hook in hooks:
            hook.remove()

    # Attribute each tensor to one row only: the first (innermost) module that owns it.
    seen = set()
    for e in entries:
        e.params = [t for t in e.mod.parameters() if id(t) not in seen]
        e.buffers = [t for t in e.mod.buffers() if id(t) not in seen]
        e.outputs = [t for t in e.outputs if id(t) not in seen]
        seen |= {id(t) for t in e.params + e.buffers + e.outputs}
    if skip_redundant:
        entries = [e for e in entries if e.params or e.buffers or e.outputs]

    # Table.
    names = {mod: name for name, mod in module.named_modules()}
    rows = [[type(module).__name__, 'Parameters', 'Buffers', 'Output shape', 'Datatype'], ['---'] * 5]
    for e in entries:
        name = '<top-level>' if e.mod is module else names.get(e.mod, '?')
        shapes = [str(list(t.shape)) for t in e.outputs] or ['-']
        dtypes = [str(t.dtype).split('.')[-1] for t in e.outputs] or ['-']
        rows.append([name,
                     f'{sum(t.numel() for t in e.params):,}' if e.params else '-',
                     f'{sum(t.numel() for t in e.buffers):,}' if e.buffers else '-',
                     shapes[0], dtypes[0]])
        rows += [['', '', '', s, d] for s, d in zip(shapes[1:], dtypes[1:])]
    n_params = sum(t.numel() for t in module.parameters())
    n_buffers = sum(t.numel() for t in module.buffers())
    rows += [['---'] * 5, ['Total', f'{n_params:,}', f'{n_buffers:,}', '-', '-']]

    widths = [max(len(cell) for cell in column) for column in zip(*rows)]
    print()
    for row in rows:
        print('  '.join(cell + ' ' * (w - len(cell)) for cell, w in zip(row, widths)).rstrip())
    print()
    return outputs

#----------------------------------------------------------------------------
