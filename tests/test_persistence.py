"""Tests of torch_utils.persistence: the official persistent pickle format (DESIGN §3),
the trusted reconstruction path, the class registry."""

import copy
import importlib
import io
import pickle
import sys
import textwrap
import uuid

import pytest
import torch

from torch_utils import persistence

#----------------------------------------------------------------------------

MODULE_SRC = textwrap.dedent('''
    """A tiny module of persistent classes, written by the persistence tests."""
    import torch
    from torch_utils import persistence

    VERSION = {version}

    @persistence.persistent_class
    class Inner(torch.nn.Module):
        def __init__(self, channels, scale=1.0):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn([channels, channels]) * scale)
            self.register_buffer('count', torch.zeros([]))

        def forward(self, x):
            return x @ self.weight

    @persistence.persistent_class
    class Outer(torch.nn.Module):
        def __init__(self, channels, inner_kwargs=None, tag='a'):
            super().__init__()
            inner_kwargs = {{}} if inner_kwargs is None else inner_kwargs
            inner_kwargs.setdefault('scale', 1.0)    # Mutates the caller's dict: the record must not see it.
            self.inner = Inner(channels, **inner_kwargs)
            self.linear = torch.nn.Linear(channels, channels)

        def forward(self, x):
            return self.linear(self.inner(x)) + VERSION
''')

@pytest.fixture
def make_module(tmp_path, monkeypatch):
    """Write MODULE_SRC (with a given VERSION) as a fresh module and import it."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created = []

    def make(version=0, name=None):
        name = name or f'persist_helper_{uuid.uuid4().hex[:8]}'
        (tmp_path / f'{name}.py').write_text(MODULE_SRC.format(version=version))
        importlib.invalidate_caches()
        if name in sys.modules:
            module = importlib.reload(sys.modules[name])
        else:
            module = importlib.import_module(name)
        created.append(name)
        return module

    yield make
    for name in created:
        sys.modules.pop(name, None)

#----------------------------------------------------------------------------

class _MetaCatcher(pickle.Unpickler):
    """Reads a pickle, replacing the reconstructor by one that returns the meta dict."""

    def find_class(self, module, name):
        if (module, name) == ('torch_utils.persistence', '_reconstruct_persistent_obj'):
            return lambda meta: ('META', meta)
        return super().find_class(module, name)

#----------------------------------------------------------------------------

def test_pickle_has_official_meta_layout(make_module, tmp_path):
    mod = make_module()
    torch.manual_seed(0)
    obj = mod.Outer(3, inner_kwargs=dict(scale=2.0), tag='b')
    tag, meta = _MetaCatcher(io.BytesIO(pickle.dumps(obj))).load()
    assert tag == 'META'
    assert set(meta) == {'type', 'version', 'module_src', 'class_name', 'state'}
    assert meta['type'] == 'class' and meta['version'] == 6 and meta['class_name'] == 'Outer'
    assert meta['module_src'] == (tmp_path / f'{mod.__name__}.py').read_text()
    assert meta['state']['_init_args'] == (3,)
    assert meta['state']['_init_kwargs'] == {'inner_kwargs': {'scale': 2.0}, 'tag': 'b'}
    # The nested persistent module is itself a persistent record inside the parent's state.
    inner_tag, inner_meta = meta['state']['_modules']['inner']
    assert inner_tag == 'META' and inner_meta['class_name'] == 'Inner'
    assert inner_meta['state']['_init_args'] == (3,) and inner_meta['state']['_init_kwargs'] == {'scale': 2.0}

def test_decorated_class_keeps_identity(make_module):
    mod = make_module()
    obj = mod.Outer(2)
    assert type(obj).__name__ == 'Outer' and type(obj).__module__ == mod.__name__
    assert isinstance(obj, mod.Outer) and isinstance(obj, torch.nn.Module)
    assert persistence.is_persistent(obj) and persistence.is_persistent(mod.Outer)
    assert not persistence.is_persistent(torch.nn.Linear(1, 1))
    assert persistence.get_registered_class('Outer', prefer_module=mod.__name__) is mod.Outer
    assert persistence.persistent_class(mod.Outer) is mod.Outer  # Decorating twice is harmless.
    import inspect
    assert list(inspect.signature(mod.Outer).parameters) == ['channels', 'inner_kwargs', 'tag']

def test_init_args_are_deep_copies(make_module):
    mod = make_module()
    inner_kwargs = {}
    obj = mod.Outer(2, inner_kwargs=inner_kwargs)
    assert inner_kwargs == {'scale': 1.0}                 # __init__ did mutate its argument...
    assert obj.init_kwargs == {'inner_kwargs': {}}        # ...but the record is of the call.
    obj.init_kwargs['inner_kwargs']['scale'] = 5.0        # The property hands out copies.
    assert obj._init_kwargs == {'inner_kwargs': {}}

#----------------------------------------------------------------------------

def test_round_trip_trusted_path(make_module):
    mod = make_module(version=0)
    torch.manual_seed(1)
    obj = mod.Outer(4).eval()
    obj.inner.count.fill_(7)
    x = torch.randn(5, 4)
    loaded = pickle.loads(pickle.dumps(obj))
    assert type(loaded).__name__ == 'Outer' and persistence.is_persistent(loaded)
    for (name_a, a), (name_b, b) in zip(obj.state_dict().items(), loaded.state_dict().items()):
        assert name_a == name_b and torch.equal(a, b)
    assert torch.equal(loaded(x), obj(x))
    assert loaded.training is False and loaded._init_args == (4,)
    # A rebuilt object pickles again (its source is known without a file).
    again = pickle.loads(pickle.dumps(loaded))
    assert torch.equal(again(x), obj(x))

def test_trusted_path_uses_saved_source_after_edit(make_module):
    mod = make_module(version=0, name=f'persist_edit_{uuid.uuid4().hex[:8]}')
    obj = mod.Outer(2)
    blob = pickle.dumps(obj)
    x = torch.zeros(1, 2)
    expected = obj(x)

    edited = make_module(version=1000, name=mod.__name__)   # Same module, new source on disk.
    assert edited.Outer(2)(x).min() > 900                       # The edit is live for new objects...
    loaded = pickle.loads(blob)
    assert torch.equal(loaded(x), expected)                      # ...the pickle keeps VERSION 0.
    assert loaded(x).abs().max() < 100
    assert type(loaded).__module__.startswith('_imported_module_')

def test_reconstructed_modules_are_cached_by_source(make_module):
    mod = make_module()
    a = pickle.loads(pickle.dumps(mod.Outer(2)))
    b = pickle.loads(pickle.dumps(mod.Outer(3)))
    assert type(a) is type(b)  # The same source was executed once.

#----------------------------------------------------------------------------

def test_deepcopy_keeps_the_class(make_module):
    mod = make_module()
    obj = mod.Outer(3)
    dup = copy.deepcopy(obj)
    assert type(dup) is type(obj) and type(dup.inner) is type(obj.inner)
    assert dup.inner.weight is not obj.inner.weight and torch.equal(dup.inner.weight, obj.inner.weight)
    assert dup._init_kwargs == obj._init_kwargs and dup._init_kwargs is not obj._init_kwargs
    shallow = copy.copy(obj)
    assert type(shallow) is type(obj) and shallow.inner is obj.inner

#----------------------------------------------------------------------------

def test_registry_lookup_errors(make_module):
    with pytest.raises(KeyError, match='NoSuchPersistentClass'):
        persistence.get_registered_class('NoSuchPersistentClass')
    a, b = make_module(), make_module()   # Two modules defining the same names.
    with pytest.raises(ValueError, match='several modules'):
        persistence.get_registered_class('Inner')
    assert persistence.get_registered_class('Inner', prefer_module=b.__name__) is b.Inner

def test_nested_class_is_refused():
    with pytest.raises(TypeError, match='top level'):
        @persistence.persistent_class
        class Local(torch.nn.Module):  # pylint: disable=unused-variable
            pass

def test_version_mismatch_is_refused():
    with pytest.raises(pickle.UnpicklingError, match='version'):
        persistence._reconstruct_persistent_obj(dict(type='class', version=5, module_src='', class_name='X', state={}))

#----------------------------------------------------------------------------
