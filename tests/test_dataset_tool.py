"""Tests for dataset_tool.py: conversions checked against numpy/PIL/scipy references, atomic output, sources.

Sources are generated in tmp_path (the benchmark download goes through a file:// base URL
built there); the real 100-shot-obama set is read from ../shared when present.
"""

import io
import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time
import zipfile

import click
import numpy as np
import PIL.Image
import pytest
import scipy.ndimage
from click.testing import CliRunner

import dataset_tool
from training.dataset import DatasetError, ImageFolderDataset

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

#----------------------------------------------------------------------------
# Helpers.

def _noise(rng, height, width=None, channels=3) -> np.ndarray:
    shape = (height, width or height) + ((channels,) if channels > 1 else ())
    return rng.randint(0, 256, size=shape, dtype=np.uint8)

def _save(path, array, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(array).save(path, **kwargs)

def _as_chw(array) -> np.ndarray:
    array = np.asarray(array)
    return (array[:, :, np.newaxis] if array.ndim == 2 else array).transpose(2, 0, 1)

def _run(*args) -> 'click.testing.Result':
    """dataset_tool's CLI in-process (no progress bar noise matters)."""
    return CliRunner().invoke(dataset_tool.main, [str(a) for a in args], catch_exceptions=False)

def _images_in(path) -> list:
    ds = ImageFolderDataset(str(path), use_labels=True)
    return [ds[i] for i in range(len(ds))], ds

@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Built-in sets and downloads go to a per-test cache, never ~/.cache."""
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))

#----------------------------------------------------------------------------
# Round trips and labels.

@pytest.mark.parametrize('dest_name', ['out.zip', 'out_folder'])
def test_round_trip_folder_to_dataset_keeps_pixels(tmp_path, dest_name):
    rng = np.random.RandomState(0)
    sources = {f'{c}/{i}.png': _noise(rng, 16) for c in ('a', 'b') for i in range(3)}
    sources['loose.png'] = _noise(rng, 16)   # An image at the top: no sub-folder labels.
    for name, array in sources.items():
        _save(tmp_path / 'src' / name, array)
    result = _run('--source', tmp_path / 'src', '--dest', tmp_path / dest_name)
    assert result.exit_code == 0, result.output
    items, ds = _images_in(tmp_path / dest_name)
    assert len(items) == 7 and not ds.has_labels
    for (image, _), name in zip(items, sorted(sources)):
        np.testing.assert_array_equal(image, _as_chw(sources[name]))
    assert ds.get_filename(0) == '00000/img00000000.png' and ds.get_filename(6) == '00000/img00000006.png'

def test_labels_from_subfolders_follow_sorted_class_names(tmp_path):
    rng = np.random.RandomState(1)
    sources = {}
    for cls in ('zebra', 'cat', 'dog'):
        for i in range(2):
            sources[f'{cls}/nested/{i}.png'] = (cls, _noise(rng, 8))
    for name, (_, array) in sources.items():
        _save(tmp_path / 'src' / name, array)
    summary = dataset_tool.convert_dataset(str(tmp_path / 'src'), str(tmp_path / 'out.zip'), progress=False)
    assert summary.class_names == ['cat', 'dog', 'zebra']
    items, ds = _images_in(tmp_path / 'out.zip')
    assert ds.label_shape == [3]
    by_pixels = {array.tobytes(): cls for cls, array in sources.values()}
    for image, label in items:
        cls = by_pixels[image.transpose(1, 2, 0).tobytes()]
        np.testing.assert_array_equal(label, np.eye(3)[['cat', 'dog', 'zebra'].index(cls)])
    with zipfile.ZipFile(tmp_path / 'out.zip') as zf:
        assert json.loads(zf.read('dataset.json'))['class_names'] == ['cat', 'dog', 'zebra']

def test_forced_subfolder_labels_reject_loose_images(tmp_path):
    rng = np.random.RandomState(2)
    _save(tmp_path / 'src' / 'a' / '0.png', _noise(rng, 8))
    _save(tmp_path / 'src' / 'stray.png', _noise(rng, 8))
    with pytest.raises(click.ClickException, match='stray.png'):
        dataset_tool.convert_dataset(str(tmp_path / 'src'), str(tmp_path / 'out.zip'), labels='subfolders', progress=False)
    assert not (tmp_path / 'out.zip').exists()

def test_labels_from_source_dataset_json_are_carried_over(tmp_path):
    rng = np.random.RandomState(3)
    sources = {f'{i}.png': (_noise(rng, 8), [i % 2, 0.5 * i]) for i in range(4)}
    for name, (array, _) in sources.items():
        _save(tmp_path / 'src' / name, array)
    (tmp_path / 'src' / 'dataset.json').write_text(json.dumps({'labels': [[n, v] for n, (_, v) in sources.items()]}))
    items, ds = _images_in(_converted(tmp_path))
    by_pixels = {array.tobytes(): vector for array, vector in sources.values()}
    assert ds.label_shape == [2]
    for image, label in items:
        np.testing.assert_allclose(label, by_pixels[image.transpose(1, 2, 0).tobytes()])

def _converted(tmp_path, **kwargs) -> pathlib.Path:
    dataset_tool.convert_dataset(str(tmp_path / 'src'), str(tmp_path / 'out.zip'), progress=False, **kwargs)
    return tmp_path / 'out.zip'

def test_labels_none_drops_them(tmp_path):
    rng = np.random.RandomState(4)
    for cls in ('a', 'b'):
        _save(tmp_path / 'src' / cls / '0.png', _noise(rng, 8))
    _, ds = _images_in(_converted(tmp_path, labels='none'))
    assert not ds.has_labels

#----------------------------------------------------------------------------
# Pixel conversions.

def test_rgba_is_composited_onto_the_background(tmp_path):
    rng = np.random.RandomState(5)
    rgba = _noise(rng, 16, channels=4)
    _save(tmp_path / 'src' / 'a.png', rgba)
    items, _ = _images_in(_converted(tmp_path, background='#204080'))
    alpha = rgba[:, :, 3:].astype(np.float64) / 255
    expected = rgba[:, :, :3] * alpha + np.array([0x20, 0x40, 0x80]) * (1 - alpha)
    assert np.abs(items[0][0].transpose(1, 2, 0).astype(np.float64) - expected).max() <= 1.0

def test_rgba_drop_keeps_the_colour_channels(tmp_path):
    rgba = _noise(np.random.RandomState(6), 16, channels=4)
    _save(tmp_path / 'src' / 'a.png', rgba)
    items, _ = _images_in(_converted(tmp_path, rgba='drop'))
    np.testing.assert_array_equal(items[0][0], _as_chw(rgba[:, :, :3]))

def test_16bit_png_is_scaled_to_8bit(tmp_path):
    wide = np.random.RandomState(7).randint(0, 65536, (16, 16)).astype(np.uint16)
    _save(tmp_path / 'src' / 'a.png', wide)
    items, ds = _images_in(_converted(tmp_path))
    assert ds.num_channels == 1
    np.testing.assert_array_equal(items[0][0][0], np.clip(np.rint(wide / 257.0), 0, 255))

def test_grayscale_stays_one_channel_unless_forced(tmp_path):
    gray = _noise(np.random.RandomState(8), 16, channels=1)
    _save(tmp_path / 'src' / 'a.png', gray)
    items, ds = _images_in(_converted(tmp_path))
    assert ds.image_shape == [1, 16, 16]
    np.testing.assert_array_equal(items[0][0][0], gray)
    (tmp_path / 'out.zip').unlink()
    items, ds = _images_in(_converted(tmp_path, channels='3'))
    assert ds.image_shape == [3, 16, 16]
    for c in range(3):
        np.testing.assert_array_equal(items[0][0][c], gray)

def test_gray_and_colour_sources_become_rgb(tmp_path):
    rng = np.random.RandomState(9)
    gray, colour = _noise(rng, 8, channels=1), _noise(rng, 8)
    _save(tmp_path / 'src' / 'a.png', gray)
    _save(tmp_path / 'src' / 'b.png', colour)
    items, ds = _images_in(_converted(tmp_path))
    assert ds.num_channels == 3
    np.testing.assert_array_equal(items[0][0], np.stack([gray] * 3))
    np.testing.assert_array_equal(items[1][0], _as_chw(colour))

def test_exif_rotation_is_applied(tmp_path):
    array = _noise(np.random.RandomState(10), 8)
    exif = PIL.Image.Exif()
    exif[0x0112] = 8   # Display needs a 90-degree counter-clockwise turn.
    _save(tmp_path / 'src' / 'a.png', array, exif=exif)
    items, _ = _images_in(_converted(tmp_path))
    np.testing.assert_array_equal(items[0][0], _as_chw(np.rot90(array, k=1)))

#----------------------------------------------------------------------------
# Geometry.

def test_non_square_needs_a_transform(tmp_path):
    _save(tmp_path / 'src' / 'wide.png', _noise(np.random.RandomState(11), 60, 100))
    result = CliRunner().invoke(dataset_tool.main, ['--source', str(tmp_path / 'src'), '--dest', str(tmp_path / 'o.zip'),
                                                    '--resolution', '32x32'])
    assert result.exit_code != 0
    assert 'wide.png' in result.output and '--transform=center-crop' in result.output
    assert not (tmp_path / 'o.zip').exists()

def test_center_crop_takes_the_middle_square(tmp_path):
    array = _noise(np.random.RandomState(12), 60, 100)
    _save(tmp_path / 'src' / 'wide.png', array)
    _converted(tmp_path, resolution=(60, 60), transform='center-crop')
    with zipfile.ZipFile(tmp_path / 'out.zip') as zf:   # 60x60 is no training size: read the PNG itself.
        image = np.asarray(PIL.Image.open(io.BytesIO(zf.read('00000/img00000000.png'))))
    np.testing.assert_array_equal(image, array[:, 20:80])

def test_center_crop_then_resize_matches_a_lanczos_reference(tmp_path):
    array = _noise(np.random.RandomState(13), 60, 100)
    _save(tmp_path / 'src' / 'wide.png', array)
    items, _ = _images_in(_converted(tmp_path, resolution=(32, 32), transform='center-crop'))
    # The reference crops with numpy; the result must be a 32x32 Lanczos view of that square.
    reference = np.asarray(PIL.Image.fromarray(np.ascontiguousarray(array[:, 20:80])).resize((32, 32), PIL.Image.LANCZOS))
    np.testing.assert_array_equal(items[0][0], _as_chw(reference))

def test_pad_centres_the_image_on_the_background(tmp_path):
    array = _noise(np.random.RandomState(14), 32, 64)
    _save(tmp_path / 'src' / 'wide.png', array)
    items, _ = _images_in(_converted(tmp_path, resolution=(64, 64), transform='pad', background='black'))
    image = items[0][0].transpose(1, 2, 0)
    assert not image[:16].any() and not image[48:].any()
    np.testing.assert_array_equal(image[16:48], array)

def test_center_crop_wide_keeps_a_2_to_1_band(tmp_path):
    array = _noise(np.random.RandomState(15), 64, 64)
    _save(tmp_path / 'src' / 'sq.png', array)
    items, _ = _images_in(_converted(tmp_path, resolution=(64, 64), transform='center-crop-wide', background='black'))
    image = items[0][0].transpose(1, 2, 0)
    assert not image[:16].any() and not image[48:].any()
    np.testing.assert_array_equal(image[16:48], array[16:48])

def test_box_filter_averages_blocks(tmp_path):
    array = _noise(np.random.RandomState(16), 16)
    _save(tmp_path / 'src' / 'a.png', array)
    items, _ = _images_in(_converted(tmp_path, resolution=(4, 4), resize_filter='box'))
    blocks = array.reshape(4, 4, 4, 4, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(items[0][0].transpose(1, 2, 0) - blocks).max() <= 1.0

def test_mixed_sizes_need_a_resolution(tmp_path):
    rng = np.random.RandomState(17)
    for i, size in enumerate([16, 16, 32, 8]):
        _save(tmp_path / 'src' / f'{i}.png', _noise(rng, size))
    with pytest.raises(click.ClickException) as info:
        _converted(tmp_path)
    assert '2.png' in info.value.message and '3.png' in info.value.message and '--resolution=16x16' in info.value.message
    _, ds = _images_in(_converted(tmp_path, resolution=(16, 16)))
    assert len(ds) == 4 and ds.resolution == 16

def test_non_power_of_two_is_allowed_with_a_note(tmp_path):
    _save(tmp_path / 'src' / 'a.png', _noise(np.random.RandomState(18), 8))
    result = _run('--source', tmp_path / 'src', '--dest', tmp_path / 'o.zip', '--resolution', '12x12')
    assert result.exit_code == 0 and 'not a square power-of-two' in result.output
    with zipfile.ZipFile(tmp_path / 'o.zip') as zf:
        assert PIL.Image.open(io.BytesIO(zf.read('00000/img00000000.png'))).size == (12, 12)

@pytest.mark.parametrize('args, words', [
    (['--resolution', 'big'], "'big' is not a size"),
    (['--transform', 'pad'], '--transform=pad needs --resolution'),
    (['--background', 'nocolour'], "'nocolour' is not a colour"),
])
def test_bad_options_are_named(tmp_path, args, words):
    _save(tmp_path / 'src' / 'a.png', _noise(np.random.RandomState(19), 8))
    result = CliRunner().invoke(dataset_tool.main, ['--source', str(tmp_path / 'src'), '--dest', str(tmp_path / 'o.zip')] + args)
    assert result.exit_code == 2 and words in result.output

#----------------------------------------------------------------------------
# Bad files, max images, destinations.

def test_unreadable_files_are_skipped_with_reasons(tmp_path):
    rng = np.random.RandomState(20)
    for i in range(3):
        _save(tmp_path / 'src' / f'{i}.png', _noise(rng, 8))
    buf = io.BytesIO()
    PIL.Image.fromarray(_noise(rng, 64)).save(buf, format='PNG')
    (tmp_path / 'src' / 'cut.png').write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
    (tmp_path / 'src' / 'fake.jpg').write_text('not a jpeg')
    result = _run('--source', tmp_path / 'src', '--dest', tmp_path / 'out.zip')
    assert result.exit_code == 0
    assert 'Wrote 3 images' in result.output and 'Skipped 2 file(s)' in result.output
    assert 'cut.png: truncated or corrupt' in result.output and 'fake.jpg: not an image' in result.output
    assert len(ImageFolderDataset(str(tmp_path / 'out.zip'))) == 3

def test_max_images_stops_early(tmp_path):
    rng = np.random.RandomState(21)
    sources = [_noise(rng, 8) for _ in range(5)]
    for i, array in enumerate(sources):
        _save(tmp_path / 'src' / f'{i}.png', array)
    items, _ = _images_in(_converted(tmp_path, max_images=2))
    assert len(items) == 2
    np.testing.assert_array_equal(items[1][0], _as_chw(sources[1]))

def test_refuses_a_non_empty_destination(tmp_path):
    _save(tmp_path / 'src' / 'a.png', _noise(np.random.RandomState(22), 8))
    (tmp_path / 'taken.zip').write_bytes(b'precious')
    (tmp_path / 'full').mkdir()
    (tmp_path / 'full' / 'keep.txt').write_text('precious')
    for dest in ('taken.zip', 'full'):
        result = CliRunner().invoke(dataset_tool.main, ['--source', str(tmp_path / 'src'), '--dest', str(tmp_path / dest)])
        assert result.exit_code == 1 and 'refusing to overwrite' in result.output
    assert (tmp_path / 'taken.zip').read_bytes() == b'precious' and (tmp_path / 'full' / 'keep.txt').exists()
    (tmp_path / 'empty').mkdir()
    assert _run('--source', tmp_path / 'src', '--dest', tmp_path / 'empty').exit_code == 0
    assert len(ImageFolderDataset(str(tmp_path / 'empty'))) == 1

def test_unicode_and_spaces_in_source_and_dest(tmp_path):
    array = _noise(np.random.RandomState(23), 8)
    _save(tmp_path / 'sôurce dïr' / 'ïmage one.png', array)
    dest = tmp_path / 'dést földer' / 'öut put.zip'
    assert _run('--source', tmp_path / 'sôurce dïr', '--dest', dest).exit_code == 0
    np.testing.assert_array_equal(ImageFolderDataset(str(dest))[0][0], _as_chw(array))

@pytest.mark.skipif(not hasattr(signal, 'SIGKILL'), reason='needs POSIX SIGKILL')
def test_killed_run_leaves_no_destination(tmp_path):
    rng = np.random.RandomState(24)
    for i in range(300):
        _save(tmp_path / 'src' / f'{i:03d}.png', _noise(rng, 128), compress_level=0)
    out_dir = tmp_path / 'out'
    dest = out_dir / 'data.zip'
    with open(tmp_path / 'stderr.txt', 'wb') as err:
        proc = subprocess.Popen([sys.executable, 'dataset_tool.py', f'--source={tmp_path / "src"}', f'--dest={dest}'],
                                cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 120
            partial = []
            while proc.poll() is None and time.monotonic() < deadline:
                partial = [p for p in out_dir.glob('.data.zip.*') if p.stat().st_size > 0] if out_dir.exists() else []
                if partial:
                    break
                time.sleep(0.005)
            assert partial and proc.poll() is None, 'the tool finished (or never started writing) before it could be killed'
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not dest.exists()
    assert all(p.name.startswith('.data.zip.') for p in out_dir.iterdir())   # Only a hidden partial file, if any.
    # A rerun is not blocked by the leftover and completes.
    dataset_tool.convert_dataset(str(tmp_path / 'src'), str(dest), progress=False, max_images=5)
    assert len(ImageFolderDataset(str(dest))) == 5

def test_dataset_error_fix_command_makes_a_valid_dataset(tmp_path):
    rng = np.random.RandomState(25)
    src = tmp_path / 'my photos'
    _save(src / 'a.png', _noise(rng, 60, 100))
    _save(src / 'b.png', _noise(rng, 48, channels=4))
    _save(src / 'c.png', _noise(rng, 40, channels=1))
    (src / 'd.jpg').write_text('oops')
    with pytest.raises(DatasetError) as info:
        ImageFolderDataset(str(src))
    command = next(line.strip() for line in str(info.value).splitlines() if 'dataset_tool.py' in line and '--dest' in line)
    args = shlex.split(command)
    assert args[:2] == ['python', 'dataset_tool.py']
    assert _run(*args[2:]).exit_code == 0
    dest = next(a.split('=', 1)[1] for a in args if a.startswith('--dest='))
    ds = ImageFolderDataset(dest)
    assert len(ds) == 3 and ds.image_shape == [3, 32, 32]

#----------------------------------------------------------------------------
# Benchmark sets by name, through a file:// base URL.

def _zip_images(zip_path, count, size=16, seed=26) -> list:
    rng = np.random.RandomState(seed)
    arrays = [_noise(rng, size) for _ in range(count)]
    with zipfile.ZipFile(zip_path, 'w') as zf:
        for i, array in enumerate(arrays):
            buf = io.BytesIO()
            PIL.Image.fromarray(array).save(buf, format='PNG')
            zf.writestr(f'panda/img/{i}.png', buf.getvalue())
    return arrays

def test_benchmark_name_downloads_through_the_base_url(tmp_path, monkeypatch):
    mirror = tmp_path / 'mirror'
    mirror.mkdir()
    arrays = _zip_images(mirror / '100-shot-panda.zip', 5)
    monkeypatch.setenv(dataset_tool.BENCHMARK_URL_ENV, mirror.as_uri())
    assert dataset_tool.benchmark_url('100-shot-panda') == mirror.as_uri() + '/100-shot-panda.zip'
    result = _run('--source', '100-shot-panda', '--dest', tmp_path / 'panda.zip', '--resolution', '8x8')
    assert result.exit_code == 0, result.output
    items, ds = _images_in(tmp_path / 'panda.zip')
    assert len(items) == 5 and ds.image_shape == [3, 8, 8] and not ds.has_labels
    by_name = sorted(range(5), key=lambda i: f'panda/img/{i}.png')
    reference = np.asarray(PIL.Image.fromarray(arrays[by_name[0]]).resize((8, 8), PIL.Image.LANCZOS))
    np.testing.assert_array_equal(items[0][0], _as_chw(reference))

def test_benchmark_that_is_not_a_zip_is_reported(tmp_path, monkeypatch):
    (tmp_path / '100-shot-panda.zip').write_text('<html>Not found</html>')
    monkeypatch.setenv(dataset_tool.BENCHMARK_URL_ENV, tmp_path.as_uri())
    with pytest.raises(click.ClickException, match='not a ZIP archive'):
        dataset_tool.convert_dataset('100-shot-panda', str(tmp_path / 'o.zip'), progress=False)

def test_unreachable_url_gives_the_offline_message(tmp_path, monkeypatch):
    monkeypatch.setenv(dataset_tool.BENCHMARK_URL_ENV, 'http://127.0.0.1:9/datasets')
    with pytest.raises(click.ClickException) as info:
        dataset_tool.convert_dataset('AnimalFace-cat', str(tmp_path / 'o.zip'), progress=False)
    message = info.value.message
    assert 'http://127.0.0.1:9/datasets/AnimalFace-cat.zip' in message and 'offline' in message
    assert '--source path/to/AnimalFace-cat.zip' in message
    assert not (tmp_path / 'o.zip').exists()

def test_unknown_source_lists_what_is_accepted(tmp_path):
    with pytest.raises(click.ClickException) as info:
        dataset_tool.convert_dataset(str(tmp_path / 'nope'), str(tmp_path / 'o.zip'), progress=False)
    assert 'builtin:lfw-faces-100' in info.value.message and '100-shot-obama' in info.value.message

def test_obama_converts_to_100_images_at_64(tmp_path, monkeypatch, obama_dir):
    # Zipped at test time in tmp_path (never committed) and fetched by name through file://.
    with zipfile.ZipFile(tmp_path / '100-shot-obama.zip', 'w') as zf:
        for path in sorted(obama_dir.glob('*.jpg')):
            zf.write(path, f'100-shot-obama/{path.name}')
    monkeypatch.setenv(dataset_tool.BENCHMARK_URL_ENV, tmp_path.as_uri())
    summary = dataset_tool.convert_dataset('100-shot-obama', str(tmp_path / 'obama64.zip'), resolution=(64, 64),
                                           progress=False)
    assert summary.kept == 100 and not summary.skipped
    ds = ImageFolderDataset(str(tmp_path / 'obama64.zip'))
    assert len(ds) == 100 and ds.image_shape == [3, 64, 64]
    # Downscaling preserves each image's mean colour (a property of any normalised low-pass filter).
    first = np.asarray(PIL.Image.open(sorted(obama_dir.glob('*.jpg'), key=lambda p: p.name)[0]), dtype=np.float64)
    np.testing.assert_allclose(ds[0][0].mean(axis=(1, 2)), first.mean(axis=(0, 1)), atol=2.0)

#----------------------------------------------------------------------------
# The built-in lfw-faces-100.

def test_builtin_lfw_faces_100_is_100_gray_32px_faces(tmp_path):
    skimage_data = pytest.importorskip('skimage.data', reason='scikit-image (optional) provides lfw_subset')
    result = _run('--source', 'builtin:lfw-faces-100', '--dest', tmp_path / 'lfw.zip')
    assert result.exit_code == 0, result.output
    ds = ImageFolderDataset(str(tmp_path / 'lfw.zip'))
    assert len(ds) == 100 and ds.image_shape == [1, 32, 32] and not ds.has_labels
    faces = skimage_data.lfw_subset()[:100] * 255
    images = np.stack([ds[i][0][0] for i in range(100)]).astype(np.float64)
    # An independent resampler (scipy cubic spline zoom) must agree closely, image by image, in order.
    reference = np.stack([scipy.ndimage.zoom(face, 32 / 25, order=3) for face in faces])
    assert reference.shape == images.shape
    corr = np.corrcoef(images.reshape(100, -1), reference.reshape(100, -1))[:100, 100:]
    assert np.all(np.diag(corr) > 0.97)
    assert np.all(np.argmax(corr, axis=1) == np.arange(100))
    np.testing.assert_allclose(images.mean(axis=(1, 2)), faces.mean(axis=(1, 2)), atol=2.0)

def test_builtin_path_is_made_once_and_reused(tmp_path):
    pytest.importorskip('skimage.data', reason='scikit-image (optional) provides lfw_subset')
    ds = ImageFolderDataset('builtin:lfw-faces-100')
    path = pathlib.Path(dataset_tool.builtin_dataset_path('lfw-faces-100'))
    assert path.is_relative_to(tmp_path / 'cache') and ds.name == 'lfw-faces-100' and len(ds) == 100
    stamp = path.stat().st_mtime_ns
    ImageFolderDataset('builtin:lfw-faces-100')
    assert path.stat().st_mtime_ns == stamp

def test_builtin_without_scikit_image_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'skimage', None)
    monkeypatch.setitem(sys.modules, 'skimage.data', None)
    with pytest.raises(click.ClickException, match='pip install scikit-image'):
        dataset_tool.make_builtin('lfw-faces-100', str(tmp_path / 'x.zip'))
    with pytest.raises(DatasetError, match='pip install scikit-image'):
        ImageFolderDataset('builtin:lfw-faces-100')

def test_unknown_builtin_lists_the_available_ones(tmp_path):
    with pytest.raises(click.ClickException, match='builtin:lfw-faces-100'):
        dataset_tool.make_builtin('mnist', str(tmp_path / 'x.zip'))

#----------------------------------------------------------------------------
