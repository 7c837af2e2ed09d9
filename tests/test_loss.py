"""Tests of training/loss.py (StyleGAN2Loss with CHAIN's 0MR) on a tiny 32 px G and D.

References: an independent autograd computation of R1 checked by finite differences,
spies on D's streams and on the augment pipe, the path-length formula written out, and
comparisons of gradients across 0MR weights.
"""
import copy

import numpy as np
import pytest
import torch

from torch_utils import training_stats
from training.chain import ChainController
from training.loss import StyleGAN2Loss
from training.networks import Discriminator, Generator

N = 4


#----------------------------------------------------------------------------
# Helpers.

def _nets(chain_kwargs=None, seed=0):
    torch.manual_seed(seed)
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=3,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=16))
    D = Discriminator(c_dim=0, img_resolution=32, img_channels=3, channel_base=256, channel_max=16,
        chain_kwargs=chain_kwargs)
    return G, D

def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    real = torch.rand([N, 3, 32, 32], generator=g) * 2 - 1
    return dict(real_img=real, real_c=torch.zeros([N, 0]), gen_z=torch.randn([N, 16], generator=g),
        gen_c=torch.zeros([N, 0]))

def _grads(module):
    return {n: (None if p.grad is None else p.grad.clone()) for n, p in module.named_parameters()}

def _zero(*modules):
    for module in modules:
        for p in module.parameters():
            p.grad = None

class _StreamSpy:
    """Wraps D.forward and records (stream, zmr_terms is a list, input image) per call."""

    def __init__(self, D):
        self.calls = []
        self._forward = D.forward
        D.forward = self

    def __call__(self, img, c, stream=None, zmr_terms=None, **kwargs):
        self.calls.append((stream, isinstance(zmr_terms, list), img.detach().clone()))
        return self._forward(img, c, stream=stream, zmr_terms=zmr_terms, **kwargs)

    @property
    def streams(self):
        return [(s, has_list) for s, has_list, _ in self.calls]

class _ScaleAugment(torch.nn.Module):
    """A stand-in augment pipe: images * 0.5 + 0.1, recording what it was given."""

    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, images):
        self.inputs.append(images.detach().clone())
        return images * 0.5 + 0.1

#----------------------------------------------------------------------------

@pytest.mark.parametrize('chain', [None, 'running'])
def test_each_phase_accumulates_only_into_its_network(chain):
    G, D = _nets(None if chain is None else dict(variant=chain))
    if chain is not None:
        D.chain_controller.p.fill_(1.0)
    loss = StyleGAN2Loss('cpu', G, D)
    batch = _batch()
    for phase, trained in [('Gmain', G), ('Greg', G), ('Gboth', G), ('Dmain', D), ('Dreg', D), ('Dboth', D)]:
        other = D if trained is G else G
        G.requires_grad_(True)  # Even when the caller leaves both trainable...
        D.requires_grad_(True)
        _zero(G, D)
        loss.accumulate_gradients(phase, gain=1, cur_nimg=0, **batch)
        assert all(p.grad is None for p in other.parameters()), phase  # ...the other network gets nothing,
        grads = [p.grad for p in trained.parameters() if p.grad is not None]
        assert len(grads) > 0 and all(torch.isfinite(g).all() for g in grads), phase
        assert sum(float(g.abs().sum()) for g in grads) > 0, phase
        assert all(p.requires_grad for p in G.parameters()) and all(p.requires_grad for p in D.parameters())
    with pytest.raises(ValueError, match='phase'):
        loss.accumulate_gradients('Dfoo', gain=1, cur_nimg=0, **batch)

def test_D_is_called_once_per_stream():
    G, D = _nets(dict(variant='running'))
    spy = _StreamSpy(D)
    loss = StyleGAN2Loss('cpu', G, D)
    expected = {
        'Gmain': [('fake_g', False)],
        'Greg':  [],
        'Gboth': [('fake_g', False)],
        'Dmain': [('fake_d', True), ('real', True)],
        'Dreg':  [('real', False)],
        'Dboth': [('fake_d', True), ('real', True)],
    }
    for phase, streams in expected.items():
        spy.calls.clear()
        loss.accumulate_gradients(phase, gain=1, cur_nimg=0, **_batch())
        assert spy.streams == streams, phase

def test_augment_is_applied_to_everything_D_sees():
    G, D = _nets()
    spy = _StreamSpy(D)
    aug = _ScaleAugment()
    loss = StyleGAN2Loss('cpu', G, D, augment_pipe=aug)
    batch = _batch()
    for phase in ['Gmain', 'Dmain', 'Dreg']:
        spy.calls.clear()
        aug.inputs.clear()
        loss.accumulate_gradients(phase, gain=1, cur_nimg=0, **batch)
        assert len(aug.inputs) == len(spy.calls) > 0
        for given, (_, _, seen) in zip(aug.inputs, spy.calls):
            torch.testing.assert_close(seen, given * 0.5 + 0.1)
        if phase != 'Gmain':
            torch.testing.assert_close(aug.inputs[-1], batch['real_img'])  # The reals, un-augmented, go in.

def _collect(fn):
    collector = training_stats.Collector(regex='Loss/.*', keep_previous=False)
    fn()
    collector.update()
    return collector

def _reported(stats):
    """Names that got data in the collector's last interval (names seen earlier have num 0)."""
    return {name for name in stats.names() if stats.num(name) > 0}

@pytest.mark.parametrize('with_augment', [False, True])
def test_r1_penalty_equals_independent_gradient(with_augment):
    G, D = _nets()
    aug = _ScaleAugment() if with_augment else None
    gamma, gain = 3.0, 16.0
    loss = StyleGAN2Loss('cpu', G, D, augment_pipe=aug, r1_gamma=gamma)
    batch = _batch()
    _zero(G, D)
    stats = _collect(lambda: loss.accumulate_gradients('Dreg', gain=gain, cur_nimg=0, **batch))
    got_grads = _grads(D)

    # Independent: grad_x of D(aug(x)) by plain autograd, checked by a directional finite
    # difference in float64 (D is piecewise linear with many kinks: float32 FD is useless).
    def logits(net, x):
        return net((x * 0.5 + 0.1) if with_augment else x, None).sum()

    D.requires_grad_(True)
    x = batch['real_img'].clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(logits(D, x), x, create_graph=True)
    D64, x64 = copy.deepcopy(D).double(), x.detach().double()
    direction = torch.randn_like(x64)
    h = 1e-6
    with torch.no_grad():
        fd = (logits(D64, x64 + h * direction) - logits(D64, x64 - h * direction)) / (2 * h)
    assert float(fd) == pytest.approx(float((gx.detach().double() * direction).sum()), rel=1e-3, abs=1e-6)
    penalty = gx.square().sum(dim=[1, 2, 3])
    assert stats.num('Loss/r1_penalty') == N
    assert stats.mean('Loss/r1_penalty') == pytest.approx(float(penalty.detach().mean()), rel=1e-4)
    assert stats.mean('Loss/D/reg') == pytest.approx(float(penalty.detach().mean()) * gamma / 2, rel=1e-4)
    # D's weight gradients are those of gain * mean(gamma / 2 * penalty).
    _zero(D)
    (penalty.mean() * gamma / 2 * gain).backward()
    for name, ref in _grads(D).items():
        if ref is None:
            assert got_grads[name] is None or float(got_grads[name].abs().max()) == 0, name
        else:
            torch.testing.assert_close(got_grads[name], ref, rtol=1e-4, atol=1e-6)

@pytest.mark.parametrize('variant', ['batch', 'running'])
def test_r1_with_chain_active_is_finite(variant):
    G, D = _nets(dict(variant=variant))
    D.chain_controller.p.fill_(1.0)
    loss = StyleGAN2Loss('cpu', G, D)
    stats = _collect(lambda: loss.accumulate_gradients('Dboth', gain=4, cur_nimg=0, **_batch()))
    assert np.isfinite(stats.mean('Loss/r1_penalty')) and stats.mean('Loss/r1_penalty') > 0
    grads = [p.grad for p in D.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)

def _phase_grads(phase, lambda_0mr, variant='batch', seed=5):
    G, D = _nets(dict(variant=variant, lambda_0mr=lambda_0mr, lambda_p0=0.1))
    D.chain_controller.p.fill_(0.5)
    loss = StyleGAN2Loss('cpu', G, D, style_mixing_prob=0.5)
    batch = _batch()
    torch.manual_seed(seed)  # Same style mixing, noise and CHAIN masks in every run.
    stats = _collect(lambda: loss.accumulate_gradients(phase, gain=1, cur_nimg=0, **batch))
    return _grads(G if phase.startswith('G') else D), stats, D

def test_zmr_enters_D_loss_only():
    # G's step: the 0MR weight changes nothing, to the last bit.
    g0, s0, _ = _phase_grads('Gmain', 0.0)
    g1, s1, _ = _phase_grads('Gmain', 50.0)
    assert all(torch.equal(g0[n], g1[n]) for n in g0 if g0[n] is not None)
    assert 'Loss/D/0mr' not in _reported(s1)
    # D's step: the gradient is affine in lambda (the 0MR term is linear in its weight) and moves.
    d0, _, _ = _phase_grads('Dmain', 0.0)
    d1, s_1, _ = _phase_grads('Dmain', 10.0)
    d2, s_2, _ = _phase_grads('Dmain', 20.0)
    moved = 0.0
    for name in d0:
        if d0[name] is None:
            continue
        torch.testing.assert_close(d2[name] - d1[name], d1[name] - d0[name], rtol=1e-3, atol=1e-5)
        moved += float((d1[name] - d0[name]).abs().sum())
    assert moved > 1e-3
    assert s_2.mean('Loss/D/0mr') == pytest.approx(2 * s_1.mean('Loss/D/0mr'), rel=1e-4)

def test_zmr_report_equals_weighted_sum_of_layer_terms():
    G, D = _nets(dict(variant='running', lambda_0mr=7.0, lambda_p0=0.1))
    D.chain_controller.p.fill_(0.3)
    terms = []
    forward = D.forward
    def spy(img, c, stream=None, zmr_terms=None, **kwargs):
        out = forward(img, c, stream=stream, zmr_terms=zmr_terms, **kwargs)
        if zmr_terms is not None:
            terms.extend(float(t.detach()) for t in zmr_terms)
        return out
    D.forward = spy
    loss = StyleGAN2Loss('cpu', G, D)
    stats = _collect(lambda: loss.accumulate_gradients('Dmain', gain=1, cur_nimg=0, **_batch()))
    assert len(terms) == 2 * 9  # Fake and real streams, 3 convs in each of 3 blocks.
    assert stats.mean('Loss/D/0mr') == pytest.approx(7.0 * (0.3 + 0.1) * sum(terms), rel=1e-5)

def test_real_logits_are_observed_on_D_main_passes_only():
    class AdaSpy:
        def __init__(self):
            self.seen = []
        def observe(self, logits):
            self.seen.append(logits.detach().clone())
    G, D = _nets(dict(variant='running'))
    ada = AdaSpy()
    loss = StyleGAN2Loss('cpu', G, D, ada=ada)
    for phase in ['Gmain', 'Greg', 'Dreg']:
        loss.accumulate_gradients(phase, gain=1, cur_nimg=0, **_batch())
    assert ada.seen == [] and D.chain_controller._acc is None
    stats = _collect(lambda: loss.accumulate_gradients('Dmain', gain=1, cur_nimg=0, **_batch()))
    assert len(ada.seen) == 1 and ada.seen[0].shape == (N, 1)
    np.testing.assert_allclose(float(ada.seen[0].sign().mean()), stats.mean('Loss/signs/real'), rtol=1e-6)
    acc = D.chain_controller._acc
    assert float(acc[1]) == N and float(acc[0]) == float(ada.seen[0].sign().sum())
    D.chain_controller.step(cur_nimg=N)
    assert float(D.chain_controller.r) == pytest.approx(0.1 * float(ada.seen[0].sign().mean()), abs=1e-7)

def test_reports_use_the_official_names():
    G, D = _nets(dict(variant='running'))
    loss = StyleGAN2Loss('cpu', G, D)
    def run():
        for phase in ['Gboth', 'Dboth']:
            loss.accumulate_gradients(phase, gain=1, cur_nimg=0, **_batch())
    stats = _collect(run)
    assert _reported(stats) == {'Loss/scores/real', 'Loss/scores/fake', 'Loss/signs/real', 'Loss/signs/fake',
        'Loss/G/loss', 'Loss/D/loss', 'Loss/r1_penalty', 'Loss/D/reg', 'Loss/pl_penalty', 'Loss/G/reg', 'Loss/D/0mr'}
    assert stats.num('Loss/scores/fake') == 2 * N  # G's and D's fake passes.
    assert stats.num('Loss/pl_penalty') == N // 2  # pl_batch_shrink 2.
    # Loss/D/loss = softplus(D(fake)) + softplus(-D(real)) per sample; check the signs' range.
    assert -1 <= stats.mean('Loss/signs/real') <= 1 and stats.mean('Loss/D/loss') > 0

def test_gain_scales_gradients():
    g1, _, _ = _phase_grads('Dmain', 5.0)
    G, D = _nets(dict(variant='batch', lambda_0mr=5.0, lambda_p0=0.1))
    D.chain_controller.p.fill_(0.5)
    loss = StyleGAN2Loss('cpu', G, D, style_mixing_prob=0.5)
    batch = _batch()
    torch.manual_seed(5)
    loss.accumulate_gradients('Dmain', gain=3.0, cur_nimg=0, **batch)
    for name, g in _grads(D).items():
        if g is not None:
            torch.testing.assert_close(g, 3.0 * g1[name], rtol=1e-4, atol=1e-4 * float(g.abs().max()))

def test_path_length_penalty_matches_formula():
    G, D = _nets()
    loss = StyleGAN2Loss('cpu', G, D, style_mixing_prob=0.0, pl_weight=2.0, pl_decay=0.01)
    batch = _batch()
    torch.manual_seed(9)
    stats = _collect(lambda: loss.accumulate_gradients('Greg', gain=1, cur_nimg=0, **batch))
    # Written out: lengths = sqrt(mean_i ||d(sum img * y)/d w_i||^2), y ~ N(0, 1) / sqrt(H W).
    torch.manual_seed(9)
    ws = G.mapping(batch['gen_z'][:N // 2], batch['gen_c'][:N // 2]).detach().requires_grad_(True)
    img = G.synthesis(ws)
    y = torch.randn_like(img) / 32.0
    (grads,) = torch.autograd.grad((img * y).sum(), ws)
    lengths = grads.square().sum(dim=2).mean(dim=1).sqrt()
    pl_mean = 0.01 * float(lengths.mean())  # From 0 with decay 0.01.
    assert float(loss.pl_mean) == pytest.approx(pl_mean, rel=1e-4)
    assert stats.mean('Loss/pl_penalty') == pytest.approx(float((lengths - pl_mean).square().mean()), rel=1e-4)
    assert stats.mean('Loss/G/reg') == pytest.approx(2.0 * stats.mean('Loss/pl_penalty'), rel=1e-5)

def test_style_mixing_cutoff_and_probability():
    G, D = _nets()
    captured = []
    def spy(ws, **kwargs):  # Records ws; skips the (slow, irrelevant) synthesis.
        captured.append(ws.detach().clone())
        return torch.zeros([ws.shape[0], 3, 32, 32])
    G.synthesis.forward = spy
    torch.manual_seed(2)
    z, c = torch.randn([N, 16]), torch.zeros([N, 0])
    cutoffs = []
    for prob in [0.0, 1.0]:
        loss = StyleGAN2Loss('cpu', G, D, style_mixing_prob=prob)
        for _ in range(25):
            captured.clear()
            loss.run_G(z, c)
            ws = captured[0]
            same = [bool(torch.equal(ws[:, i], ws[:, 0])) for i in range(ws.shape[1])]
            if prob == 0:
                assert all(same)
            else:  # The first `cutoff` ws from z, the rest from a second latent.
                cutoff = same.index(False)
                assert same == [True] * cutoff + [False] * (len(same) - cutoff)
                cutoffs.append(cutoff)
    assert set(cutoffs) == set(range(1, G.num_ws))  # Every cutoff in [1, num_ws) occurs.
    loss = StyleGAN2Loss('cpu', G, D, style_mixing_prob=0.9)
    mixed = 0
    for _ in range(200):
        captured.clear()
        loss.run_G(z, c)
        mixed += not torch.equal(captured[0][:, -1], captured[0][:, 0])
    assert abs(mixed / 200 - 0.9) < 5 * np.sqrt(0.9 * 0.1 / 200)  # Per batch, probability 0.9.

def test_bad_loss_options_are_rejected():
    G, D = _nets()
    with pytest.raises(ValueError, match='r1_gamma'):
        StyleGAN2Loss('cpu', G, D, r1_gamma=-1)
    with pytest.raises(ValueError, match='style_mixing_prob'):
        StyleGAN2Loss('cpu', G, D, style_mixing_prob=1.5)
    with pytest.raises(ValueError, match='pl_batch_shrink'):
        StyleGAN2Loss('cpu', G, D, pl_batch_shrink=0)

#----------------------------------------------------------------------------
