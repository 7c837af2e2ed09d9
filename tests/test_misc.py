"""Tests of torch_utils.misc: constant, assert_shape, InfiniteSampler, parameter copying,
ddp_sync and the module summary."""

import itertools
import re

import numpy as np
import pytest
import torch

from torch_utils import misc

#----------------------------------------------------------------------------

def test_constant_is_cached_and_correct():
    a = misc.constant([1.5, 2.5], dtype=torch.float64)
    assert a is misc.constant([1.5, 2.5], dtype=torch.float64)
    assert a is not misc.constant([1.5, 2.5], dtype=torch.float32)
    assert a.dtype == torch.float64 and a.tolist() == [1.5, 2.5]
    b = misc.constant(3, shape=[2, 3])
    assert b.shape == (2, 3) and torch.equal(b, torch.full([2, 3], 3.0)) and b.is_contiguous()
    c = misc.constant(np.arange(4).reshape(2, 2), dtype=torch.int64)
    assert torch.equal(c, torch.arange(4).reshape(2, 2))

#----------------------------------------------------------------------------

def test_assert_shape_accepts_matching_and_wildcards():
    misc.assert_shape(torch.zeros(2, 3, 4), [2, None, 4])
    misc.assert_shape(torch.zeros(0), [0])

def test_assert_shape_message_gives_expected_and_actual():
    with pytest.raises(ValueError, match=re.escape('expected shape [2, *, 5], got [2, 3, 4]')):
        misc.assert_shape(torch.zeros(2, 3, 4), [2, None, 5])
    with pytest.raises(AssertionError, match='dimensions'):   # Also an AssertionError, as officially.
        misc.assert_shape(torch.zeros(2, 3), [2, 3, 1])

#----------------------------------------------------------------------------

def _take(sampler, n):
    return list(itertools.islice(iter(sampler), n))

def _reference_sequence(n, seed, window_size, count):
    """The sampler's documented process, written as a plain loop over a Python list."""
    rnd = np.random.RandomState(seed)
    order = list(range(n))
    rnd.shuffle(order)
    window = int(np.rint(n * window_size))
    out = []
    for idx in range(count):
        i = idx % n
        out.append(order[i])
        if window >= 2:
            j = (i - rnd.randint(window)) % n
            order[i], order[j] = order[j], order[i]
    return out

def test_infinite_sampler_matches_reference_process():
    # 10,000 positions: past the sampler's internal chunk of random draws.
    assert _take(misc.InfiniteSampler(range(17), seed=3), 10000) == _reference_sequence(17, 3, 0.5, 10000)

def test_infinite_sampler_without_shuffle_cycles():
    assert _take(misc.InfiniteSampler(range(5), shuffle=False), 12) == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]

def test_infinite_sampler_window_zero_repeats_one_permutation():
    seq = _take(misc.InfiniteSampler(range(9), seed=5, window_size=0), 27)
    assert sorted(seq[:9]) == list(range(9)) and seq[:9] == seq[9:18] == seq[18:]

def test_infinite_sampler_ranks_partition_the_global_stream():
    n, replicas = 13, 3
    full = _take(misc.InfiniteSampler(range(n), seed=7), 60)
    for rank in range(replicas):
        shard = _take(misc.InfiniteSampler(range(n), rank=rank, num_replicas=replicas, seed=7), 20)
        assert shard == full[rank::replicas]

@pytest.mark.parametrize('start_idx', [0, 1, 12, 13, 50, 9001])
def test_infinite_sampler_resumes_at_start_idx(start_idx):
    n, replicas = 13, 2
    full = _take(misc.InfiniteSampler(range(n), seed=2), start_idx + 40)
    for rank in range(replicas):
        resumed = _take(misc.InfiniteSampler(range(n), rank=rank, num_replicas=replicas, seed=2,
                                             start_idx=start_idx), 10)
        expected = [full[i] for i in range(start_idx, start_idx + 40) if i % replicas == rank][:10]
        assert resumed == expected

def test_infinite_sampler_seed_changes_order():
    assert _take(misc.InfiniteSampler(range(50), seed=0), 50) != _take(misc.InfiniteSampler(range(50), seed=1), 50)

@pytest.mark.parametrize('kwargs, match', [
    (dict(dataset=[]), 'empty'),
    (dict(rank=2, num_replicas=2), 'rank'),
    (dict(window_size=1.5), 'window_size'),
    (dict(start_idx=-1), 'start_idx'),
])
def test_infinite_sampler_rejects_bad_arguments(kwargs, match):
    kwargs = dict(dict(dataset=range(4)), **kwargs)
    with pytest.raises(ValueError, match=match):
        misc.InfiniteSampler(**kwargs)

#----------------------------------------------------------------------------

class _Net(torch.nn.Module):
    def __init__(self, width, extra=False):
        super().__init__()
        self.a = torch.nn.Linear(4, width)
        self.b = torch.nn.Linear(width, 2)
        self.register_buffer('stat', torch.zeros([3]))
        if extra:
            self.c = torch.nn.Linear(2, 2)

def test_named_params_and_buffers_lists_everything():
    net = _Net(3)
    names = [name for name, _ in misc.named_params_and_buffers(net)]
    assert names == ['a.weight', 'a.bias', 'b.weight', 'b.bias', 'stat']
    assert [t for t in misc.params_and_buffers(net)] == [t for _, t in misc.named_params_and_buffers(net)]

def test_copy_params_and_buffers_copies_by_name_and_reports():
    torch.manual_seed(0)
    src, dst = _Net(3, extra=True), _Net(5)
    src.stat.fill_(2.0)
    dst.b.bias.requires_grad_(False)
    before = {n: t.clone() for n, t in misc.named_params_and_buffers(dst)}
    result = misc.copy_params_and_buffers(src, dst)
    assert sorted(result.copied) == ['b.bias', 'stat']
    assert sorted(result.unexpected) == ['c.bias', 'c.weight']
    assert result.missing == []
    assert sorted(n for n, _, _ in result.mismatched) == ['a.bias', 'a.weight', 'b.weight']
    assert ('a.weight', (3, 4), (5, 4)) in result.mismatched
    assert torch.equal(dst.b.bias, src.b.bias) and torch.equal(dst.stat, src.stat)
    assert torch.equal(dst.a.weight, before['a.weight'])        # Mismatched: untouched.
    assert dst.b.bias.requires_grad is False and dst.a.weight.requires_grad is True

def test_copy_params_and_buffers_from_dict_and_require_all():
    dst = _Net(3)
    state = {'a.weight': torch.ones(3, 4), 'stat': torch.full([3], 4.0)}
    result = misc.copy_params_and_buffers(state, dst)
    assert sorted(result.copied) == ['a.weight', 'stat'] and sorted(result.missing) == ['a.bias', 'b.bias', 'b.weight']
    assert torch.equal(dst.a.weight, torch.ones(3, 4))
    with pytest.raises(ValueError, match='missing from source: a.bias'):
        misc.copy_params_and_buffers(state, _Net(3), require_all=True)
    misc.copy_params_and_buffers(_Net(3), _Net(3), require_all=True)  # All there: fine.

#----------------------------------------------------------------------------

def test_ddp_sync_is_a_noop_for_plain_modules():
    net = _Net(2)
    for sync in (True, False):
        with misc.ddp_sync(net, sync):
            net.a(torch.ones(1, 4)).sum().backward()
    assert net.a.weight.grad is not None

#----------------------------------------------------------------------------

def test_print_module_summary_counts_and_shapes(capsys):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Sequential(torch.nn.ReLU(), torch.nn.BatchNorm2d(4)),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2))
    x = torch.randn(2, 3, 8, 8)
    net.eval()
    out = misc.print_module_summary(net, [x])
    assert torch.equal(out, net(x))
    lines = {line.split()[0]: line for line in capsys.readouterr().out.strip().splitlines() if line.strip()}
    rows = {name: line.split() for name, line in lines.items()}
    assert rows['0'][1] == f'{3 * 4 * 9 + 4:,}' and rows['0'][-1] == 'float32' and '[2, 4, 6, 6]' in lines['0']
    assert rows['1.1'][1] == '8' and rows['1.1'][2] == '9'      # BN: weight+bias, mean+var+count.
    assert '[2, 144]' in lines['2'] and '[2, 2]' in lines['3']
    total = sum(p.numel() for p in net.parameters())
    assert rows['Total'][1] == f'{total:,}' and rows['Total'][2] == '9'

#----------------------------------------------------------------------------
