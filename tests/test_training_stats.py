"""Tests of torch_utils.training_stats (moments against numpy, Collector semantics) and, in a
real 2-process gloo group on 127.0.0.1, of the cross-rank reduction, torch_utils.distributed
and misc.check_ddp_consistency."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from torch_utils import training_stats

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

#----------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def fresh_stats():
    training_stats.reset()
    yield
    training_stats.reset()

def _expect(values):
    values = np.asarray(values, dtype=np.float64)
    return dict(num=values.size, mean=values.mean(), std=values.std())

def _assert_stats(collector, name, values):
    expected = _expect(values)
    assert collector.num(name) == expected['num']
    assert collector.mean(name) == pytest.approx(expected['mean'], rel=1e-12, abs=1e-12)
    assert collector.std(name) == pytest.approx(expected['std'], rel=1e-9, abs=1e-12)

#----------------------------------------------------------------------------

def test_moments_match_numpy():
    torch.manual_seed(0)
    collector = training_stats.Collector()
    a = torch.randn(7, 3)
    b = torch.randn(5, dtype=torch.float16)
    training_stats.report('Loss/x', a)
    training_stats.report('Loss/x', b)
    training_stats.report('Loss/x', 2.5)
    training_stats.report('Loss/x', [1, 2])
    training_stats.report('Loss/y', np.arange(4))
    collector.update()
    _assert_stats(collector, 'Loss/x', np.concatenate([a.flatten().numpy(), b.float().numpy(), [2.5, 1, 2]]))
    _assert_stats(collector, 'Loss/y', np.arange(4))
    assert collector['Loss/y'] == collector.mean('Loss/y')
    record = collector.as_dict()
    assert set(record) == {'Loss/x', 'Loss/y'} and record['Loss/y'].num == 4 and record['Loss/y'].mean == 1.5

def test_report_returns_its_argument():
    value = torch.tensor([1.0, 2.0])
    assert training_stats.report('a', value) is value

def test_collector_sees_only_what_came_after_its_previous_update():
    collector = training_stats.Collector()
    training_stats.report('v', [1.0, 2.0])
    collector.update()
    training_stats.report('v', [10.0])
    collector.update()
    _assert_stats(collector, 'v', [10.0])

def test_collector_ignores_reports_made_before_it_existed():
    training_stats.report('early', [5.0])
    collector = training_stats.Collector()
    training_stats.report('early', [1.0, 3.0])
    collector.update()
    _assert_stats(collector, 'early', [1.0, 3.0])

def test_two_collectors_are_independent():
    first = training_stats.Collector()
    training_stats.report('v', [1.0])
    first.update()
    second = training_stats.Collector()
    training_stats.report('v', [3.0, 5.0])
    first.update()
    second.update()
    _assert_stats(first, 'v', [3.0, 5.0])
    _assert_stats(second, 'v', [3.0, 5.0])

def test_keep_previous():
    keep = training_stats.Collector(keep_previous=True)
    drop = training_stats.Collector(keep_previous=False)
    training_stats.report('v', [4.0])
    keep.update()
    drop.update()
    keep.update()    # Nothing new.
    drop.update()
    _assert_stats(keep, 'v', [4.0])
    assert drop.num('v') == 0 and np.isnan(drop.mean('v'))

def test_regex_selects_names():
    collector = training_stats.Collector(regex='Loss/.*')
    training_stats.report('Loss/G/loss', 1.0)
    training_stats.report('Timing/x', 1.0)
    collector.update()
    assert collector.names() == ['Loss/G/loss']
    with pytest.raises(KeyError, match='Timing/x'):
        collector.num('Timing/x')

def test_nan_stays_visible():
    collector = training_stats.Collector()
    training_stats.report('v', [1.0, float('nan')])
    collector.update()
    assert collector.num('v') == 2 and np.isnan(collector.mean('v'))

def test_report0_on_single_process_reports():
    collector = training_stats.Collector()
    training_stats.report0('v', [2.0])
    training_stats.report('empty', [])
    collector.update()
    _assert_stats(collector, 'v', [2.0])
    assert 'empty' not in collector.names()   # Registered, but no data yet.

def test_report_rejects_bad_names():
    with pytest.raises(ValueError, match='name'):
        training_stats.report('', 1.0)

#----------------------------------------------------------------------------
# Two real processes.

WORKER = textwrap.dedent('''
    import json, sys, torch
    sys.path.insert(0, sys.argv[1])
    from torch_utils import distributed, misc, training_stats

    distributed.init(backend='gloo', rendezvous_timeout_s=60)
    rank = distributed.get_rank()
    out = dict(rank=rank, world_size=distributed.get_world_size(), is_main=distributed.is_main())

    collector = training_stats.Collector()
    training_stats.report('shared', torch.arange(rank * 10, rank * 10 + 3 + rank, dtype=torch.float32))
    training_stats.report0('only0', [7.0, 9.0])
    if rank == 1:
        training_stats.report('rank1_only', [4.0])   # A name the other rank never reports.
    collector.update()
    out['stats'] = {name: [collector.num(name), collector.mean(name), collector.std(name)] for name in collector.names()}

    # Consistency check: equal modules pass; a rank-specific value is caught.
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    misc.check_ddp_consistency(net)
    with torch.no_grad():
        net.bias[0] += rank
    try:
        misc.check_ddp_consistency(net)
        out['inconsistency'] = None
    except RuntimeError as err:
        out['inconsistency'] = str(err)
    distributed.barrier()
    distributed.shutdown()
    print('RESULT ' + json.dumps(out))
''')

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

def _spawn(script: pathlib.Path, rank: int, world_size: int, port: int) -> subprocess.Popen:
    env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
               MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), OMP_NUM_THREADS='1')
    return subprocess.Popen([sys.executable, str(script), str(REPO_ROOT)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

def test_two_ranks_see_combined_moments(tmp_path):
    script = tmp_path / 'worker.py'
    script.write_text(WORKER)
    port = _free_port()
    procs = [_spawn(script, rank, 2, port) for rank in range(2)]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr[-3000:]
        line = [l for l in stdout.splitlines() if l.startswith('RESULT ')][-1]
        results.append(json.loads(line[len('RESULT '):]))

    shared = np.concatenate([np.arange(0, 3), np.arange(10, 14)])
    for rank, out in enumerate(results):
        assert out['rank'] == rank and out['world_size'] == 2 and out['is_main'] == (rank == 0)
        for name, values in [('shared', shared), ('only0', [7.0, 9.0]), ('rank1_only', [4.0])]:
            num, mean, std = out['stats'][name]
            assert num == len(values)
            assert mean == pytest.approx(np.mean(values), rel=1e-12)
            assert std == pytest.approx(np.std(values), rel=1e-9)
    assert results[0]['inconsistency'] is None                         # Rank 0 is the reference.
    assert 'rank 1 differs from rank 0 in Linear.bias' in results[1]['inconsistency']

#----------------------------------------------------------------------------

def test_rendezvous_timeout_is_a_clear_error(monkeypatch):
    # Rank 0 of 2, and rank 1 never comes: the store fails before any process group exists,
    # so this can run in the test process itself.
    from torch_utils import distributed
    port = _free_port()
    for key, value in dict(RANK='0', WORLD_SIZE='2', MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port)).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(RuntimeError) as info:
        distributed.init(backend='gloo', rendezvous_timeout_s=2)
    message = str(info.value)
    assert f'127.0.0.1:{port}' in message and 'rank 0 of 2' in message and 'within 2 s' in message
    assert not distributed.is_initialized()

def test_init_rejects_bad_environment(monkeypatch):
    from torch_utils import distributed
    monkeypatch.setenv('WORLD_SIZE', 'two')
    with pytest.raises(ValueError, match='WORLD_SIZE'):
        distributed.init()
    monkeypatch.setenv('WORLD_SIZE', '2')
    monkeypatch.setenv('RANK', '2')
    with pytest.raises(ValueError, match='RANK'):
        distributed.init()

#----------------------------------------------------------------------------

def test_distributed_helpers_without_a_group(capsys):
    from torch_utils import distributed
    assert distributed.get_rank() == 0 and distributed.get_world_size() == 1 and distributed.is_main()
    distributed.barrier()
    distributed.print0('hello')
    assert capsys.readouterr().out == 'hello\n'

#----------------------------------------------------------------------------
