"""A small multi-process layer that also works with one process (after the role of edm's
torch_utils/distributed.py; our own code).

`init()` reads the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT). Without it, or with WORLD_SIZE=1, it does nothing and every helper answers
for a single process (rank 0 of 1). The rendezvous has its own timeout and fails with a
message saying who did not show up, instead of hanging.
"""

import datetime
import os
from typing import Any, Optional

import torch

#----------------------------------------------------------------------------

def _env_int(name: str, default: Optional[int] = None) -> Optional[int]:
    text = os.environ.get(name)
    if text is None or text == '':
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f'environment variable {name}={text!r}: expected an integer '
                         f'(torchrun sets it; unset it to run a single process)') from None

#----------------------------------------------------------------------------

def init(backend: Optional[str] = None, timeout_s: float = 1800, rendezvous_timeout_s: float = 300) -> None:
    """Join the process group described by the environment, or do nothing for one process.

    backend:              'nccl' or 'gloo'; None picks NCCL when CUDA is available, else gloo.
    timeout_s:            limit for any later collective operation, in seconds.
    rendezvous_timeout_s: how long to wait for every rank to reach MASTER_ADDR:MASTER_PORT.
    Also sets the CUDA device to LOCAL_RANK (NCCL) and tells training_stats the rank.
    """
    world_size = _env_int('WORLD_SIZE', 1)
    rank = _env_int('RANK', 0)
    local_rank = _env_int('LOCAL_RANK', rank)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f'RANK={rank}, WORLD_SIZE={world_size}: expected 0 <= RANK < WORLD_SIZE')
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return  # Already joined (e.g. by the caller); nothing to do.

    from torch_utils import training_stats  # Here, not at import: no import-time coupling.
    if world_size == 1:
        training_stats.init_multiprocessing(rank=0, sync_device=None)
        return
    if not torch.distributed.is_available():
        raise RuntimeError('WORLD_SIZE > 1 but this PyTorch build has no torch.distributed')

    if backend is None:
        backend = 'nccl' if torch.cuda.is_available() else 'gloo'
    if backend not in ('nccl', 'gloo'):
        raise ValueError(f"backend={backend!r}: expected 'nccl', 'gloo' or None (automatic)")
    addr = os.environ.get('MASTER_ADDR', 'localhost')
    port = _env_int('MASTER_PORT')
    if port is None:
        raise ValueError('WORLD_SIZE > 1 needs MASTER_PORT (and MASTER_ADDR) in the environment; '
                         'start the processes with torchrun, which sets them')

    sync_device = None
    if backend == 'nccl':
        torch.cuda.set_device(local_rank)
        sync_device = torch.device('cuda', local_rank)

    # Rendezvous through a TCP store we create, so its wait has its own limit.
    try:
        store = torch.distributed.TCPStore(addr, port, world_size, is_master=(rank == 0),
                                           timeout=datetime.timedelta(seconds=rendezvous_timeout_s),
                                           wait_for_workers=True)
        torch.distributed.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size,
                                             timeout=datetime.timedelta(seconds=timeout_s))
    except Exception as err:  # The store and the backends raise several types; all mean the same here.
        raise RuntimeError(
            f'rank {rank} of {world_size} could not meet the other processes at {addr}:{port} within '
            f'{rendezvous_timeout_s:g} s ({type(err).__name__}: {err}). Check that all {world_size} processes '
            f'were started with the same MASTER_ADDR/MASTER_PORT, that rank 0 is running and reachable, and '
            f'that the port is free.') from err
    training_stats.init_multiprocessing(rank=rank, sync_device=sync_device)

#----------------------------------------------------------------------------

def is_initialized() -> bool:
    """True when this process is part of a torch.distributed process group."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()

def get_rank() -> int:
    """This process's rank (0 without torch.distributed)."""
    return torch.distributed.get_rank() if is_initialized() else 0

def get_world_size() -> int:
    """Number of processes (1 without torch.distributed)."""
    return torch.distributed.get_world_size() if is_initialized() else 1

def is_main() -> bool:
    """True on rank 0: the process that writes files and prints."""
    return get_rank() == 0

#----------------------------------------------------------------------------

def print0(*args: Any, **kwargs: Any) -> None:
    """`print` on rank 0 only."""
    if is_main():
        print(*args, **kwargs)

#----------------------------------------------------------------------------

def barrier() -> None:
    """Wait for every rank (a no-op for one process)."""
    if is_initialized():
        torch.distributed.barrier()

#----------------------------------------------------------------------------

def shutdown() -> None:
    """Leave the process group, if any."""
    if is_initialized():
        torch.distributed.destroy_process_group()

#----------------------------------------------------------------------------

