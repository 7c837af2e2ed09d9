"""Statistics reported from anywhere in training, collected per tick (the StyleGAN2-ADA
`torch_utils.training_stats` interface).

`report(name, value)` adds the elements of `value` to three running moments of `name`
(count, sum, sum of squares) on the value's device, without a host sync. A `Collector`
reads, at each `update()`, what was reported since its previous update, summed over all
processes when torch.distributed is initialised, and gives count, mean and standard
deviation per name. Non-finite values are not filtered: a NaN makes the mean NaN, so a
diverging run is visible in stats.jsonl.

The accumulators are module state by design (any module may report); `reset()` clears
them, for tests.
"""

import re
from typing import Any, Optional, Union

import numpy as np
import torch

import dnnlib

#----------------------------------------------------------------------------

_num_moments = 3  # [count, sum, sum of squares]

_rank: Optional[int] = None                        # Set by init_multiprocessing(); else read from torch.distributed.
_sync_device: Optional[torch.device] = None        # Device for the all-reduce (CUDA for NCCL).
_counters: dict[str, dict[torch.device, torch.Tensor]] = {}  # name -> device -> moments since the last sync
_cumulative: dict[str, torch.Tensor] = {}          # name -> float64 CPU moments summed over ranks, all time

#----------------------------------------------------------------------------

def init_multiprocessing(rank: int, sync_device: Optional[Union[str, torch.device]]) -> None:
    """Tell the module this process's rank and the device used for the cross-rank
    reduction (a CUDA device for NCCL; None means CPU, for gloo)."""
    global _rank, _sync_device
    _rank = int(rank)
    _sync_device = torch.device(sync_device) if sync_device is not None else None

#----------------------------------------------------------------------------

def _is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1

def _get_rank() -> int:
    if _rank is not None:
        return _rank
    return torch.distributed.get_rank() if _is_distributed() else 0

def _counter_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == 'mps' else torch.float64  # MPS has no float64.

#----------------------------------------------------------------------------

def reset() -> None:
    """Forget everything reported and collected (collectors made before are stale)."""
    _counters.clear()
    _cumulative.clear()

#----------------------------------------------------------------------------

def report(name: str, value: Any) -> Any:
    """Add the elements of `value` (a tensor, number, list or numpy array; may be empty)
    to the statistic `name`. Returns `value` unchanged, so it can wrap an expression.

    Reporting an empty value registers the name with no data (what report0 does on
    ranks other than 0, so every rank knows the same names).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f'training_stats.report: name must be a non-empty string, got {name!r}')
    elems = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value, dtype=np.float64))
    elems = elems.detach().flatten()
    dtype = _counter_dtype(elems.device)
    elems = elems.to(dtype)
    moments = torch.stack([torch.ones_like(elems).sum(), elems.sum(), elems.square().sum()])
    by_device = _counters.setdefault(name, {})
    if elems.device in by_device:
        by_device[elems.device].add_(moments)
    else:
        by_device[elems.device] = moments
    return value

#----------------------------------------------------------------------------

def report0(name: str, value: Any) -> Any:
    """`report` on rank 0 only; other ranks register the name with no data."""
    report(name, value if _get_rank() == 0 else [])
    return value

#----------------------------------------------------------------------------

def _all_names() -> list[str]:
    """Every reported name, united over ranks, sorted (so every rank reduces the same vector)."""
    names = set(_counters) | set(_cumulative)
    if _is_distributed():
        gathered: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, sorted(names))
        names = set().union(*gathered)
    return sorted(names)

#----------------------------------------------------------------------------

def _sync(names: list[str]) -> None:
    """Move the per-device counters of `names` into `_cumulative`, summed over ranks.

    Collective: with torch.distributed initialised, every rank must call it together.
    """
    if not names:
        return
    device = _sync_device if _sync_device is not None else torch.device('cpu')
    dtype = _counter_dtype(device)
    deltas = []
    for name in names:
        delta = torch.zeros([_num_moments], dtype=dtype, device=device)
        for counter in _counters.get(name, {}).values():
            delta.add_(counter.to(device=device, dtype=dtype))
            counter.zero_()
        deltas.append(delta)
    deltas = torch.stack(deltas)
    if _is_distributed():
        torch.distributed.all_reduce(deltas)
    deltas = deltas.cpu().to(torch.float64)
    for name, delta in zip(names, deltas):
        _cumulative.setdefault(name, torch.zeros([_num_moments], dtype=torch.float64)).add_(delta)

#----------------------------------------------------------------------------

class Collector:
    """Reads the statistics reported since its previous `update()`.

    `regex` selects names (full match). With `keep_previous`, a name that got no new
    data keeps the values of the previous interval instead of dropping to count 0.
    `update()` is collective across ranks when torch.distributed is initialised.
    """

    def __init__(self, regex: str = '.*', keep_previous: bool = True):
        self._regex = re.compile(regex)
        self._keep_previous = keep_previous
        self._last: dict[str, torch.Tensor] = {}     # cumulative moments at the previous update
        self._moments: dict[str, torch.Tensor] = {}  # moments of the last interval
        self.update()
        self._moments.clear()

    def names(self) -> list[str]:
        """Names (matching the regex) known at the last update, sorted."""
        return sorted(self._moments)

    def update(self) -> None:
        """Collect everything reported since the previous update (by every rank)."""
        names = [name for name in _all_names() if self._regex.fullmatch(name)]
        _sync(names)
        if not self._keep_previous:
            self._moments.clear()
        for name in names:
            cumulative = _cumulative[name].clone()
            delta = cumulative - self._last.get(name, torch.zeros_like(cumulative))
            self._last[name] = cumulative
            if delta[0] != 0 or not self._keep_previous:
                self._moments[name] = delta

    def _get(self, name: str) -> torch.Tensor:
        if name not in self._moments:
            raise KeyError(f'no statistic named {name!r} in this collector; known: {", ".join(self.names()) or "none"}')
        return self._moments[name]

    def num(self, name: str) -> int:
        """Number of scalars reported for `name` in the last interval."""
        return int(self._get(name)[0])

    def mean(self, name: str) -> float:
        """Mean of those scalars (NaN if none, or if a NaN was reported)."""
        count, total, _ = self._get(name).tolist()
        return total / count if count != 0 else float('nan')

    def std(self, name: str) -> float:
        """Population standard deviation of those scalars (NaN if none)."""
        count, total, total_sq = self._get(name).tolist()
        if count == 0:
            return float('nan')
        mean = total / count
        return float(np.sqrt(max(total_sq / count - mean * mean, 0.0))) if np.isfinite(mean) else float('nan')

    def as_dict(self) -> dict[str, dnnlib.EasyDict]:
        """{name: EasyDict(num, mean, std)}: the per-tick record written to stats.jsonl."""
        return {name: dnnlib.EasyDict(num=self.num(name), mean=self.mean(name), std=self.std(name))
                for name in self.names()}

    def __getitem__(self, name: str) -> float:
        """`collector[name]` is `collector.mean(name)`."""
        return self.mean(name)

#----------------------------------------------------------------------------
