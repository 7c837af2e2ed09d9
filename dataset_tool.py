"""dataset_tool.py: turn images into a training dataset (StyleGAN2-ADA ZIP/folder format).

Sources: a folder or ZIP of images (recursively), `builtin:lfw-faces-100` (100 LFW face
crops shipped with scikit-image, 32x32 grayscale, no download), or a few-shot benchmark
set by name (`100-shot-obama`, `100-shot-grumpy_cat`, `100-shot-panda`, `AnimalFace-cat`,
`AnimalFace-dog`: the DiffAugment collection, downloaded once through dnnlib's cache).

The output is what `training.dataset.ImageFolderDataset` reads (DESIGN §3): PNGs named
`00000/img00000000.png`, one size, 1 or 3 channels, 8 bits, plus `dataset.json` with the
labels (`{"labels": [["00000/img00000000.png", 3], ...]}` or `{"labels": null}`). It is
written to a temporary file or folder beside the destination and moved into place at the
end, so an interrupted run leaves no half-written dataset.

    python dataset_tool.py --source=~/photos --dest=~/datasets/photos-256.zip --resolution=256x256 --transform=center-crop
    python dataset_tool.py --source=100-shot-obama --dest=obama.zip
    python dataset_tool.py --source=builtin:lfw-faces-100 --dest=lfw.zip
"""

import collections
import io
import json
import os
import shutil
import tempfile
import zipfile
from typing import Any, Callable, Optional

import click
import numpy as np
import PIL.Image
import PIL.ImageColor
import PIL.ImageOps
from tqdm import tqdm

import dnnlib
from training.dataset import (BUILTIN_PREFIX, DECODE_ERRORS, LABELS_FILE, DatasetError, DatasetFiles,
                              decode_error_reason, format_problems, open_image, parse_labels, read_labels_json)

#----------------------------------------------------------------------------

BENCHMARK_SETS   = ('100-shot-obama', '100-shot-grumpy_cat', '100-shot-panda', 'AnimalFace-cat', 'AnimalFace-dog')
BENCHMARK_URL    = 'https://data-efficient-gans.mit.edu/datasets'
BENCHMARK_URL_ENV = 'FEWSHOT_DATASETS_URL'   # Overrides BENCHMARK_URL (a mirror, or file:// in tests).
BUILTIN_SETS     = ('lfw-faces-100',)
TRANSFORMS       = ('center-crop', 'center-crop-wide', 'pad')
RESIZE_FILTERS   = {'box': PIL.Image.BOX, 'lanczos': PIL.Image.LANCZOS}
GRAY_MODES       = ('1', 'L', 'LA', 'La', 'I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F')
EXIF_ORIENTATION = 0x0112

#----------------------------------------------------------------------------

def parse_resolution(text: Optional[str]) -> Optional[tuple[int, int]]:
    """'256x256' (or '256') -> (width, height); None stays None."""
    if text is None:
        return None
    parts = text.lower().split('x')
    if len(parts) == 1:
        parts = parts * 2
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        width = height = 0
    if len(parts) != 2 or width < 1 or height < 1:
        raise click.BadParameter(f'{text!r} is not a size; expected WxH, e.g. 256x256', param_hint='--resolution')
    return width, height

#----------------------------------------------------------------------------

def is_training_size(width: int, height: int) -> bool:
    """Training needs a square power-of-two size."""
    return width == height and width >= 4 and (width & (width - 1)) == 0

#----------------------------------------------------------------------------
# The atomic writer.

def check_dest_free(dest: str) -> None:
    """A ClickException unless `dest` is free: absent, or an empty folder (for a folder dataset)."""
    dest = os.path.abspath(os.path.expanduser(str(dest)))
    is_zip = dest.lower().endswith('.zip')
    if os.path.isdir(dest):
        if is_zip or os.listdir(dest):
            raise click.ClickException(f'--dest {dest!r} exists and is not empty; refusing to overwrite it. '
                                       f'Choose a new name, or delete it first if you mean to replace it.')
    elif os.path.lexists(dest):
        raise click.ClickException(f'--dest {dest!r} already exists; refusing to overwrite it. Choose a new name '
                                   f'(a .zip, or a non-existent or empty folder), or delete it first.')

#----------------------------------------------------------------------------

class DatasetWriter:
    """Writes images as `00000/img00000000.png` + dataset.json to `dest` (.zip or folder), atomically.

    Everything goes to a temporary file/folder beside `dest`; `commit()` moves it into
    place with os.replace, `abort()` (or leaving the `with` block on an error) deletes it.
    A destination that exists and is not an empty folder is refused.
    """

    def __init__(self, dest: str):
        self.dest = os.path.abspath(os.path.expanduser(str(dest)))
        self.is_zip = self.dest.lower().endswith('.zip')
        check_dest_free(self.dest)
        parent, base = os.path.split(self.dest)
        os.makedirs(parent, exist_ok=True)
        prefix = f'.{base}.'
        if self.is_zip:
            fd, self._tmp = tempfile.mkstemp(dir=parent, prefix=prefix, suffix='.partial')
            self._zip: Optional[zipfile.ZipFile] = zipfile.ZipFile(os.fdopen(fd, 'wb'), 'w', zipfile.ZIP_STORED)
        else:
            self._tmp = tempfile.mkdtemp(dir=parent, prefix=prefix, suffix='.partial')
            self._zip = None
        self.count = 0

    def _write(self, name: str, data: bytes) -> None:
        if self._zip is not None:
            self._zip.writestr(name, data)
        else:
            path = os.path.join(self._tmp, *name.split('/'))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'wb') as f:
                f.write(data)

    def add_image(self, image: np.ndarray) -> str:
        """Append one uint8 [H, W] or [H, W, 3] image; returns its name in the dataset."""
        index = f'{self.count:08d}'
        name = f'{index[:5]}/img{index}.png'
        buf = io.BytesIO()
        PIL.Image.fromarray(image).save(buf, format='PNG', compress_level=1)
        self._write(name, buf.getvalue())
        self.count += 1
        return name

    def commit(self, labels_json: dict) -> None:
        """Write dataset.json and move the dataset into place."""
        self._write(LABELS_FILE, json.dumps(labels_json).encode('utf-8'))
        if self._zip is not None:
            fileobj = self._zip.fp
            self._zip.close()
            fileobj.flush()
            os.fsync(fileobj.fileno())
            fileobj.close()
            self._zip = None
        check_dest_free(self.dest)   # Someone may have created it meanwhile; os.replace would clobber a file.
        if os.path.isdir(self.dest):
            os.rmdir(self.dest)  # Empty (checked): replacing a directory is not portable.
        os.replace(self._tmp, self.dest)
        self._tmp = None

    def abort(self) -> None:
        if self._zip is not None:
            fileobj = self._zip.fp
            self._zip.close()
            fileobj.close()
            self._zip = None
        if self._tmp is not None:
            if os.path.isdir(self._tmp):
                shutil.rmtree(self._tmp, ignore_errors=True)
            elif os.path.exists(self._tmp):
                os.remove(self._tmp)
            self._tmp = None

    def __enter__(self) -> 'DatasetWriter':
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._tmp is not None:
            self.abort()

#----------------------------------------------------------------------------
# Sources: built-in sets and benchmark downloads.

def _lfw_faces_100() -> list[np.ndarray]:
    """The first 100 images of skimage.data.lfw_subset() (the faces), resized 25 -> 32 px, uint8 [32, 32]."""
    try:
        import skimage.data
    except ImportError:
        raise click.ClickException('builtin:lfw-faces-100 comes from scikit-image, which is not installed: '
                                   'pip install scikit-image') from None
    faces = skimage.data.lfw_subset()[:100]   # float64 [100, 25, 25] in [0, 1]
    images = []
    for face in faces:
        # Resize in float, quantise once.
        resized = PIL.Image.fromarray(face.astype(np.float32), mode='F').resize((32, 32), PIL.Image.LANCZOS)
        images.append(np.clip(np.rint(np.asarray(resized) * 255), 0, 255).astype(np.uint8))
    return images

#----------------------------------------------------------------------------

def make_builtin(name: str, dest: str) -> None:
    """Write the built-in set `name` (e.g. 'lfw-faces-100') as a dataset at `dest` (.zip or folder)."""
    if name not in BUILTIN_SETS:
        raise click.ClickException(f'builtin:{name} is not a built-in dataset; available: '
                                   + ', '.join(BUILTIN_PREFIX + n for n in BUILTIN_SETS))
    images = _lfw_faces_100()
    with DatasetWriter(dest) as writer:
        for image in images:
            writer.add_image(image)
        writer.commit({'labels': None})

#----------------------------------------------------------------------------

def builtin_dataset_path(name: str) -> str:
    """The path of built-in set `name` as a ZIP in dnnlib's cache, made on first use."""
    path = dnnlib.make_cache_dir_path('datasets', f'{name}.zip')
    if not os.path.isfile(path):
        try:
            make_builtin(name, path)
        except click.ClickException:
            if not os.path.isfile(path):   # Else another process (a second rank) made it first: fine.
                raise
    return path

#----------------------------------------------------------------------------

def benchmark_url(name: str) -> str:
    """Where benchmark set `name` is downloaded from ($FEWSHOT_DATASETS_URL overrides the base)."""
    base = os.environ.get(BENCHMARK_URL_ENV) or BENCHMARK_URL
    return f'{base.rstrip("/")}/{name}.zip'

#----------------------------------------------------------------------------

def download_benchmark(name: str) -> str:
    """Download (once, through dnnlib's cache) benchmark set `name`; the local path of its ZIP."""
    url = benchmark_url(name)
    try:
        path = dnnlib.util.open_url(url, num_attempts=3, verbose=True, return_filename=True)
    except Exception as err:   # Any failure to fetch (DNS, refused, HTTP error, missing file) means the same to the user.
        raise click.ClickException(
            f'Could not download {name} from {url} ({type(err).__name__}: {err}). This machine may be offline. '
            f'Download the archive by hand on a machine with internet (e.g. curl -LO {url}), copy it here and pass '
            f'it with --source path/to/{name}.zip (or set ${BENCHMARK_URL_ENV} to a mirror).') from None
    path = str(path)
    if not zipfile.is_zipfile(path):
        raise click.ClickException(f'{url} gave {path}, which is not a ZIP archive (an error page or a broken '
                                   f'download?). Delete that file and retry, or download the archive by hand and '
                                   f'pass it with --source path/to/{name}.zip')
    return path

#----------------------------------------------------------------------------

def open_source(source: str) -> tuple[DatasetFiles, str]:
    """The files of `--source` (folder, ZIP, builtin:NAME or a benchmark name) and its kind."""
    if source.startswith(BUILTIN_PREFIX):
        path, kind = builtin_dataset_path(source[len(BUILTIN_PREFIX):]), 'builtin'
    elif os.path.exists(source):
        path, kind = source, 'path'
    elif source in BENCHMARK_SETS:
        path, kind = download_benchmark(source), 'benchmark'
    else:
        raise click.ClickException(
            f'--source {source!r} is neither a file nor a folder. Expected a folder of images, a .zip, '
            + ', '.join(BUILTIN_PREFIX + n for n in BUILTIN_SETS) + ', or a benchmark set: ' + ', '.join(BENCHMARK_SETS))
    try:
        files = DatasetFiles(path)
    except DatasetError as err:
        raise click.ClickException(str(err)) from None
    if not files.image_names:
        raise click.ClickException(f'--source {source!r} ({path}) contains no images '
                                   f'(png, jpg, webp, bmp, gif, tiff; searched recursively)')
    return files, kind

#----------------------------------------------------------------------------
# Reading headers before converting: sizes, colour, labels.

def _is_gray(image: PIL.Image.Image) -> bool:
    if image.mode in GRAY_MODES:
        return True
    if image.mode == 'P':
        palette = np.array(image.getpalette() or [0, 255, 0], dtype=np.int32).reshape(-1, 3)
        return bool(np.all(palette[:, 0] == palette[:, 1]) and np.all(palette[:, 1] == palette[:, 2]))
    return False

#----------------------------------------------------------------------------

def prescan(files: DatasetFiles) -> tuple[list[dnnlib.EasyDict], list[tuple[str, str]]]:
    """Read every image's header: (entries with name, width, height (upright), gray), unreadable (name, reason)."""
    entries, skipped = [], []
    for name in files.image_names:
        try:
            with files.open(name) as f:
                image = PIL.Image.open(f)
                width, height = image.size
                if image.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                    width, height = height, width   # Rotated by 90 degrees once upright.
                entries.append(dnnlib.EasyDict(name=name, width=width, height=height, gray=_is_gray(image)))
        except DECODE_ERRORS + (zipfile.BadZipFile,) as err:
            skipped.append((name, decode_error_reason(err)))
    return entries, skipped

#----------------------------------------------------------------------------

def _class_of(name: str) -> Optional[str]:
    return name.split('/')[0] if '/' in name else None

#----------------------------------------------------------------------------

def choose_labels(files: DatasetFiles, mode: str) -> tuple[Optional[dict[str, Any]], Optional[list[str]], str]:
    """Labels by image name, the class names (sub-folder labels only) and a one-line description.

    mode 'none': no labels. 'subfolders': the first folder of each path is its class, in
    sorted order. 'auto': the source's dataset.json if it has one, else sub-folder labels
    when every image sits in one of two or more sub-folders, else none.
    """
    names = files.image_names
    if mode == 'none':
        return None, None, 'none'
    folders = [_class_of(name) for name in names]
    if mode == 'auto' and files.has(LABELS_FILE):
        value, problems = read_labels_json(files)
        raw, more = parse_labels(value, names) if not problems else (None, [])
        if problems or more:
            raise click.ClickException(f'The labels in the source\'s {LABELS_FILE} do not match its images:\n'
                                       f'{format_problems(problems + more)}\nFix {LABELS_FILE}, or pass --labels=none '
                                       f'(drop them) or --labels=subfolders (one sub-folder per class).')
        if raw is None:
            return None, None, f'none ({LABELS_FILE} says null)'
        values = [int(v) if raw.ndim == 1 else [float(x) for x in v] for v in raw]
        return dict(zip(names, values)), None, f'from the source\'s {LABELS_FILE}'
    if mode == 'auto' and (None in folders or len(set(folders)) < 2):
        return None, None, 'none'
    loose = [name for name, folder in zip(names, folders) if folder is None]
    if loose:
        raise click.ClickException(f'--labels=subfolders: {len(loose)} image(s) sit at the top of the source, in no '
                                   f'class folder: {", ".join(loose[:10])}{" ..." if len(loose) > 10 else ""}. Move them '
                                   f'into a sub-folder named for their class, or pass --labels=none.')
    class_names = sorted(set(folders))
    index = {c: i for i, c in enumerate(class_names)}
    return {name: index[f] for name, f in zip(names, folders)}, class_names, f'{len(class_names)} classes from sub-folders'

#----------------------------------------------------------------------------

def _check_sizes(entries: list[dnnlib.EasyDict], resolution: Optional[tuple[int, int]],
                 transform: Optional[str]) -> tuple[int, int]:
    """The output (width, height); a ClickException naming the images that cannot get there without a transform."""
    if transform is not None:
        return resolution
    if resolution is None:
        common = collections.Counter((e.width, e.height) for e in entries).most_common(1)[0][0]
        bad = [(e.name, f'is {e.width}x{e.height}, most are {common[0]}x{common[1]}') for e in entries
               if (e.width, e.height) != common]
        if bad:
            side = 2 ** int(np.floor(np.log2(max(4, min(common)))))
            raise click.ClickException(f'The source images differ in size:\n{format_problems(bad)}\nPass --resolution '
                                       f'to resize them all, e.g. --resolution={side}x{side} (and --transform=center-crop '
                                       f'or --transform=pad for images that are not square).')
        return common
    width, height = resolution
    bad = [(e.name, f'is {e.width}x{e.height}, not the shape of {width}x{height}') for e in entries
           if e.width * height != e.height * width]
    if bad:
        raise click.ClickException(f'Some images have another aspect ratio than --resolution={width}x{height}, so they '
                                   f'cannot just be resized:\n{format_problems(bad)}\nPass --transform=center-crop '
                                   f'(crop the middle), --transform=pad (add borders) or --transform=center-crop-wide.')
    return resolution

#----------------------------------------------------------------------------
# Converting one image.

class SkipImage(Exception):
    """This image cannot be converted; the message is the reason, shown in the summary."""

#----------------------------------------------------------------------------

def to_8bit_l_or_rgb(image: PIL.Image.Image, rgba: str, background: tuple[int, int, int], notes: dict) -> PIL.Image.Image:
    """Any PIL mode -> 8-bit 'L' or 'RGB': 16-bit scaled (v / 257), alpha composited or dropped, palettes expanded."""
    mode = image.mode
    if mode.startswith('I'):
        # 16-bit (and 32-bit 'I' as PNG 16-bit reads in): 65535 -> 255.
        wide = np.asarray(image).astype(np.float64)
        notes['16-bit converted to 8-bit'] = notes.get('16-bit converted to 8-bit', 0) + 1
        return PIL.Image.fromarray(np.clip(np.rint(wide / 257), 0, 255).astype(np.uint8), mode='L')
    if mode == 'F':
        raise SkipImage('32-bit float pixels (mode F) have no standard range; save it as 8 or 16 bit')
    if mode == '1':
        return image.convert('L')
    if mode in ('P', 'PA'):
        image = image.convert('RGBA' if mode == 'PA' or 'transparency' in image.info else 'RGB')
    elif mode in ('CMYK', 'YCbCr', 'LAB', 'HSV'):
        image = image.convert('RGB')
    if image.mode in ('RGBA', 'LA', 'RGBa', 'La'):
        if rgba == 'drop':
            notes['alpha dropped'] = notes.get('alpha dropped', 0) + 1
            return image.convert('L' if image.mode in ('LA', 'La') else 'RGB')
        notes['alpha composited'] = notes.get('alpha composited', 0) + 1
        backdrop = PIL.Image.new('RGBA', image.size, tuple(background) + (255,))
        return PIL.Image.alpha_composite(backdrop, image.convert('RGBA')).convert('RGB')
    if image.mode not in ('L', 'RGB'):
        raise SkipImage(f'colour mode {image.mode} is not supported')
    return image

#----------------------------------------------------------------------------

def _crop_to_aspect(image: PIL.Image.Image, width: int, height: int) -> PIL.Image.Image:
    """The largest centred region of `image` with the aspect ratio width:height."""
    iw, ih = image.size
    if iw * height > ih * width:
        cw, ch = max(1, round(ih * width / height)), ih
    else:
        cw, ch = iw, max(1, round(iw * height / width))
    left, top = (iw - cw) // 2, (ih - ch) // 2
    return image.crop((left, top, left + cw, top + ch))

#----------------------------------------------------------------------------

def _pad_to_aspect(image: PIL.Image.Image, width: int, height: int, fill: Any) -> PIL.Image.Image:
    """`image` centred on the smallest canvas (filled with `fill`) with the aspect ratio width:height."""
    iw, ih = image.size
    if iw * height > ih * width:
        cw, ch = iw, round(iw * height / width)
    else:
        cw, ch = round(ih * width / height), ih
    canvas = PIL.Image.new(image.mode, (cw, ch), fill)
    canvas.paste(image, ((cw - iw) // 2, (ch - ih) // 2))
    return canvas

#----------------------------------------------------------------------------

def fit_geometry(image: PIL.Image.Image, size: tuple[int, int], transform: Optional[str], resample: int,
                 background: tuple[int, int, int], notes: dict) -> PIL.Image.Image:
    """Crop/pad per `transform`, then resize to `size` = (width, height)."""
    width, height = size
    fill = PIL.ImageColor.getcolor('#%02x%02x%02x' % tuple(background), image.mode)
    if transform == 'center-crop':
        image = _crop_to_aspect(image, width, height)
    elif transform == 'pad':
        image = _pad_to_aspect(image, width, height, fill)
    elif transform == 'center-crop-wide':
        # A 2:1 band across the middle of a square canvas (cars: wide subjects).
        band = _crop_to_aspect(image, width, height // 2)
        band = band.resize((width, height // 2), resample) if band.size != (width, height // 2) else band
        canvas = PIL.Image.new(image.mode, (width, height), fill)
        canvas.paste(band, (0, (height - height // 2) // 2))
        return canvas
    if image.size != (width, height):
        key = 'upscaled' if image.size[0] < width or image.size[1] < height else 'downscaled'
        notes[key] = notes.get(key, 0) + 1
        image = image.resize((width, height), resample)
    return image

#----------------------------------------------------------------------------

def convert_image(data: bytes, mode: str, size: tuple[int, int], transform: Optional[str], resample: int, rgba: str,
                  background: tuple[int, int, int], notes: dict) -> np.ndarray:
    """One image file's bytes -> uint8 [H, W] (mode 'L') or [H, W, 3] ('RGB') of `size`; SkipImage if it cannot be."""
    try:
        image = open_image(data)
        image.load()
    except DECODE_ERRORS as err:
        raise SkipImage(decode_error_reason(err)) from None
    image = to_8bit_l_or_rgb(image, rgba, background, notes)
    if image.mode != mode:
        key = 'gray converted to RGB' if mode == 'RGB' else 'RGB converted to gray'
        notes[key] = notes.get(key, 0) + 1
        image = image.convert(mode)
    return np.asarray(fit_geometry(image, size, transform, resample, background, notes))

#----------------------------------------------------------------------------

def convert_dataset(
    source:         str,                            # Folder, .zip, builtin:NAME or a benchmark name.
    dest:           str,                            # .zip, or a non-existent/empty folder.
    resolution:     Optional[tuple[int, int]] = None,  # Output (width, height); None = the sources' size.
    transform:      Optional[str] = None,           # None (resize only), 'center-crop', 'center-crop-wide', 'pad'.
    resize_filter:  str = 'lanczos',                # 'lanczos' or 'box'.
    max_images:     Optional[int] = None,           # Stop after this many images; None = all.
    rgba:           str = 'composite',              # Alpha: 'composite' onto `background`, or 'drop'.
    background:     str = 'white',                  # A PIL colour: name, '#rrggbb', 'rgb(r,g,b)'.
    labels:         str = 'auto',                   # 'auto', 'none' or 'subfolders'.
    channels:       str = 'auto',                   # 'auto' (1 if all sources are gray, else 3), '1' or '3'.
    progress:       bool = True,                    # Show a tqdm progress bar.
    echo:           Callable[[str], Any] = click.echo,
) -> dnnlib.EasyDict:
    """Convert `source` into a training dataset at `dest`; returns a summary (kept, skipped, notes, ...).

    Raises click.ClickException, naming the file and the fix, when it cannot.
    """
    if transform is not None and transform not in TRANSFORMS:
        raise click.BadParameter(f'{transform!r}; expected one of {", ".join(TRANSFORMS)}', param_hint='--transform')
    if transform is not None and resolution is None:
        raise click.UsageError(f'--transform={transform} needs --resolution=WxH (the output size).')
    try:
        bg = PIL.ImageColor.getrgb(background)[:3]
    except ValueError:
        raise click.BadParameter(f'{background!r} is not a colour; try white, black, #808080', param_hint='--background') from None
    if resize_filter not in RESIZE_FILTERS:
        raise click.BadParameter(f'{resize_filter!r}; expected one of {", ".join(RESIZE_FILTERS)}', param_hint='--resize-filter')
    resample = RESIZE_FILTERS[resize_filter]
    check_dest_free(dest)   # Before a download or a long scan.

    files, kind = open_source(source)
    entries, skipped = prescan(files)
    if not entries:
        raise click.ClickException(f'--source {source!r}: none of its {len(files.image_names)} image files can be read:\n'
                                   + format_problems(skipped))
    label_by_name, class_names, labels_desc = choose_labels(files, labels)
    size = _check_sizes(entries, resolution, transform)
    if not is_training_size(*size):
        echo(f'Note: {size[0]}x{size[1]} is not a square power-of-two size; training needs one (e.g. 256x256). '
             f'Converting anyway.')
    num_channels = int(channels) if channels != 'auto' else (1 if all(e.gray for e in entries) else 3)
    target_mode = 'L' if num_channels == 1 else 'RGB'

    notes: dict[str, int] = {}
    kept_labels = []
    with DatasetWriter(dest) as writer:
        for entry in tqdm(entries, desc='Converting', unit='img', disable=not progress):
            if max_images is not None and writer.count >= max_images:
                break
            try:
                data = files.read(entry.name)
            except (OSError, zipfile.BadZipFile) as err:   # Permissions, a bad CRC in a ZIP, ...
                skipped.append((entry.name, f'cannot be read ({err})'))
                continue
            try:
                image = convert_image(data, target_mode, size, transform, resample, rgba, bg, notes)
            except SkipImage as err:
                skipped.append((entry.name, str(err)))
                continue
            archive_name = writer.add_image(image)
            if label_by_name is not None:
                kept_labels.append([archive_name, label_by_name[entry.name]])
        if writer.count == 0:
            raise click.ClickException(f'--source {source!r}: no image could be converted:\n{format_problems(skipped)}')
        labels_json: dict[str, Any] = {'labels': kept_labels if label_by_name is not None else None}
        if class_names is not None:
            labels_json['class_names'] = class_names
        writer.commit(labels_json)

    summary = dnnlib.EasyDict(dest=writer.dest, kept=writer.count, skipped=skipped, notes=notes, size=size,
                              channels=num_channels, labels=labels_desc, class_names=class_names, source_kind=kind)
    _print_summary(summary, echo)
    return summary

#----------------------------------------------------------------------------

def _print_summary(summary: dnnlib.EasyDict, echo: Callable[[str], Any]) -> None:
    width, height = summary.size
    echo(f'Wrote {summary.kept} images ({width}x{height}, {summary.channels} channel(s), labels: {summary.labels}) '
         f'to {summary.dest}')
    for key, count in sorted(summary.notes.items()):
        echo(f'  {key}: {count}')
    if summary.skipped:
        echo(f'Skipped {len(summary.skipped)} file(s):')
        for name, reason in summary.skipped:
            echo(f'  {name}: {reason}')

#----------------------------------------------------------------------------

@click.command()
@click.option('--source', required=True, metavar='PATH|builtin:NAME|BENCHMARK',
              help='Folder or .zip of images, builtin:lfw-faces-100, or one of ' + ', '.join(BENCHMARK_SETS))
@click.option('--dest', required=True, metavar='PATH', help='Output .zip, or a new or empty folder')
@click.option('--resolution', metavar='WxH', help='Output size, e.g. 256x256 (training needs a square power of two)')
@click.option('--transform', type=click.Choice(TRANSFORMS), help='How to make non-square images square [default: resize only]')
@click.option('--resize-filter', type=click.Choice(sorted(RESIZE_FILTERS)), default='lanczos', show_default=True)
@click.option('--max-images', type=click.IntRange(min=1), help='Keep at most this many images')
@click.option('--rgba', type=click.Choice(['composite', 'drop']), default='composite', show_default=True,
              help='Alpha channel: composite onto --background, or drop it')
@click.option('--background', default='white', show_default=True, help='Colour for compositing and padding')
@click.option('--labels', type=click.Choice(['auto', 'none', 'subfolders']), default='auto', show_default=True,
              help="auto: the source's dataset.json, else sub-folder names when all images are in 2+ sub-folders")
@click.option('--channels', type=click.Choice(['auto', '1', '3']), default='auto', show_default=True,
              help='auto: 1 if every image is grayscale, else 3')
def main(source, dest, resolution, transform, resize_filter, max_images, rgba, background, labels, channels):
    """Convert images into a dataset for train.py (PNGs in 00000/img00000000.png + dataset.json).

    \b
    Examples:
      python dataset_tool.py --source=~/photos --dest=photos-256.zip --resolution=256x256 --transform=center-crop
      python dataset_tool.py --source=100-shot-obama --dest=obama.zip
      python dataset_tool.py --source=builtin:lfw-faces-100 --dest=lfw.zip
    """
    convert_dataset(source=os.path.expanduser(source), dest=dest, resolution=parse_resolution(resolution),
                    transform=transform, resize_filter=resize_filter, max_images=max_images, rgba=rgba,
                    background=background, labels=labels, channels=channels)

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
