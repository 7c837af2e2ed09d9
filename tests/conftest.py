"""Shared test fixtures: where the read-only ../shared folder is, and skips when it is absent."""
import os
import pathlib

import pytest
import torch

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / 'shared'


def _require(path: pathlib.Path, what: str) -> pathlib.Path:
    if not path.exists():
        pytest.skip(f'{what} not found at {path} (it lives in ../shared beside the checkout; a fresh clone has none)')
    return path


@pytest.fixture
def compat_dir() -> pathlib.Path:
    """../shared/compat: official parameter names and the tiny16 conformance weights/outputs."""
    return _require(SHARED_DIR / 'compat', 'the compat fixtures')


@pytest.fixture
def obama_dir() -> pathlib.Path:
    """../shared/datasets/100-shot-obama: 100 real 256x256 JPEGs (research-only licence, never copy)."""
    return _require(SHARED_DIR / 'datasets' / '100-shot-obama', 'the 100-shot-obama dataset')


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test uses tiny tensors, where OpenMP barriers cost more than the work: one thread
    is faster, and on a busy CPU two threads per process measured 30-100x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
