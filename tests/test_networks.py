"""Tests of training/networks.py: official names and numbers, numerical conformance with the
official tiny16 fixture, the CHAIN seam, truncation, noise, w_avg, modulated conv, gradients
and argument checks. Everything runs on CPU with tiny networks except the name/shape check,
which only constructs the official-size configs."""
import copy
import json
import math
import pickle
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import bias_act
from training import networks
from training.networks import Conv2dLayer, Discriminator, Generator, MappingNetwork, MinibatchStdLayer

#----------------------------------------------------------------------------
# Helpers.

def tiny_G(c_dim=0, res=16, architecture='skip', **synthesis_kwargs) -> Generator:
    kwargs = dict(channel_base=128, channel_max=16, architecture=architecture)
    kwargs.update(synthesis_kwargs)
    return Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=res, img_channels=3,
                     mapping_kwargs=dict(num_layers=2), synthesis_kwargs=kwargs)

def tiny_D(c_dim=0, res=16, architecture='resnet', img_channels=3, **kwargs) -> Discriminator:
    kwargs.setdefault('channel_base', 128)
    kwargs.setdefault('channel_max', 16)
    kwargs.setdefault('epilogue_kwargs', dict(mbstd_group_size=2))
    return Discriminator(c_dim=c_dim, img_resolution=res, img_channels=img_channels, architecture=architecture, **kwargs)

def names_shapes_kinds(module: torch.nn.Module) -> dict:
    out = {name: (list(p.shape), 'param') for name, p in module.named_parameters()}
    out.update({name: (list(b.shape), 'buffer') for name, b in module.named_buffers()})
    return out

def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturb every parameter (zero-initialised biases and noise strengths would hide mix-ups)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return module

def one_hot(labels, c_dim):
    return F.one_hot(torch.as_tensor(labels), c_dim).to(torch.float32)

#----------------------------------------------------------------------------
# Official names, shapes, parameter counts and num_ws.

@pytest.mark.parametrize('config', ['paper256', 'lowshot256', 'cond32_small', 'cifar_orig_gray'])
def test_names_shapes_and_counts_match_official(compat_dir, config):
    spec = json.loads((compat_dir / 'official_state_keys.json').read_text())[config]
    torch.manual_seed(0)
    G = Generator(**spec['G_kwargs'])
    expected_G = {name: (shape, kind) for name, shape, kind in spec['G']}
    assert names_shapes_kinds(G) == expected_G
    assert sum(p.numel() for p in G.parameters()) == spec['G_num_params']
    assert G.num_ws == spec['G_num_ws'] == G.mapping.num_ws
    del G
    D = Discriminator(**spec['D_kwargs'])
    expected_D = {name: (shape, kind) for name, shape, kind in spec['D']}
    assert names_shapes_kinds(D) == expected_D
    assert sum(p.numel() for p in D.parameters()) == spec['D_num_params']

#----------------------------------------------------------------------------
# Numerical conformance with the official tiny16 networks.

def _tiny16_pair(compat_dir):
    weights = np.load(compat_dir / 'official_tiny16_weights.npz')
    G = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=256, channel_max=32, num_fp16_res=0, conv_clamp=None)).eval()
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=256, channel_max=32, num_fp16_res=0,
                      conv_clamp=None, epilogue_kwargs=dict(mbstd_group_size=2)).eval()
    for prefix, net in (('G.', G), ('D.', D)):
        state = {k[len(prefix):]: torch.from_numpy(weights[k]) for k in weights.files if k.startswith(prefix)}
        net.load_state_dict(state, strict=True)  # Every official name present, no extra one.
    return G, D

def _capture(module, key, acts, tuple_index=None):
    def hook(_module, _inputs, output):
        acts[key] = (output[tuple_index] if tuple_index is not None else output).detach().clone()
    return module.register_forward_hook(hook)

@pytest.mark.parametrize('fused_modconv', [False, True])
def test_tiny16_reproduces_official_outputs_block_by_block(compat_dir, fused_modconv):
    G, D = _tiny16_pair(compat_dir)
    ref = np.load(compat_dir / 'official_tiny16_outputs.npz')
    z = torch.from_numpy(np.random.RandomState(11).randn(4, 32).astype(np.float32))
    np.testing.assert_array_equal(z.numpy(), ref['z'])
    acts = {}
    with torch.no_grad():
        got = {'ws': G.mapping(z, None)}
        got['img'] = G.synthesis(got['ws'], noise_mode='const', fused_modconv=fused_modconv)
        # The fixture's synthesis block outputs were recorded during the truncated call.
        hooks = [_capture(getattr(G.synthesis, f'b{r}'), f'act.G.synthesis.b{r}.out{i}', acts, i) for r in (4, 8, 16) for i in (0, 1)]
        got['img_trunc07'] = G(z, None, truncation_psi=0.7, noise_mode='const', fused_modconv=fused_modconv)
        hooks += [_capture(D.b16, 'act.D.b16.out0', acts, 0), _capture(D.b8, 'act.D.b8.out0', acts, 0), _capture(D.b4, 'act.D.b4.out', acts)]
        got['D_logits'] = D(torch.from_numpy(ref['img']), None)
    for h in hooks:
        h.remove()
    got.update(acts)
    expected_keys = set(ref.files) - {'z'}
    assert set(got) == expected_keys
    for key in sorted(expected_keys):
        np.testing.assert_allclose(got[key].numpy(), ref[key], rtol=0, atol=1e-4, err_msg=key)

#----------------------------------------------------------------------------
# The CHAIN seam.

class _ZeroChain(torch.nn.Module):
    """Stand-in CHAIN layer: replaces the conv output by zeros and records its kwargs."""
    def __init__(self):
        super().__init__()
        self.calls = []
    def forward(self, x, **kwargs):
        self.calls.append(dict(kwargs, shape=list(x.shape)))
        if kwargs.get('zmr_terms') is not None:
            kwargs['zmr_terms'].append(x.mean(dim=[0, 2, 3]).square().sum())
        return x * 0

def test_conv_chain_runs_between_conv_and_bias_act():
    torch.manual_seed(0)
    layer = Conv2dLayer(4, 6, kernel_size=3, activation='lrelu', down=2)
    with torch.no_grad():
        layer.bias.copy_(torch.linspace(-1, 1, 6))
    x = torch.randn(2, 4, 8, 8)
    assert layer.chain is None and 'chain' not in dict(layer.named_children())
    plain = layer(x, gain=0.5)
    layer.chain = _ZeroChain()
    zeroed = layer(x, gain=0.5, chain_args=dict(p=0.3, stream='real', zmr_terms=None))
    # With the conv output zeroed, only bias -> lrelu -> gain is left: act(b) * sqrt(2) * 0.5.
    b = layer.bias.detach().reshape(1, -1, 1, 1)
    expected = torch.where(b >= 0, b, 0.2 * b) * math.sqrt(2) * 0.5
    torch.testing.assert_close(zeroed, expected.expand(2, 6, 4, 4), rtol=0, atol=1e-6)
    assert not torch.allclose(plain, zeroed)
    assert layer.chain.calls == [dict(p=0.3, stream='real', zmr_terms=None, shape=[2, 6, 4, 4])]

def test_discriminator_passes_chain_args_to_conv0_conv1_and_skip_only():
    torch.manual_seed(0)
    D = tiny_D(c_dim=0, res=16)
    D.chain_controller = torch.nn.Module()
    D.chain_controller.register_buffer('p', torch.tensor(0.25))
    chains = {}
    for res in D.block_resolutions:
        for conv in ('conv0', 'conv1', 'skip'):
            chains[f'b{res}.{conv}'] = getattr(getattr(D, f'b{res}'), conv).chain = _ZeroChain()
    zmr_terms = []
    D(torch.randn(4, 3, 16, 16), None, stream='fake_d', zmr_terms=zmr_terms)
    assert len(zmr_terms) == len(chains) == 6
    for name, chain in chains.items():
        assert len(chain.calls) == 1, name
        call = chain.calls[0]
        assert call['stream'] == 'fake_d' and call['zmr_terms'] is zmr_terms and call['p'] is D.chain_controller.p
    # The fromrgb and the epilogue never get CHAIN: their convs have no chain and are not called with chain args.
    assert D.b16.fromrgb.chain is None and D.b4.conv.chain is None

def test_discriminator_without_controller_passes_no_chain_args():
    torch.manual_seed(0)
    D = tiny_D()
    D.b16.conv0.chain = _ZeroChain()
    D(torch.randn(2, 3, 16, 16), None, stream='real', zmr_terms=[])
    assert D.b16.conv0.chain.calls == [dict(shape=[2, 8, 16, 16])]

def test_chain_kwargs_call_training_chain_attach_chain(monkeypatch):
    calls = []
    fake = types.ModuleType('training.chain')
    def attach_chain(D, **kwargs):
        calls.append((D, kwargs))
        D.chain_controller = torch.nn.Module()
    fake.attach_chain = attach_chain
    monkeypatch.setitem(sys.modules, 'training.chain', fake)
    D = tiny_D(chain_kwargs=dict(variant='batch', blocks=[16], tau=0.4))
    assert len(calls) == 1 and calls[0][0] is D and calls[0][1] == dict(variant='batch', blocks=[16], tau=0.4)
    assert tiny_D().chain_controller is None

def test_real_chain_at_p0_leaves_discriminator_unchanged_and_adds_names_only_under_chain():
    chain = pytest.importorskip('training.chain')
    torch.manual_seed(0)
    plain = randomize_(tiny_D())
    torch.manual_seed(0)
    chained = tiny_D(chain_kwargs=dict(variant='running'))
    chained.load_state_dict(plain.state_dict(), strict=False)
    extra = set(dict(chained.state_dict())) - set(dict(plain.state_dict()))
    assert extra and all('.chain.' in k or k.startswith('chain_controller.') for k in extra)
    assert set(dict(plain.state_dict())) <= set(dict(chained.state_dict()))
    assert float(chained.chain_controller.p) == 0
    img = torch.randn(4, 3, 16, 16)
    zmr = []
    torch.testing.assert_close(chained(img, None, stream='real', zmr_terms=zmr), plain(img, None), rtol=0, atol=1e-5)
    assert len(zmr) == len(chain.chain_layers(chained)) > 0

#----------------------------------------------------------------------------
# Conditional forward passes.

def test_conditional_G_and_D_forward_shapes_dtypes_and_label_use():
    torch.manual_seed(0)
    G, D = randomize_(tiny_G(c_dim=5, res=32)), randomize_(tiny_D(c_dim=5, res=32))
    z = torch.randn(4, 8)
    c = one_hot([0, 1, 2, 3], 5)
    img = G(z, c, noise_mode='const')
    assert img.shape == (4, 3, 32, 32) and img.dtype == torch.float32
    assert torch.isfinite(img).all() and 0.01 < img.std() < 20
    logits = D(img, c)
    assert logits.shape == (4, 1) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    # The labels matter: other labels, other images and other logits.
    c2 = one_hot([4, 4, 4, 4], 5)
    assert (G(z, c2, noise_mode='const') - img).abs().mean() > 1e-3
    assert (D(img, c2) - logits).abs().max() > 1e-4
    # Projection: with cmap from D.mapping, the logit is <out, cmap> / sqrt(cmap_dim).
    feats = {}
    h = D.b4.out.register_forward_hook(lambda m, i, o: feats.update(out=o))
    logits = D(img, c)
    h.remove()
    cmap = D.mapping(None, c)
    torch.testing.assert_close(logits, (feats['out'] * cmap).sum(1, keepdim=True) / math.sqrt(D.cmap_dim))

def test_unconditional_networks_accept_empty_labels():
    torch.manual_seed(0)
    G, D = tiny_G(), tiny_D()
    z = torch.randn(2, 8)
    img = G(z, torch.zeros(2, 0), noise_mode='const')
    torch.testing.assert_close(img, G(z, None, noise_mode='const'))
    torch.testing.assert_close(D(img, torch.zeros(2, 0)), D(img, None))

#----------------------------------------------------------------------------
# Mapping: truncation and the tracked w_avg.

def _mapping_with_random_w_avg(num_ws=6):
    torch.manual_seed(0)
    mapping = randomize_(MappingNetwork(z_dim=8, c_dim=0, w_dim=8, num_ws=num_ws, num_layers=2)).eval()
    mapping.w_avg.copy_(torch.randn(8))
    return mapping

def test_truncation_psi1_is_identity_and_psi0_gives_w_avg():
    mapping = _mapping_with_random_w_avg()
    z = torch.randn(3, 8)
    ws = mapping(z, None)
    assert ws.shape == (3, 6, 8)
    assert torch.equal(ws, ws[:, :1].expand(-1, 6, -1))  # One w broadcast to every layer.
    assert torch.equal(mapping(z, None, truncation_psi=1), ws)
    torch.testing.assert_close(mapping(z, None, truncation_psi=0), mapping.w_avg.expand(3, 6, 8))
    w_avg = mapping.w_avg.reshape(1, 1, -1)
    torch.testing.assert_close(mapping(z, None, truncation_psi=0.7), w_avg + 0.7 * (ws - w_avg))

def test_truncation_cutoff_applies_to_the_first_layers_only():
    mapping = _mapping_with_random_w_avg()
    z = torch.randn(3, 8)
    ws = mapping(z, None)
    cut = mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
    w_avg = mapping.w_avg.reshape(1, 1, -1)
    torch.testing.assert_close(cut[:, :2], (w_avg + 0.5 * (ws - w_avg))[:, :2])
    assert torch.equal(cut[:, 2:], ws[:, 2:])

def test_w_avg_updates_only_in_training_and_when_not_skipped():
    mapping = _mapping_with_random_w_avg()
    z = torch.randn(5, 8)
    w = mapping(z, None)[:, 0]
    before = mapping.w_avg.clone()
    mapping(z, None)  # eval
    assert torch.equal(mapping.w_avg, before)
    mapping.train()
    mapping(z, None, skip_w_avg_update=True)
    assert torch.equal(mapping.w_avg, before)
    mapping(z, None)
    torch.testing.assert_close(mapping.w_avg, 0.995 * before + 0.005 * w.mean(0))

def test_mapping_normalizes_z_to_unit_second_moment():
    mapping = _mapping_with_random_w_avg()
    z = torch.randn(3, 8)
    # The first operation is x / rms(x): scaling z does not change w.
    torch.testing.assert_close(mapping(z * 7.5, None), mapping(z, None))

#----------------------------------------------------------------------------
# Noise modes.

def test_noise_modes_const_random_none():
    torch.manual_seed(0)
    G = randomize_(tiny_G()).eval()
    ws = G.mapping(torch.randn(2, 8), None)
    const_a = G.synthesis(ws, noise_mode='const')
    const_b = G.synthesis(ws, noise_mode='const')
    assert torch.equal(const_a, const_b)
    rand_a = G.synthesis(ws, noise_mode='random')
    rand_b = G.synthesis(ws, noise_mode='random')
    assert (rand_a - rand_b).abs().max() > 1e-4
    # 'none' is the same as zero noise strength (reference: a copy with every strength zeroed).
    silent = copy.deepcopy(G)
    with torch.no_grad():
        for name, p in silent.named_parameters():
            if name.endswith('noise_strength'):
                p.zero_()
    torch.testing.assert_close(G.synthesis(ws, noise_mode='none'), silent.synthesis(ws, noise_mode='const'))
    assert (G.synthesis(ws, noise_mode='none') - const_a).abs().max() > 1e-4

#----------------------------------------------------------------------------
# Modulated convolution.

def _naive_modulated_conv(x, weight, styles, demodulate, up, padding, flip_weight, f):
    """Per sample: build the modulated (and demodulated) weight explicitly, one ordinary conv each."""
    from torch_utils.ops import conv2d_resample
    outs = []
    for n in range(x.shape[0]):
        w = weight * styles[n].reshape(1, -1, 1, 1)
        if demodulate:
            w = w / torch.sqrt((w ** 2).sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        outs.append(conv2d_resample.conv2d_resample(x[n:n + 1], w, f=f, up=up, padding=padding, flip_weight=flip_weight))
    return torch.cat(outs)

@pytest.mark.parametrize('grad_enabled', [True, False])  # The non-fused path works in place without grad.
@pytest.mark.parametrize('up,demodulate', [(1, True), (2, True), (1, False)])
def test_fused_and_nonfused_modconv_match_a_per_sample_loop(up, demodulate, grad_enabled):
    from torch_utils.ops import upfirdn2d
    torch.manual_seed(0)
    x, weight, styles = torch.randn(3, 5, 6, 6), torch.randn(7, 5, 3, 3), torch.randn(3, 5) + 1
    noise = torch.randn(1, 1, 6 * up, 6 * up)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    ref = _naive_modulated_conv(x, weight, styles, demodulate, up, 1, up == 1, f) + noise
    inputs = [t.clone() for t in (x, weight, styles, noise)]
    for fused in (False, True):
        with torch.set_grad_enabled(grad_enabled):
            got = networks.modulated_conv2d(x, weight, styles, noise=noise, up=up, padding=1, resample_filter=f,
                                            demodulate=demodulate, flip_weight=(up == 1), fused_modconv=fused)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
        for before, after in zip(inputs, (x, weight, styles, noise)):
            assert torch.equal(before, after)  # No input is modified.

def test_generator_fused_and_nonfused_agree_with_gradients():
    torch.manual_seed(0)
    G = randomize_(tiny_G(res=16, architecture='resnet'))
    ws = G.mapping(torch.randn(3, 8), None).detach().requires_grad_(True)
    results = []
    for fused in (False, True):
        img = G.synthesis(ws, noise_mode='const', fused_modconv=fused)
        grad_ws, grad_w = torch.autograd.grad((img * torch.linspace(-1, 1, 16)).sum(), [ws, G.synthesis.b8.conv0.weight])
        results.append((img, grad_ws, grad_w))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

#----------------------------------------------------------------------------
# Gradients of D w.r.t. its input (R1 needs the second derivative).

def test_discriminator_gradcheck_and_gradgradcheck_float64():
    torch.manual_seed(0)
    D = randomize_(Discriminator(c_dim=3, img_resolution=8, img_channels=1, channel_base=16, channel_max=4,
                                 mapping_kwargs=dict(num_layers=1), epilogue_kwargs=dict(mbstd_group_size=2))).double()
    img = torch.randn(2, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    c = one_hot([0, 2], 3).double()
    fn = lambda x: D(x, c)
    assert torch.autograd.gradcheck(fn, (img,), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradgradcheck(fn, (img,), eps=1e-6, atol=1e-5)

#----------------------------------------------------------------------------
# Architectures.

@pytest.mark.parametrize('architecture', ['orig', 'skip', 'resnet'])
def test_generator_architectures_run_and_every_parameter_gets_a_gradient(architecture):
    torch.manual_seed(0)
    G = tiny_G(res=16, architecture=architecture)
    img = G(torch.randn(2, 8), None)
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
    img.square().mean().backward()
    missing = [n for n, p in G.named_parameters() if p.grad is None]
    assert not missing
    torgbs = [name for name, _ in G.named_modules() if name.endswith('torgb')]
    assert torgbs == (['synthesis.b4.torgb', 'synthesis.b8.torgb', 'synthesis.b16.torgb'] if architecture == 'skip' else ['synthesis.b16.torgb'])
    assert hasattr(G.synthesis.b8, 'skip') == (architecture == 'resnet')

@pytest.mark.parametrize('architecture', ['orig', 'skip', 'resnet'])
def test_discriminator_architectures_run_and_every_parameter_gets_a_gradient(architecture):
    torch.manual_seed(0)
    D = tiny_D(c_dim=2, res=16, architecture=architecture)
    logits = D(torch.randn(4, 3, 16, 16), one_hot([0, 1, 1, 0], 2))
    assert logits.shape == (4, 1) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert not [n for n, p in D.named_parameters() if p.grad is None]
    assert hasattr(D.b8, 'fromrgb') == (architecture == 'skip') and hasattr(D.b4, 'fromrgb') == (architecture == 'skip')
    assert hasattr(D.b16, 'skip') == (architecture == 'resnet')

def test_resnet_discriminator_block_is_scaled_sum_of_skip_and_main_path():
    torch.manual_seed(0)
    D = randomize_(tiny_D())
    block = D.b8
    x = torch.randn(2, 16, 8, 8)
    out, img = block(x, None)
    main = block.conv1(block.conv0(x))
    skip = block.skip(x)
    torch.testing.assert_close(out, (main + skip) * math.sqrt(0.5))
    assert img is None

def test_freeze_layers_turns_the_first_layers_into_buffers_with_the_same_names():
    torch.manual_seed(0)
    plain = names_shapes_kinds(tiny_D())
    frozen = names_shapes_kinds(tiny_D(block_kwargs=dict(freeze_layers=2)))
    assert {k: v[0] for k, v in plain.items()} == {k: v[0] for k, v in frozen.items()}
    became_buffers = sorted(k for k in plain if plain[k][1] == 'param' and frozen[k][1] == 'buffer')
    assert became_buffers == ['b16.conv0.bias', 'b16.conv0.weight', 'b16.fromrgb.bias', 'b16.fromrgb.weight']

#----------------------------------------------------------------------------
# Minibatch standard deviation.

def test_minibatch_std_matches_a_naive_loop():
    torch.manual_seed(0)
    x = torch.randn(6, 4, 3, 3)
    y = MinibatchStdLayer(group_size=3, num_channels=2)(x)
    assert y.shape == (6, 6, 3, 3) and torch.equal(y[:, :4], x)
    groups = 6 // 3
    for n in range(6):
        members = [m for m in range(6) if m % groups == n % groups]  # Sample n is in group n mod (N/G).
        for f in range(2):
            part = x[members][:, 2 * f:2 * f + 2].double()
            std = (part.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
            torch.testing.assert_close(y[n, 4 + f], torch.full((3, 3), float(std)), rtol=1e-5, atol=1e-6)

#----------------------------------------------------------------------------
# conv_clamp.

def test_conv_clamp_bounds_layer_outputs_and_scales_with_gain():
    torch.manual_seed(0)
    layer = networks.SynthesisLayer(4, 6, w_dim=8, resolution=8, conv_clamp=0.3)
    x, w = torch.randn(2, 4, 8, 8) * 10, torch.randn(2, 8)
    unclamped = copy.deepcopy(layer)
    unclamped.conv_clamp = None
    y, ref = layer(x, w, noise_mode='none'), unclamped(x, w, noise_mode='none')
    assert ref.abs().max() > 0.3
    torch.testing.assert_close(y, ref.clamp(-0.3, 0.3))
    conv = Conv2dLayer(4, 6, kernel_size=3, activation='lrelu', conv_clamp=0.3)
    assert conv(x, gain=0.5).abs().max() <= 0.15 + 1e-7

#----------------------------------------------------------------------------
# fp16 settings, copying and pickling.

def test_fp16_resolutions_run_in_float32_off_cuda():
    torch.manual_seed(0)
    G = randomize_(tiny_G(num_fp16_res=2, conv_clamp=256)).eval()
    D = randomize_(tiny_D(num_fp16_res=2, conv_clamp=256))
    ws = G.mapping(torch.randn(2, 8), None)
    img = G.synthesis(ws, noise_mode='const')
    assert img.dtype == torch.float32 and G.synthesis.b16.use_fp16
    assert torch.equal(img, G.synthesis(ws, noise_mode='const', force_fp32=True))
    assert torch.equal(D(img, None), D(img, None, force_fp32=True))

def test_deepcopy_and_pickle_round_trip_give_identical_outputs():
    torch.manual_seed(0)
    G = randomize_(tiny_G(c_dim=3)).eval()
    z, c = torch.randn(2, 8), one_hot([0, 2], 3)
    ref = G(z, c, noise_mode='const')
    for clone in (copy.deepcopy(G), pickle.loads(pickle.dumps(G))):
        assert torch.equal(clone(z, c, noise_mode='const'), ref)

#----------------------------------------------------------------------------
# Bad arguments.

def test_bad_construction_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match='power of two'):
        Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=24, img_channels=3)
    with pytest.raises(ValueError, match='power of two'):
        Discriminator(c_dim=0, img_resolution=100, img_channels=3)
    with pytest.raises(ValueError, match="unknown architecture 'unet'"):
        tiny_G(architecture='unet')
    with pytest.raises(ValueError, match="unknown architecture 'unet'"):
        tiny_D(architecture='unet')
    with pytest.raises(ValueError, match='channel_base'):
        tiny_G(channel_base=8)
    with pytest.raises(ValueError, match='w_avg'):
        MappingNetwork(z_dim=4, c_dim=0, w_dim=4, num_ws=2, w_avg_beta=None)(torch.randn(1, 4), None, truncation_psi=0.5)

def test_bad_forward_inputs_raise_clear_errors():
    torch.manual_seed(0)
    G, D = tiny_G(c_dim=3), tiny_D(c_dim=3)
    c = one_hot([0, 1], 3)
    with pytest.raises(ValueError, match=r'expected z of shape \[N, 8\], got \[2, 7\]'):
        G(torch.randn(2, 7), c)
    with pytest.raises(ValueError, match=r'labels c of shape \[2, 3\], got \[2, 4\]'):
        G(torch.randn(2, 8), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r'labels c of shape \[2, 3\], got None'):
        G(torch.randn(2, 8), None)
    with pytest.raises(ValueError, match=r'images of shape \[N, 3, 16, 16\], got \[2, 3, 32, 32\]'):
        D(torch.randn(2, 3, 32, 32), c)
    with pytest.raises(ValueError, match=r'images of shape \[N, 3, 16, 16\], got \[2, 1, 16, 16\]'):
        D(torch.randn(2, 1, 16, 16), c)
    with pytest.raises(ValueError, match=r'labels c of shape \[2, 3\], got \[2, 5\]'):
        D(torch.randn(2, 3, 16, 16), torch.zeros(2, 5))
    with pytest.raises(ValueError, match='unconditional'):
        tiny_D()(torch.randn(2, 3, 16, 16), c)
    with pytest.raises(ValueError, match=r'ws of shape \[N, 6, 8\]'):
        G.synthesis(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match='noise_mode'):
        G(torch.randn(2, 8), c, noise_mode='fixed')
    with pytest.raises(ValueError, match='not divisible by the group size'):
        tiny_D(c_dim=3, epilogue_kwargs=dict(mbstd_group_size=4))(torch.randn(6, 3, 16, 16), one_hot([0] * 6, 3))

#----------------------------------------------------------------------------
