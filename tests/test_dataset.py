"""Tests for training/dataset.py: pixels and labels as stored in the files, subsets, and up-front checks.

Every dataset here is generated in tmp_path; expected values come from PIL/numpy reads of
the files the test wrote, never from the dataset code itself.
"""

import io
import json
import pickle
import unicodedata
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

from training.dataset import DatasetError, ImageFolderDataset

#----------------------------------------------------------------------------
# Helpers.

def _random_image(rng: np.random.RandomState, size: int = 16, channels: int = 3, width: int = None) -> np.ndarray:
    """uint8 [H, W] or [H, W, C] noise (distinct per call, so images can be told apart)."""
    shape = (size, width or size) + ((channels,) if channels > 1 else ())
    return rng.randint(0, 256, size=shape, dtype=np.uint8)

def _save(path, array: np.ndarray, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(array).save(path, **kwargs)

def _as_chw(array: np.ndarray) -> np.ndarray:
    return (array[:, :, np.newaxis] if array.ndim == 2 else array).transpose(2, 0, 1)

def _make_folder(root, count: int = 6, size: int = 16, channels: int = 3, seed: int = 0) -> dict:
    """count PNGs under root (some in a sub-folder); returns {relative name: uint8 HWC array}."""
    rng = np.random.RandomState(seed)
    images = {}
    for i in range(count):
        name = f'img{i:02d}.png' if i % 2 == 0 else f'sub/img{i:02d}.png'
        images[name] = _random_image(rng, size, channels)
        _save(root / name, images[name])
    return images

def _zip_folder(root, zip_path) -> None:
    with zipfile.ZipFile(zip_path, 'w') as zf:
        for path in sorted(root.rglob('*')):
            if path.is_file():
                zf.write(path, path.relative_to(root).as_posix())

def _error_of(path, **kwargs) -> str:
    with pytest.raises(DatasetError) as info:
        ImageFolderDataset(str(path), **kwargs)
    return str(info.value)

#----------------------------------------------------------------------------
# Pixels, shapes and properties.

@pytest.mark.parametrize('channels', [1, 3])
def test_folder_and_zip_items_are_the_file_pixels(tmp_path, channels):
    images = _make_folder(tmp_path / 'data', count=6, size=16, channels=channels)
    _zip_folder(tmp_path / 'data', tmp_path / 'data.zip')
    for path in (tmp_path / 'data', tmp_path / 'data.zip'):
        ds = ImageFolderDataset(str(path))
        assert len(ds) == 6
        assert ds.name == 'data'
        assert ds.image_shape == [channels, 16, 16] and ds.num_channels == channels and ds.resolution == 16
        assert ds.label_shape == [0] and ds.label_dim == 0 and not ds.has_labels
        for idx, name in enumerate(sorted(images)):
            image, label = ds[idx]
            assert image.dtype == np.uint8 and label.dtype == np.float32 and label.shape == (0,)
            np.testing.assert_array_equal(image, _as_chw(images[name]))
            assert ds.get_filename(idx) == name

def test_resolution_argument_accepts_matching_images(tmp_path):
    _make_folder(tmp_path / 'data', size=16)
    assert ImageFolderDataset(str(tmp_path / 'data'), resolution=16).resolution == 16

def test_palette_gif_first_frame_is_read_as_rgb(tmp_path):
    rng = np.random.RandomState(1)
    frames = [PIL.Image.fromarray(_random_image(rng, 8)).convert('P') for _ in range(2)]
    (tmp_path / 'data').mkdir()
    frames[0].save(tmp_path / 'data' / 'a.gif', save_all=True, append_images=frames[1:])
    expected = np.asarray(frames[0].convert('RGB'))
    image, _ = ImageFolderDataset(str(tmp_path / 'data'))[0]
    np.testing.assert_array_equal(image, _as_chw(expected))

def test_exif_orientation_is_applied(tmp_path):
    rng = np.random.RandomState(2)
    array = _random_image(rng, 8)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6   # Stored rotated: display needs a 90-degree clockwise turn.
    _save(tmp_path / 'data' / 'a.png', array, exif=exif)
    image, _ = ImageFolderDataset(str(tmp_path / 'data'))[0]
    np.testing.assert_array_equal(image, _as_chw(np.rot90(array, k=-1)))

def test_unicode_and_spaces_in_paths(tmp_path):
    root = tmp_path / 'dïr with spaces'
    name = 'ünï côdé/näme with space.png'
    array = _random_image(np.random.RandomState(3), 8)
    _save(root / name, array)
    _save(root / 'other.png', _random_image(np.random.RandomState(4), 8))
    # Labels written with the decomposed (NFD) spelling, as macOS tools do.
    labels = [[unicodedata.normalize('NFD', name), 1], ['other.png', 0]]
    (root / 'dataset.json').write_text(json.dumps({'labels': labels}), encoding='utf-8')
    ds = ImageFolderDataset(str(root), use_labels=True)
    idx = [ds.get_filename(i) for i in range(len(ds))].index(unicodedata.normalize('NFC', name))
    np.testing.assert_array_equal(ds[idx][0], _as_chw(array))
    np.testing.assert_array_equal(ds.get_label(idx), [0, 1])

#----------------------------------------------------------------------------
# Labels.

def test_int_labels_become_one_hot_over_max_plus_one_classes(tmp_path):
    images = _make_folder(tmp_path / 'data', count=5)
    classes = {name: c for name, c in zip(sorted(images), [0, 3, 1, 3, 0])}
    (tmp_path / 'data' / 'dataset.json').write_text(json.dumps({'labels': [[n, c] for n, c in classes.items()]}))
    ds = ImageFolderDataset(str(tmp_path / 'data'), use_labels=True)
    assert ds.label_shape == [4] and ds.label_dim == 4 and ds.has_labels and ds.has_onehot_labels
    for idx in range(len(ds)):
        c = classes[ds.get_filename(idx)]
        np.testing.assert_array_equal(ds.get_label(idx), np.eye(4, dtype=np.float32)[c])
        np.testing.assert_array_equal(ds[idx][1], np.eye(4, dtype=np.float32)[c])
        assert int(ds.get_details(idx).raw_label) == c

def test_list_labels_are_float_vectors(tmp_path):
    images = _make_folder(tmp_path / 'data', count=3)
    vectors = {name: [float(i), -0.5, 2.25] for i, name in enumerate(sorted(images))}
    (tmp_path / 'data' / 'dataset.json').write_text(json.dumps({'labels': list(map(list, vectors.items()))}))
    ds = ImageFolderDataset(str(tmp_path / 'data'), use_labels=True)
    assert ds.label_shape == [3] and ds.has_labels and not ds.has_onehot_labels
    for idx in range(len(ds)):
        np.testing.assert_array_equal(ds.get_label(idx), np.float32(vectors[ds.get_filename(idx)]))

@pytest.mark.parametrize('content', [None, '{"labels": null}'])
def test_absent_or_null_labels_mean_unlabelled(tmp_path, content):
    _make_folder(tmp_path / 'data', count=3)
    if content is not None:
        (tmp_path / 'data' / 'dataset.json').write_text(content)
    ds = ImageFolderDataset(str(tmp_path / 'data'), use_labels=True)
    assert not ds.has_labels and ds.label_dim == 0 and ds.get_label(0).shape == (0,)

def test_use_labels_false_ignores_labels(tmp_path):
    images = _make_folder(tmp_path / 'data', count=3)
    (tmp_path / 'data' / 'dataset.json').write_text(json.dumps({'labels': [[n, 1] for n in images]}))
    assert not ImageFolderDataset(str(tmp_path / 'data'), use_labels=False).has_labels

def test_label_mismatches_are_listed_in_one_error(tmp_path):
    images = sorted(_make_folder(tmp_path / 'data', count=6))
    labels = [[images[0], 0], [images[1], 'cat'], [images[2], -1], [images[3], True], [images[4], 1],
              ['ghost.png', 2]]   # images[5] has no entry.
    (tmp_path / 'data' / 'dataset.json').write_text(json.dumps({'labels': labels}))
    message = _error_of(tmp_path / 'data', use_labels=True)
    for name, words in [(images[1], "'cat'"), (images[2], 'negative'), (images[3], 'boolean'),
                        (images[5], 'no label'), ('ghost.png', 'not among the images')]:
        line = next(line for line in message.splitlines() if name in line)
        assert words in line, (name, line)
    assert images[0] + ':' not in message and images[4] + ':' not in message
    assert '--labels=subfolders' in message

def test_unparsable_dataset_json_is_reported(tmp_path):
    _make_folder(tmp_path / 'data', count=2)
    (tmp_path / 'data' / 'dataset.json').write_text('{"labels": [[')
    assert 'not valid JSON' in _error_of(tmp_path / 'data', use_labels=True)

def test_mixed_label_kinds_are_rejected(tmp_path):
    images = sorted(_make_folder(tmp_path / 'data', count=2))
    (tmp_path / 'data' / 'dataset.json').write_text(json.dumps({'labels': [[images[0], 1], [images[1], [0.5]]]}))
    assert 'mixes class indices' in _error_of(tmp_path / 'data', use_labels=True)

#----------------------------------------------------------------------------
# xflip, max_size, holdout.

def test_xflip_doubles_the_length_with_mirrored_copies(tmp_path):
    _make_folder(tmp_path / 'data', count=4)
    plain = ImageFolderDataset(str(tmp_path / 'data'))
    flipped = ImageFolderDataset(str(tmp_path / 'data'), xflip=True)
    assert len(flipped) == 2 * len(plain)
    for idx in range(len(plain)):
        np.testing.assert_array_equal(flipped[idx][0], plain[idx][0])
        np.testing.assert_array_equal(flipped[idx + 4][0], plain[idx][0][:, :, ::-1])
        assert not flipped.get_details(idx).xflip and flipped.get_details(idx + 4).xflip
        assert flipped.get_details(idx + 4).raw_idx == plain.get_details(idx).raw_idx

def _names(ds) -> list:
    return [ds.get_filename(i) for i in range(len(ds))]

def test_max_size_subsets_are_reproducible_by_seed(tmp_path):
    _make_folder(tmp_path / 'data', count=20, size=4)
    path = str(tmp_path / 'data')
    full = _names(ImageFolderDataset(path))
    a, b = (_names(ImageFolderDataset(path, max_size=7, random_seed=5)) for _ in range(2))
    c = _names(ImageFolderDataset(path, max_size=7, random_seed=6))
    assert a == b and len(a) == 7 and len(set(a)) == 7 and set(a) <= set(full)
    assert a == sorted(a)   # Kept in file order.
    assert a != c           # Another seed, another subset (fixed seeds: deterministic).
    assert _names(ImageFolderDataset(path, max_size=50)) == full

def test_holdout_and_train_splits_are_disjoint_complete_and_seeded(tmp_path):
    _make_folder(tmp_path / 'data', count=20, size=4)
    path = str(tmp_path / 'data')
    full = set(_names(ImageFolderDataset(path)))
    train = _names(ImageFolderDataset(path, holdout=5, random_seed=3))
    held = _names(ImageFolderDataset(path, holdout=5, random_seed=3, split='holdout'))
    assert len(held) == 5 and len(train) == 15
    assert not set(train) & set(held) and set(train) | set(held) == full
    assert held == _names(ImageFolderDataset(path, holdout=5, random_seed=3, split='holdout'))
    assert held != _names(ImageFolderDataset(path, holdout=5, random_seed=4, split='holdout'))
    # The holdout is chosen before max_size: limiting the train split never changes it.
    small_train = _names(ImageFolderDataset(path, holdout=5, random_seed=3, max_size=4))
    assert len(small_train) == 4 and set(small_train) <= set(train)
    assert held == _names(ImageFolderDataset(path, holdout=5, random_seed=3, max_size=10, split='holdout'))

@pytest.mark.parametrize('kwargs, words', [
    (dict(holdout=4), 'holdout=4'),
    (dict(holdout=-1), 'holdout=-1'),
    (dict(split='test'), "split='test'"),
    (dict(split='holdout'), 'needs holdout > 0'),
    (dict(max_size=-2), 'max_size=-2'),
])
def test_bad_split_options_are_rejected(tmp_path, kwargs, words):
    _make_folder(tmp_path / 'data', count=4, size=4)
    assert words in _error_of(tmp_path / 'data', **kwargs)

#----------------------------------------------------------------------------
# Bad inputs: each its own reason, all in ONE error with the fixing command.

def _truncated_png(path, rng) -> None:
    buf = io.BytesIO()
    PIL.Image.fromarray(_random_image(rng, 16)).save(buf, format='PNG')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])

@pytest.mark.parametrize('make, words', [
    (lambda p, rng: _truncated_png(p / 'bad.png', rng), 'truncated or corrupt'),
    (lambda p, rng: (p / 'bad.jpg').write_text('this is not a JPEG'), 'not an image'),
    (lambda p, rng: _save(p / 'bad.png', _random_image(rng, 60, width=100)), 'is 100x60: not square'),
    (lambda p, rng: _save(p / 'bad.png', _random_image(rng, 12)), 'is 12x12: 12 is not a power of two'),
    (lambda p, rng: _save(p / 'bad.png', _random_image(rng, 32)), 'is 32x32, but most images are 16x16'),
    (lambda p, rng: _save(p / 'bad.png', _random_image(rng, 16, channels=4)), 'alpha channel (mode RGBA)'),
    (lambda p, rng: _save(p / 'bad.png', rng.randint(0, 65536, (16, 16)).astype(np.uint16)), 'not 8-bit'),
    (lambda p, rng: _save(p / 'bad.png', _random_image(rng, 16, channels=1)), 'has 1 channel(s), but most images have 3'),
])
def test_each_bad_image_gets_its_reason_and_the_fix(tmp_path, make, words):
    rng = np.random.RandomState(7)
    _make_folder(tmp_path / 'data', count=4, size=16)
    make(tmp_path / 'data', rng)
    message = _error_of(tmp_path / 'data')
    line = next(line for line in message.splitlines() if 'bad.' in line)
    assert words in line, message
    assert 'python dataset_tool.py --source=' in message and '--resolution=' in message

def test_three_sizes_mixed_list_the_minorities(tmp_path):
    rng = np.random.RandomState(8)
    for i, size in enumerate([16, 16, 16, 32, 8]):
        _save(tmp_path / 'data' / f'{i}.png', _random_image(rng, size))
    message = _error_of(tmp_path / 'data')
    assert '3.png: is 32x32, but most images are 16x16' in message
    assert '4.png: is 8x8, but most images are 16x16' in message
    assert '0.png' not in message
    assert '--resolution=16x16' in message

def test_resolution_mismatch_names_the_asked_size(tmp_path):
    _make_folder(tmp_path / 'data', count=2, size=16)
    message = _error_of(tmp_path / 'data', resolution=32)
    assert 'resolution=32 asks for 32x32' in message and '--resolution=32x32' in message

def test_many_problems_are_capped_with_a_count(tmp_path):
    rng = np.random.RandomState(9)
    for i in range(15):
        _save(tmp_path / 'data' / f'{i:02d}.png', _random_image(rng, 20))
    message = _error_of(tmp_path / 'data')
    assert message.count('not a power of two') == 10 and '... and 5 more' in message
    assert '15 problem(s)' in message

def test_non_square_suggests_center_crop(tmp_path):
    rng = np.random.RandomState(10)
    for i in range(3):
        _save(tmp_path / 'da ta' / f'{i}.png', _random_image(rng, 60, width=100))
    message = _error_of(tmp_path / 'da ta')
    assert '--transform=center-crop' in message and '--resolution=32x32' in message
    assert "'--source=" in message   # The path with a space is shell-quoted.

def test_empty_folder_and_missing_path(tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'notes.txt').write_text('no images here')
    message = _error_of(tmp_path / 'empty')
    assert 'contains no images' in message and 'notes.txt' in message
    assert 'does not exist' in _error_of(tmp_path / 'nowhere')

def test_macos_debris_and_hidden_files_are_ignored(tmp_path):
    _make_folder(tmp_path / 'data', count=2)
    (tmp_path / 'data' / '__MACOSX').mkdir()
    (tmp_path / 'data' / '__MACOSX' / '._img00.png').write_bytes(b'\x00\x05\x16\x07 resource fork')
    (tmp_path / 'data' / '.hidden.png').write_bytes(b'junk')
    assert len(ImageFolderDataset(str(tmp_path / 'data'))) == 2

#----------------------------------------------------------------------------
# Processes: pickling and DataLoader workers.

def test_zip_dataset_pickles_without_its_file_handle(tmp_path):
    images = _make_folder(tmp_path / 'data', count=3)
    _zip_folder(tmp_path / 'data', tmp_path / 'data.zip')
    ds = ImageFolderDataset(str(tmp_path / 'data.zip'))
    ds[0]   # Opens the ZIP.
    copy = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(copy[2][0], _as_chw(images[sorted(images)[2]]))

def test_dataloader_workers_read_the_same_items(tmp_path):
    torch.manual_seed(0)
    _make_folder(tmp_path / 'data', count=12, size=8)
    _zip_folder(tmp_path / 'data', tmp_path / 'data.zip')
    ds = ImageFolderDataset(str(tmp_path / 'data.zip'), xflip=True)
    ds[0]   # The parent holds an open ZIP handle before the workers fork.
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    images = torch.cat([batch[0] for batch in loader]).numpy()
    np.testing.assert_array_equal(images, np.stack([ds[i][0] for i in range(len(ds))]))

#----------------------------------------------------------------------------
