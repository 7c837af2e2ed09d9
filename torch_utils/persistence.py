"""Persistent classes: pickles that carry their class's source (the StyleGAN2-ADA format).

An instance of a class decorated with `@persistent_class` pickles as a call of
`torch_utils.persistence._reconstruct_persistent_obj(meta)`, where `meta` is a dict

    type        'class'
    version     6
    module_src  source text of the whole module that defines the class
    class_name  the class's name in that module
    state       the object's state (its `__dict__`), including `_init_args` and
                `_init_kwargs`: deep copies of the constructor arguments

This is the layout of official StyleGAN2-ADA network pickles, so their tools read our
snapshots. `_reconstruct_persistent_obj` is the *trusted* path those tools take: it
executes `module_src` (arbitrary code) in a fresh module. Our own loader,
`training.checkpoint.load_network_pkl`, never does: it rebuilds each object as the class
of that name in this code base, found through `get_registered_class`, from its
`_init_args`/`_init_kwargs`, and copies the tensors.
"""

import copy
import hashlib
import inspect
import pickle
import sys
import types
from typing import Any, Callable, Optional

#----------------------------------------------------------------------------

FORMAT_VERSION = 6                        # meta['version'] written and accepted.
_SRC_MODULE_PREFIX = '_imported_module_'  # Names of modules built from pickled source.

_registry: dict[str, dict[str, type]] = {}           # class_name -> {module_name: decorated class}
_module_src_by_name: dict[str, str] = {}             # module name -> source, for modules built from pickles
_module_by_digest: dict[str, types.ModuleType] = {}  # sha256(source) -> module built from it
_import_hooks: list[Callable[[dict], dict]] = []

#----------------------------------------------------------------------------

def _module_source(module_name: str, class_name: str) -> str:
    """Source text of a whole module, or a clear error if it cannot be had."""
    if module_name in _module_src_by_name:
        return _module_src_by_name[module_name]
    module = sys.modules.get(module_name)
    try:
        return inspect.getsource(module)
    except (TypeError, OSError) as err:
        raise TypeError(f'@persistent_class {class_name}: cannot read the source of module {module_name!r} ({err}); '
                        f'persistent classes must be defined at the top level of a module file '
                        f'(not in __main__ of an interactive session or in exec\'d code)') from None

#----------------------------------------------------------------------------

def persistent_class(orig_class: type) -> type:
    """Class decorator: make instances pickle in the official persistent format.

    Returns a subclass with the same name, qualified name and module, which records
    deep copies of its constructor arguments as `_init_args` / `_init_kwargs` and is
    listed in the registry under its class name (`get_registered_class`).
    """
    if not isinstance(orig_class, type):
        raise TypeError(f'@persistent_class decorates classes, got {type(orig_class).__name__} {orig_class!r}')
    if is_persistent(orig_class):
        return orig_class
    module_name = orig_class.__module__
    class_name = orig_class.__name__
    if orig_class.__qualname__ != class_name:
        raise TypeError(f'@persistent_class {orig_class.__qualname__}: persistent classes must be defined at the '
                        f'top level of their module (the pickle finds them by name in the module source)')
    module_src = _module_source(module_name, class_name)

    class Persistent(orig_class):
        _orig_module_src = module_src
        _orig_class_name = class_name

        def __init__(self, *args, **kwargs):
            # Copy before construction: __init__ may mutate the dicts it is given.
            init_args = copy.deepcopy(args)
            init_kwargs = copy.deepcopy(kwargs)
            super().__init__(*args, **kwargs)
            self._init_args = init_args
            self._init_kwargs = init_kwargs

        @property
        def init_args(self) -> tuple:
            return copy.deepcopy(self._init_args)

        @property
        def init_kwargs(self) -> dict:
            return copy.deepcopy(self._init_kwargs)

        def __reduce_ex__(self, protocol: int) -> tuple:
            fields = list(super().__reduce_ex__(protocol))
            fields += [None] * max(3 - len(fields), 0)
            meta = dict(type='class', version=FORMAT_VERSION, module_src=self._orig_module_src,
                        class_name=self._orig_class_name, state=fields[2])
            # Keep list/dict items (fields[3:]) as the default reduction gave them.
            return (_reconstruct_persistent_obj, (meta,), None, *fields[3:])

        def __deepcopy__(self, memo: dict) -> Any:
            # copy.deepcopy would otherwise take the pickle road above and rebuild the copy
            # from the module source, as a different class; keep the same class instead.
            cls = type(self)
            new = cls.__new__(cls)
            memo[id(self)] = new
            state = copy.deepcopy(self.__getstate__(), memo)
            setstate = getattr(new, '__setstate__', None)
            if callable(setstate):
                setstate(state)
            else:
                new.__dict__.update(state)
            return new

        def __copy__(self) -> Any:
            cls = type(self)
            new = cls.__new__(cls)
            state = self.__getstate__()
            setstate = getattr(new, '__setstate__', None)
            if callable(setstate):
                setstate(copy.copy(state))
            else:
                new.__dict__.update(state)
            return new

    Persistent.__name__ = class_name
    Persistent.__qualname__ = orig_class.__qualname__
    Persistent.__module__ = module_name
    Persistent.__doc__ = orig_class.__doc__
    Persistent.__init__.__wrapped__ = orig_class.__init__  # inspect.signature shows the real arguments.
    Persistent.__init__.__doc__ = orig_class.__init__.__doc__
    if not module_name.startswith(_SRC_MODULE_PREFIX):
        _registry.setdefault(class_name, {})[module_name] = Persistent
    return Persistent

#----------------------------------------------------------------------------

def is_persistent(obj: Any) -> bool:
    """True for a persistent class or an instance of one."""
    cls = obj if isinstance(obj, type) else type(obj)
    return '_orig_module_src' in cls.__dict__ and '_orig_class_name' in cls.__dict__

#----------------------------------------------------------------------------

def get_registered_class(class_name: str, prefer_module: Optional[str] = None) -> type:
    """The persistent class of this code base registered under `class_name`.

    Used by the safe loader. Raises KeyError with the known names if there is none, and
    ValueError if several modules define that name and `prefer_module` does not choose.
    """
    by_module = _registry.get(class_name)
    if not by_module:
        known = ', '.join(sorted(_registry)) or 'none (import training.networks etc. first)'
        raise KeyError(f'no persistent class named {class_name!r} is registered; known: {known}')
    if prefer_module is not None and prefer_module in by_module:
        return by_module[prefer_module]
    if len(by_module) == 1:
        return next(iter(by_module.values()))
    raise ValueError(f'persistent class name {class_name!r} is defined in several modules '
                     f'({", ".join(sorted(by_module))}); pass prefer_module to choose')

#----------------------------------------------------------------------------

def registered_classes() -> dict[str, list[str]]:
    """{class_name: [module names]} of every registered persistent class (for messages)."""
    return {name: sorted(mods) for name, mods in _registry.items()}

#----------------------------------------------------------------------------

def import_hook(hook: Callable[[dict], dict]) -> Callable[[dict], dict]:
    """Register `hook(meta) -> meta`, applied by the trusted loader before it rebuilds an
    object (e.g. to patch the source of old pickles). Returns the hook (usable as a decorator)."""
    if not callable(hook):
        raise TypeError(f'import_hook expects a callable, got {hook!r}')
    _import_hooks.append(hook)
    return hook

#----------------------------------------------------------------------------

def _src_to_module(module_src: str) -> types.ModuleType:
    """Execute `module_src` in a fresh module, cached by the digest of the source.

    The module is put in sys.modules so that objects rebuilt from it pickle again.
    """
    digest = hashlib.sha256(module_src.encode('utf-8')).hexdigest()
    module = _module_by_digest.get(digest)
    if module is None:
        module_name = _SRC_MODULE_PREFIX + digest[:32]
        module = types.ModuleType(module_name)
        _module_src_by_name[module_name] = module_src  # Before exec: its decorators need it.
        sys.modules[module_name] = module
        try:
            exec(compile(module_src, f'<persistent {module_name}>', 'exec'), module.__dict__)  # pylint: disable=exec-used
        except BaseException:
            del sys.modules[module_name]
            raise
        _module_by_digest[digest] = module
    return module

#----------------------------------------------------------------------------

def _reconstruct_persistent_obj(meta: dict) -> Any:
    """Trusted unpickling path (official behaviour): run the pickled module source and
    rebuild the object as its class there. Only for pickles you trust."""
    meta = dict(meta)
    for hook in _import_hooks:
        meta = hook(meta)
        if not isinstance(meta, dict):
            raise TypeError(f'persistence import hook {hook!r} must return the meta dict')
    if meta.get('type') != 'class':
        raise pickle.UnpicklingError(f"persistent object of type {meta.get('type')!r}; only 'class' is supported")
    if meta.get('version') != FORMAT_VERSION:
        raise pickle.UnpicklingError(f"persistent object format version {meta.get('version')!r}; "
                                     f"expected {FORMAT_VERSION}")
    module = _src_to_module(meta['module_src'])
    cls = persistent_class(module.__dict__[meta['class_name']])
    obj = cls.__new__(cls)
    state = meta['state']
    setstate = getattr(obj, '__setstate__', None)
    if callable(setstate):
        setstate(state)
    elif state is not None:
        obj.__dict__.update(state)
    return obj

#----------------------------------------------------------------------------
