"""Small utilities shared by every part of the toolkit (EasyDict, open_url, Logger, ...).

`dnnlib.EasyDict` and `dnnlib.util` are the names the StyleGAN2-ADA tools use.
"""
from . import util  # noqa: F401
from .util import EasyDict, make_cache_dir_path  # noqa: F401
