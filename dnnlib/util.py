"""Placeholder: the infra work replaces this with the full dnnlib.util."""
import importlib
import os
from typing import Any


class EasyDict(dict):
    """A dict whose items are also attributes: d.key == d['key']."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        del self[name]


def make_cache_dir_path(*paths: str) -> str:
    root = os.environ.get('DNNLIB_CACHE_DIR') or os.path.join(os.path.expanduser('~'), '.cache', 'dnnlib')
    return os.path.join(root, *paths)


def get_obj_by_name(name: str) -> Any:
    module_name, _, obj_name = name.rpartition('.')
    return getattr(importlib.import_module(module_name), obj_name)


def construct_class_by_name(*args, class_name: str, **kwargs) -> Any:
    return get_obj_by_name(class_name)(*args, **kwargs)
