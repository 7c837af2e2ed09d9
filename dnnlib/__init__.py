"""Small utilities shared by every part of the toolkit (EasyDict, open_url, Logger, ...)."""
from .util import EasyDict, make_cache_dir_path  # noqa: F401
