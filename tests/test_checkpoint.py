"""Tests of training.checkpoint: atomic save_snapshot and the safe load_network_pkl
(no embedded code run, refused globals, corrupt files, official-format networks)."""

import copy
import importlib
import io
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest
import torch

import dnnlib
from torch_utils import persistence
from training import checkpoint

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#----------------------------------------------------------------------------

HELPER_SRC = textwrap.dedent('''
    """Persistent test classes for the checkpoint tests (names made unique per module)."""
    import torch
    from torch_utils import persistence

    @persistence.persistent_class
    class Inner_{tag}(torch.nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn([channels, channels]))
            self.register_buffer('count', torch.zeros([]))

        def forward(self, x):
            return x @ self.weight

    @persistence.persistent_class
    class Net_{tag}(torch.nn.Module):
        def __init__(self, channels, inner_kwargs={{}}):
            super().__init__()
            self.inner = Inner_{tag}(channels, **inner_kwargs)
            self.linear = torch.nn.Linear(channels, channels)   # A plain torch module inside.

        def forward(self, x):
            return self.linear(self.inner(x))
''')

@pytest.fixture
def helper(tmp_path, monkeypatch):
    """Import a fresh helper module; returns (module, Net class, Inner class)."""
    tag = uuid.uuid4().hex[:8]
    name = f'ckpt_helper_{tag}'
    folder = tmp_path / 'helpers'
    folder.mkdir()
    (folder / f'{name}.py').write_text(HELPER_SRC.format(tag=tag))
    monkeypatch.syspath_prepend(str(folder))
    importlib.invalidate_caches()
    module = importlib.import_module(name)
    yield module, getattr(module, f'Net_{tag}'), getattr(module, f'Inner_{tag}')
    sys.modules.pop(name, None)

def _make_net(net_cls, channels=3):
    torch.manual_seed(0)
    net = net_cls(channels).eval().requires_grad_(False)
    net.inner.count.fill_(5)
    return net

def _assert_same_tensors(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype and torch.equal(sa[name], sb[name]), name

def _new_src_modules() -> set:
    return {name for name in sys.modules if name.startswith('_imported_module_')}

#----------------------------------------------------------------------------

def test_snapshot_round_trip_is_exact(helper, tmp_path):
    _, Net, _ = helper
    net = _make_net(Net)
    opt = torch.optim.Adam(net.parameters())
    before = _new_src_modules()
    data = dict(G=net, D=None, G_ema=copy.deepcopy(net), augment_pipe=None,
                training_set_kwargs=dnnlib.EasyDict(path='/data/x.zip', max_size=None, xflip=True),
                resume_state=dict(cur_nimg=1234, optimizer=opt.state_dict(), np_rng=np.random.RandomState(3).get_state(),
                                  torch_rng=torch.get_rng_state(), half=torch.ones(2, dtype=torch.float16)))
    path = tmp_path / 'run' / 'network-snapshot-000001.pkl'   # The folder is created.
    checkpoint.save_snapshot(path, data)
    loaded = checkpoint.load_network_pkl(str(path))

    assert type(loaded['G']) is Net and type(loaded['G'].inner) is type(net.inner)   # Our classes, not re-executed.
    _assert_same_tensors(loaded['G'], net)
    _assert_same_tensors(loaded['G_ema'], net)
    assert loaded['G'].training is False and loaded['G']._init_args == (3,)
    x = torch.randn(4, 3)
    assert torch.equal(loaded['G'](x), net(x))
    assert isinstance(loaded['training_set_kwargs'], dnnlib.EasyDict) and loaded['training_set_kwargs'].xflip is True
    rs = loaded['resume_state']
    assert rs['cur_nimg'] == 1234 and torch.equal(rs['torch_rng'], data['resume_state']['torch_rng'])
    assert rs['np_rng'][0] == 'MT19937' and np.array_equal(rs['np_rng'][1], data['resume_state']['np_rng'][1])
    assert rs['optimizer']['param_groups'] == opt.state_dict()['param_groups']
    assert rs['half'].dtype == torch.float16
    assert _new_src_modules() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]   # No temp files left.

def test_loads_from_file_object_and_file_url(helper, tmp_path):
    _, Net, _ = helper
    net = _make_net(Net)
    path = tmp_path / 'snap.pkl'
    checkpoint.save_snapshot(path, dict(G_ema=net))
    with open(path, 'rb') as f:
        _assert_same_tensors(checkpoint.load_network_pkl(f)['G_ema'], net)
    _assert_same_tensors(checkpoint.load_network_pkl(path.as_uri())['G_ema'], net)
    loaded = checkpoint.load_network_pkl(path)
    assert loaded['augment_pipe'] is None and loaded['training_set_kwargs'] is None   # Filled in.

def test_official_short_names_map_to_nvidia_urls(monkeypatch, helper, tmp_path):
    _, Net, _ = helper
    blob = io.BytesIO()
    pickle.dump(dict(G_ema=_make_net(Net)), blob)
    asked = []

    def fake_open_url(url, *args, **kwargs):
        asked.append(url)
        return io.BytesIO(blob.getvalue())

    monkeypatch.setattr(dnnlib.util, 'open_url', fake_open_url)
    checkpoint.load_network_pkl('metfaces')
    assert asked == ['https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metfaces.pkl']

#----------------------------------------------------------------------------

def _pickle_with_source(obj, module_src: str) -> bytes:
    """Pickle `obj` in the official format but with `module_src` as its embedded source."""
    classes = {type(m) for m in obj.modules() if persistence.is_persistent(m)}
    saved = {cls: cls._orig_module_src for cls in classes}
    try:
        for cls in classes:
            cls._orig_module_src = module_src
        return pickle.dumps(dict(G=obj))
    finally:
        for cls, src in saved.items():
            cls._orig_module_src = src

def test_embedded_source_is_never_run(helper, tmp_path):
    module, Net, _ = helper
    marker = tmp_path / 'marker.txt'
    evil_src = (f'open({str(marker)!r}, "w").write("pwned")\n'
                + open(module.__file__).read())   # Writes the marker, then defines the classes.
    net = _make_net(Net)
    blob = _pickle_with_source(net, evil_src)
    path = tmp_path / 'evil.pkl'
    path.write_bytes(blob)

    before = _new_src_modules()
    loaded = checkpoint.load_network_pkl(str(path))
    assert not marker.exists()
    assert _new_src_modules() == before                           # The embedded module was never built.
    assert type(loaded['G']) is Net
    _assert_same_tensors(loaded['G'], net)

    # Control: the trusted path does run it, so the test above can tell the difference.
    pickle.loads(blob)
    assert marker.read_text() == 'pwned'

#----------------------------------------------------------------------------

class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)

@pytest.mark.parametrize('global_name, raw', [
    ('os.system', b"cos\nsystem\n(S'touch /tmp/never'\ntR."),
    ('builtins.eval', b"cbuiltins\neval\n(S'1+1'\ntR."),
    ('subprocess.Popen', b"csubprocess\nPopen\n(S'true'\ntR."),
])
def test_dangerous_globals_are_refused(tmp_path, global_name, raw):
    path = tmp_path / 'bad.pkl'
    path.write_bytes(raw)
    with pytest.raises(pickle.UnpicklingError, match=f'{str(path)}.*refusing to load global {global_name}'):
        checkpoint.load_network_pkl(str(path))

def test_dangerous_global_deep_inside_a_network_is_refused(helper, tmp_path):
    _, Net, _ = helper
    marker = tmp_path / 'deep_marker'
    net = _make_net(Net)
    net._init_kwargs = dict(inner_kwargs={}, hidden=_Evil(os.system, f'touch {marker}'))
    path = tmp_path / 'deep.pkl'
    path.write_bytes(pickle.dumps(dict(G=net)))
    with pytest.raises(pickle.UnpicklingError, match=r'refusing to load global (os|posix)\.system'):
        checkpoint.load_network_pkl(str(path))
    assert not marker.exists()

def test_legacy_tensorflow_pickle_is_explained(tmp_path):
    path = tmp_path / 'tf.pkl'
    path.write_bytes(b"cdnnlib.tflib.network\nNetwork\n)\x81.")
    with pytest.raises(pickle.UnpicklingError, match='TensorFlow.*not supported'):
        checkpoint.load_network_pkl(str(path))

#----------------------------------------------------------------------------

def test_truncated_or_corrupt_file_names_the_file(helper, tmp_path):
    _, Net, _ = helper
    good = tmp_path / 'good.pkl'
    checkpoint.save_snapshot(good, dict(G=_make_net(Net)))
    blob = good.read_bytes()
    for name, content in [('half.pkl', blob[:len(blob) // 2]), ('tail.pkl', blob[:-1]),
                          ('noise.pkl', os.urandom(200)), ('empty.pkl', b'')]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(pickle.UnpicklingError, match=f'{str(path)}.*(corrupt|truncated|refusing)'):
            checkpoint.load_network_pkl(str(path))

def test_zip_archive_is_explained(tmp_path):
    path = tmp_path / 'weights.pt'
    torch.save({'w': torch.ones(2)}, path)
    with pytest.raises(pickle.UnpicklingError, match='zip archive'):
        checkpoint.load_network_pkl(str(path))

def test_tensor_shapes_that_do_not_fit_the_kwargs_are_reported(helper, tmp_path):
    _, Net, _ = helper
    net = _make_net(Net)
    net.inner.weight = torch.nn.Parameter(torch.zeros(4, 4))   # No longer what Net(3) builds.
    path = tmp_path / 'odd.pkl'
    path.write_bytes(pickle.dumps(dict(G=net)))
    with pytest.raises(pickle.UnpicklingError, match=r'inner\.weight: shape \[4, 4\] in the pickle, \[3, 3\]'):
        checkpoint.load_network_pkl(str(path))

def test_unknown_class_is_reported(tmp_path):
    meta = dict(type='class', version=6, module_src='', class_name='NoSuchNetworkClass', state={})
    blob = pickle.dumps(dict(G=_Evil(persistence._reconstruct_persistent_obj, meta)))
    path = tmp_path / 'unknown.pkl'
    path.write_bytes(blob)
    with pytest.raises(pickle.UnpicklingError, match='NoSuchNetworkClass'):
        checkpoint.load_network_pkl(str(path))

#----------------------------------------------------------------------------

KILL_SCRIPT = textwrap.dedent('''
    import sys, time, torch
    sys.path.insert(0, sys.argv[1])
    from training import checkpoint

    class Stall:
        """Pickling it announces that the file is half written, then waits to be killed."""
        def __reduce__(self):
            print('WRITING', flush=True)
            time.sleep(60)
            return (int, (0,))

    path = sys.argv[2]
    checkpoint.save_snapshot(path, dict(step=1, w=torch.arange(10.0)))
    print('SAVED', flush=True)
    checkpoint.save_snapshot(path, dict(step=2, big=torch.zeros(1 << 20), stall=Stall()))
''')

def test_sigkill_during_save_keeps_the_previous_snapshot(tmp_path):
    script = tmp_path / 'writer.py'
    script.write_text(KILL_SCRIPT)
    path = tmp_path / 'network-snapshot.pkl'
    proc = subprocess.Popen([sys.executable, str(script), REPO_ROOT, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line.strip())
            if line.strip() == 'WRITING':
                break
        assert lines == ['SAVED', 'WRITING'], proc.stderr.read()
        temps = [p for p in tmp_path.iterdir() if p.name.endswith('.tmp')]
        assert len(temps) == 1 and temps[0].stat().st_size > 0       # Mid-write, into a temp file.
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    data = checkpoint.load_network_pkl(str(path))
    assert data['step'] == 1 and torch.equal(data['w'], torch.arange(10.0))

#----------------------------------------------------------------------------
# The real networks, pickled in the official format.

def test_real_networks_load_safely_with_identical_outputs(tmp_path):
    from training import networks, augment
    torch.manual_seed(0)
    G = networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                           mapping_kwargs=dict(num_layers=2),
                           synthesis_kwargs=dnnlib.EasyDict(channel_base=128, channel_max=16, num_fp16_res=0))
    D = networks.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=128, channel_max=16,
                               epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=2),
                               chain_kwargs=dict(variant='running'))
    pipe = augment.AugmentPipe(**augment.augpipe_specs['bgc'])
    with torch.no_grad():
        for module in (G, D, pipe):
            for tensor in module.buffers():        # Buffers away from their init values, so mix-ups show.
                if tensor.is_floating_point():
                    tensor.add_(torch.rand_like(tensor))
    G, D, pipe = (m.eval().requires_grad_(False) for m in (G, D, pipe))
    path = tmp_path / 'network-snapshot-000000.pkl'
    checkpoint.save_snapshot(path, dict(G=G, D=D, G_ema=copy.deepcopy(G), augment_pipe=pipe,
                                        training_set_kwargs=dnnlib.EasyDict(path='x', resolution=16)))
    before = _new_src_modules()
    data = checkpoint.load_network_pkl(path)
    assert _new_src_modules() == before
    assert type(data['G']) is networks.Generator and type(data['D']) is networks.Discriminator
    assert type(data['augment_pipe']) is augment.AugmentPipe
    for name, ref in [('G', G), ('G_ema', G), ('D', D), ('augment_pipe', pipe)]:
        _assert_same_tensors(data[name], ref)

    z = torch.randn(2, 8)
    assert torch.equal(data['G'](z, None, noise_mode='const'), G(z, None, noise_mode='const'))
    img = torch.randn(2, 3, 16, 16)
    assert torch.equal(data['D'](img, None), D(img, None))
    torch.manual_seed(5)
    expected = pipe(img)
    torch.manual_seed(5)
    assert torch.equal(data['augment_pipe'](img), expected)

#----------------------------------------------------------------------------

def _to_easydict(obj):
    """Nested dicts as EasyDicts, as the official training script stores constructor kwargs."""
    if isinstance(obj, dict):
        return dnnlib.EasyDict({k: _to_easydict(v) for k, v in obj.items()})
    return obj

def test_official_kwargs_layout_loads_with_official_names(compat_dir, tmp_path):
    import json
    from training import networks
    config = json.loads((compat_dir / 'official_state_keys.json').read_text())['cond32_small']
    torch.manual_seed(0)
    G = networks.Generator(**_to_easydict(config['G_kwargs'])).eval().requires_grad_(False)
    D = networks.Discriminator(**_to_easydict(config['D_kwargs'])).eval().requires_grad_(False)
    assert isinstance(G._init_kwargs['synthesis_kwargs'], dnnlib.EasyDict)   # EasyDicts inside the pickle.
    path = tmp_path / 'official-layout.pkl'
    checkpoint.save_snapshot(path, dict(G=G, D=D, G_ema=G, augment_pipe=None,
                                        training_set_kwargs=dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset')))
    data = checkpoint.load_network_pkl(path)
    assert data['G'] is data['G_ema']                                   # One object in the pickle, one rebuilt.
    for key, ref in [('G', G), ('D', D)]:
        official = {entry[0]: entry[1] for entry in config[key]}
        ours = {name: list(t.shape) for name, t in data[key].state_dict().items()}
        assert ours == official
        _assert_same_tensors(data[key], ref)
    z, c = torch.randn(2, 64), torch.eye(10)[:2]
    assert torch.equal(data['G'](z, c, noise_mode='const'), G(z, c, noise_mode='const'))
