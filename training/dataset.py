"""Training images: a folder or ZIP of images with optional `dataset.json` labels.

Implements the StyleGAN2-ADA dataset format (DESIGN §3): images anywhere under a folder
or inside a ZIP, all of one square power-of-two size with 1 or 3 channels, and an
optional `dataset.json` = `{"labels": [["rel/path.png", 3], ...]}` (an int is a class
index, turned into a one-hot vector over max+1 classes; a list is a float vector) or
`{"labels": null}`. Items are `(image, label)`: uint8 numpy [C, H, W] and float32 [label_dim].

Everything is checked when the dataset is built, before training starts (DESIGN §10,
complaints 10 and 11): every image is fully decoded once, and all problems come back as
ONE `DatasetError` that lists the first offending files and the `dataset_tool.py` command
that fixes them. `dataset_tool.py` shares this module's file listing, image opening and
label parsing, so what it writes is exactly what this module accepts.
"""

import collections
import concurrent.futures
import io
import json
import os
import shlex
import threading
import unicodedata
import zipfile
from typing import Any, BinaryIO, Optional

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch

import dnnlib

#----------------------------------------------------------------------------

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.webp', '.bmp', '.gif', '.tif', '.tiff', '.ppm', '.pgm')
LABELS_FILE      = 'dataset.json'
BUILTIN_PREFIX   = 'builtin:'
MAX_LISTED       = 10     # Offending files named in one error; the rest are counted.

#----------------------------------------------------------------------------

class DatasetError(ValueError):
    """A dataset that cannot be used as it is; the message lists the files and the fix."""

#----------------------------------------------------------------------------

def normalize_name(name: str) -> str:
    """A file's name relative to the dataset root, as dataset.json spells it.

    Forward slashes on every OS and NFC Unicode, so that names typed on one system match
    files listed on another (macOS file systems hand out NFD).
    """
    name = name.replace('\\', '/')
    while name.startswith('./'):
        name = name[2:]
    return unicodedata.normalize('NFC', name)

#----------------------------------------------------------------------------

def is_image_name(name: str) -> bool:
    """True for image files; False for other files, hidden files and macOS `__MACOSX` debris.

    macOS zips carry `__MACOSX/._photo.jpg` resource forks: image names, but not images.
    """
    parts = normalize_name(name).split('/')
    if any(part.startswith('.') or part == '__MACOSX' for part in parts):
        return False
    return os.path.splitext(parts[-1])[1].lower() in IMAGE_EXTENSIONS

#----------------------------------------------------------------------------

class DatasetFiles:
    """Read-only access to the files of a dataset folder or ZIP, by normalised name.

    The ZIP handle is opened lazily and again in each new process (DataLoader workers,
    forked or spawned), and never pickled: processes must not share one file offset.
    """

    def __init__(self, path: str):
        self.path = str(path)
        if not os.path.exists(self.path):
            raise DatasetError(f'Dataset path {self.path!r} does not exist: expected a folder of images or a .zip '
                               f'(to make one: python dataset_tool.py --source=IMAGES --dest=dataset.zip)')
        self.is_zip = os.path.isfile(self.path)
        self._zip: Optional[zipfile.ZipFile] = None
        self._zip_pid: Optional[int] = None
        self._lock = threading.Lock()
        if self.is_zip:
            if not zipfile.is_zipfile(self.path):
                raise DatasetError(f'Dataset path {self.path!r} is a file but not a ZIP archive: expected a folder '
                                   f'of images or a .zip written by dataset_tool.py')
            infos = [info for info in self._get_zip().infolist() if not info.is_dir()]
            self._native = {normalize_name(info.filename): info.filename for info in infos}
        else:
            self._native = {}
            seen = set()
            for root, dirs, files in os.walk(self.path, followlinks=True):
                # Follow symlinked folders, but each real folder once (a link cycle would never end).
                real = os.path.realpath(root)
                if real in seen:
                    dirs[:] = []
                    continue
                seen.add(real)
                dirs.sort()
                for fname in files:
                    full = os.path.join(root, fname)
                    self._native[normalize_name(os.path.relpath(full, self.path))] = full
        self.names = sorted(self._native)
        self.image_names = [name for name in self.names if is_image_name(name)]

    def _get_zip(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip = zipfile.ZipFile(self.path)
            self._zip_pid = os.getpid()
        return self._zip

    def has(self, name: str) -> bool:
        return normalize_name(name) in self._native

    def open(self, name: str) -> BinaryIO:
        """A binary file object for one file (for reading headers without the whole file)."""
        native = self._native[normalize_name(name)]
        if self.is_zip:
            return self._get_zip().open(native, 'r')
        return open(native, 'rb')

    def read(self, name: str) -> bytes:
        """The whole content of one file. Thread-safe (the ZIP directory is shared)."""
        native = self._native[normalize_name(name)]
        if self.is_zip:
            with self._lock:
                return self._get_zip().read(native)
        with open(native, 'rb') as f:
            return f.read()

    def close(self) -> None:
        if self._zip is not None and self._zip_pid == os.getpid():
            self._zip.close()
        self._zip = None

    def __getstate__(self) -> dict:
        return dict(self.__dict__, _zip=None, _zip_pid=None, _lock=None)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

#----------------------------------------------------------------------------

def open_image(f: Any) -> PIL.Image.Image:
    """Open an image file (path, file object or bytes) as it should be seen: first frame, EXIF-upright.

    Decodes lazily like PIL.Image.open; call `.load()` to decode and catch truncation.
    """
    if isinstance(f, bytes):
        f = io.BytesIO(f)
    image = PIL.Image.open(f)
    image.seek(0)                               # GIF/TIFF: the first frame.
    return PIL.ImageOps.exif_transpose(image)   # Phone photos: stored sideways + an EXIF flag.

#----------------------------------------------------------------------------

def image_to_array(image: PIL.Image.Image) -> np.ndarray:
    """A decoded 8-bit PIL image as uint8 [C, H, W] with C = 1 or 3.

    Lossless conversions only (palette without transparency -> RGB, 1-bit -> L); anything
    else raises DatasetError with the reason, for dataset_tool.py to convert.
    """
    mode = image.mode
    if mode == 'P' and 'transparency' not in image.info:
        image = image.convert('RGB')
    elif mode == '1':
        image = image.convert('L')
    elif mode in ('RGBA', 'LA', 'PA', 'P', 'RGBa', 'La'):
        raise DatasetError(f'has an alpha channel (mode {mode}); training needs 1 or 3 channels '
                           f'(dataset_tool.py composites it onto a background, see --rgba)')
    elif mode.startswith('I') or mode == 'F':
        raise DatasetError(f'is not 8-bit (mode {mode}: 16/32-bit); training needs 8-bit '
                           f'(dataset_tool.py converts it)')
    elif mode not in ('L', 'RGB'):
        raise DatasetError(f'has colour mode {mode}; training needs L (grayscale) or RGB '
                           f'(dataset_tool.py converts it)')
    array = np.array(image, dtype=np.uint8)  # A writable copy: torch warns on read-only arrays.
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    return np.ascontiguousarray(array.transpose(2, 0, 1))

#----------------------------------------------------------------------------

# What PIL raises for a file it cannot decode (UnidentifiedImageError is one of the OSErrors).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


def decode_error_reason(err: BaseException) -> str:
    """Why an image file could not be decoded, worded for error lists and skip summaries."""
    if isinstance(err, PIL.UnidentifiedImageError):
        return 'not an image PIL can read (wrong extension, or not an image at all)'
    return f'truncated or corrupt ({err})'


def decode_image(data: bytes) -> np.ndarray:
    """Fully decode one image file's bytes to uint8 [C, H, W]; DatasetError with the reason if impossible."""
    try:
        image = open_image(data)
        image.load()
    except DECODE_ERRORS as err:
        raise DatasetError(f'is {decode_error_reason(err)}') from None
    return image_to_array(image)

#----------------------------------------------------------------------------

def _check_label_value(value: Any) -> Optional[str]:
    """None if `value` is a valid label (int >= 0, or a list of finite numbers), else the reason."""
    if isinstance(value, bool):
        return f'label {value!r} is a boolean; expected a class index (int >= 0) or a list of numbers'
    if isinstance(value, int):
        return None if value >= 0 else f'class index {value} is negative'
    if isinstance(value, list):
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) for x in value):
            return f'label vector {value!r} must hold finite numbers only'
        return None
    return f'label {value!r} is a {type(value).__name__}; expected a class index (int >= 0) or a list of numbers'

#----------------------------------------------------------------------------

def parse_labels(labels: Any, image_names: list[str]) -> tuple[Optional[np.ndarray], list[tuple[str, str]]]:
    """Match the `labels` entry of a dataset.json with the image files.

    Returns (raw_labels, problems): raw_labels is int64 [N] (class indices) or float32
    [N, D] (vectors) in the order of `image_names`, or None for an unlabelled dataset
    (`labels` is None) or when problems were found; problems is a list of (name, reason).
    """
    if labels is None:
        return None, []
    if isinstance(labels, dict):
        labels = list(labels.items())
    if not isinstance(labels, list):
        return None, [(LABELS_FILE, f'"labels" is a {type(labels).__name__}; expected a list of [path, label] pairs or null')]
    problems: list[tuple[str, str]] = []
    by_name: dict[str, Any] = {}
    for entry in labels:
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str)):
            problems.append((LABELS_FILE, f'entry {entry!r} is not a ["rel/path.png", label] pair'))
            continue
        name, value = normalize_name(entry[0]), entry[1]
        reason = _check_label_value(value)
        if reason is not None:
            problems.append((name, f'{LABELS_FILE}: {reason}'))
        elif name in by_name and by_name[name] != value:
            problems.append((name, f'{LABELS_FILE}: listed twice with different labels {by_name[name]!r} and {value!r}'))
        by_name[name] = value
    known = set(image_names)
    problems += [(name, f'{LABELS_FILE} has no label for this image') for name in image_names if name not in by_name]
    problems += [(name, f'{LABELS_FILE} labels a file that is not among the images') for name in by_name if name not in known]
    if problems:
        return None, problems
    values = [by_name[name] for name in image_names]
    kinds = {type(v) for v in values}
    if len(kinds) > 1:
        return None, [(LABELS_FILE, 'mixes class indices (ints) and label vectors (lists); use one kind')]
    if kinds == {int}:
        return np.array(values, dtype=np.int64), []
    lengths = {len(v) for v in values}
    if len(lengths) > 1:
        return None, [(LABELS_FILE, f'label vectors have different lengths {sorted(lengths)}; they must all be equal')]
    return np.array(values, dtype=np.float32).reshape(len(values), -1), []

#----------------------------------------------------------------------------

def read_labels_json(files: DatasetFiles) -> tuple[Any, list[tuple[str, str]]]:
    """The "labels" value of the dataset's dataset.json (None when absent) and any problem reading it."""
    if not files.has(LABELS_FILE):
        return None, []
    try:
        obj = json.loads(files.read(LABELS_FILE).decode('utf-8'))
    except (ValueError, UnicodeDecodeError) as err:
        return None, [(LABELS_FILE, f'is not valid JSON ({err})')]
    if not isinstance(obj, dict) or 'labels' not in obj:
        return None, [(LABELS_FILE, 'has no "labels" key; expected {"labels": [["rel/path.png", 3], ...]} or {"labels": null}')]
    return obj['labels'], []

#----------------------------------------------------------------------------

def format_problems(problems: list[tuple[str, str]], limit: int = MAX_LISTED) -> str:
    """The first `limit` problems, one per line, and how many more there are."""
    lines = [f'  {name}: {reason}' for name, reason in problems[:limit]]
    if len(problems) > limit:
        lines.append(f'  ... and {len(problems) - limit} more')
    return '\n'.join(lines)

#----------------------------------------------------------------------------

def resolve_dataset_path(path: str) -> str:
    """A dataset path as given (folder, .zip), or a `builtin:NAME` made once into the cache."""
    path = str(path)
    if path.startswith(BUILTIN_PREFIX):
        import click
        import dataset_tool  # The tool owns the built-in sets; imported late, it imports this module.
        try:
            return dataset_tool.builtin_dataset_path(path[len(BUILTIN_PREFIX):])
        except click.ClickException as err:
            raise DatasetError(err.message) from None
    return path

#----------------------------------------------------------------------------

def _is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0

#----------------------------------------------------------------------------

def _most_common(values: list) -> Any:
    return collections.Counter(values).most_common(1)[0][0]

#----------------------------------------------------------------------------

def _fix_command(path: str, resolution: int, crop: bool, rgb: bool) -> str:
    """The dataset_tool.py command line that turns `path` into a valid dataset."""
    base = path.rstrip('/\\')
    stem = base[:-4] if base.lower().endswith('.zip') else base
    args = ['python', 'dataset_tool.py', f'--source={base}', f'--dest={stem}-{resolution}x{resolution}.zip',
            f'--resolution={resolution}x{resolution}']
    if crop:
        args.append('--transform=center-crop')
    if rgb:
        args.append('--channels=3')
    return ' '.join(shlex.quote(arg) for arg in args)

#----------------------------------------------------------------------------

class ImageFolderDataset(torch.utils.data.Dataset):
    """Images (and labels) from a folder or ZIP, checked up front; items (uint8 [C, H, W], float32 [label_dim]).

    The index order: files sorted by name; `holdout` images (a random subset fixed by
    `random_seed`) are set aside first, `split` picks the rest ('train') or those
    ('holdout'); then `max_size` keeps a random subset (fixed by `random_seed`, official
    order when holdout=0); `xflip` appends a mirrored copy of each image.
    """

    def __init__(self,
        path:           str,                # Folder, .zip, or 'builtin:NAME'.
        resolution:     Optional[int] = None,  # Expected H = W, checked; None = whatever the images have.
        use_labels:     bool = False,       # Read dataset.json labels? False = label_dim 0.
        max_size:       Optional[int] = None,  # Keep at most this many images (before xflip); None = all.
        xflip:          bool = False,       # Append horizontally mirrored copies (doubles the length).
        random_seed:    int = 0,            # Fixes the holdout and max_size subsets.
        holdout:        int = 0,            # Images kept out of the 'train' split (CHAIN's generalisation gap).
        split:          str = 'train',      # 'train' = all but the holdout; 'holdout' = only those.
    ):
        self._path = str(path)
        self._files = DatasetFiles(resolve_dataset_path(self._path))
        base = os.path.basename(self._files.path.rstrip('/\\'))
        self._name = os.path.splitext(base)[0] if self._files.is_zip else base
        self._use_labels = bool(use_labels)
        self._image_names = self._files.image_names
        self._raw_shape, self._raw_labels = self._check(resolution)
        self._raw_idx = self._select(len(self._image_names), holdout, split, max_size, random_seed)
        self._xflip = np.zeros(self._raw_idx.size, dtype=np.uint8)
        if xflip:
            self._raw_idx = np.tile(self._raw_idx, 2)
            self._xflip = np.concatenate([self._xflip, np.ones_like(self._xflip)])

    #--- Construction-time checks ---

    def _check(self, resolution: Optional[int]) -> tuple[list[int], np.ndarray]:
        """Decode every image and read the labels; ONE DatasetError listing every problem, or (raw_shape, raw_labels)."""
        names = self._image_names
        if not names:
            others = [n for n in self._files.names if n != LABELS_FILE][:5]
            extra = f'; other files there (not used): {", ".join(others)}' if others else ''
            raise DatasetError(f'Dataset {self._files.path!r} contains no images '
                               f'(looked for {", ".join(IMAGE_EXTENSIONS)}, recursively){extra}')
        shapes, problems = self._decode_all(names)
        problems += self._check_shapes(shapes, resolution)
        labels_value, label_problems = read_labels_json(self._files) if self._use_labels else (None, [])
        raw_labels, more = parse_labels(labels_value, names) if not label_problems else (None, [])
        label_problems += more
        if problems or label_problems:
            raise DatasetError(self._error_message(problems, label_problems, shapes, resolution))
        if raw_labels is None:
            raw_labels = np.zeros([len(names), 0], dtype=np.float32)
        c, h, w = _most_common([s for s in shapes.values()])
        return [len(names), c, h, w], raw_labels

    def _decode_all(self, names: list[str]) -> tuple[dict[str, tuple[int, int, int]], list[tuple[str, str]]]:
        """Fully decode every image (threads: PIL's decoders release the GIL); shapes and problems by name."""
        def decode(name: str) -> tuple[int, int, int]:
            return decode_image(self._files.read(name)).shape
        shapes, problems = {}, []
        workers = max(1, min(8, os.cpu_count() or 1))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(decode, name) for name in names]
            for name, future in zip(names, futures):
                try:
                    shapes[name] = future.result()
                except DatasetError as err:
                    problems.append((name, str(err)))
                except (OSError, zipfile.BadZipFile) as err:
                    problems.append((name, f'cannot be read ({err})'))
        return shapes, problems

    @staticmethod
    def _check_shapes(shapes: dict[str, tuple[int, int, int]], resolution: Optional[int]) -> list[tuple[str, str]]:
        """Problems with sizes and channel counts: one shared square power-of-two size, one channel count."""
        if not shapes:
            return []
        problems = []
        common_c = _most_common([c for c, _, _ in shapes.values()])
        common_hw = _most_common([(h, w) for _, h, w in shapes.values()])
        for name, (c, h, w) in shapes.items():
            if resolution is not None and (h, w) != (resolution, resolution):
                problems.append((name, f'is {w}x{h}, but resolution={resolution} asks for {resolution}x{resolution}'))
            elif h != w:
                problems.append((name, f'is {w}x{h}: not square'))
            elif not _is_power_of_two(h):
                problems.append((name, f'is {w}x{h}: {h} is not a power of two'))
            elif (h, w) != common_hw:
                problems.append((name, f'is {w}x{h}, but most images are {common_hw[1]}x{common_hw[0]}: sizes must match'))
            if c != common_c:
                problems.append((name, f'has {c} channel(s), but most images have {common_c}: channel counts must match'))
        return problems

    def _error_message(self, problems: list[tuple[str, str]], label_problems: list[tuple[str, str]],
                       shapes: dict[str, tuple[int, int, int]], resolution: Optional[int]) -> str:
        path = self._files.path
        total = len(problems) + len(label_problems)
        lines = [f'Dataset {path!r} cannot be used for training: {total} problem(s) in {len(self._image_names)} images.']
        if problems:
            lines.append(format_problems(problems))
            sizes = [(h, w) for _, h, w in shapes.values()] or [(256, 256)]
            target = resolution or 2 ** int(np.floor(np.log2(max(4, min(_most_common(sizes))))))
            crop = any(h != w for h, w in sizes)
            rgb = len({c for c, _, _ in shapes.values()}) > 1
            lines.append('Fix: convert it (unreadable files are skipped and listed; alpha is composited onto white):')
            lines.append('  ' + _fix_command(self._path if not self._path.startswith(BUILTIN_PREFIX) else path,
                                             target, crop, rgb))
        if label_problems:
            lines.append(f'Label problems ({LABELS_FILE}):')
            lines.append(format_problems(label_problems))
            lines.append(f'Fix: give every image exactly one label in {LABELS_FILE} ({{"labels": [["rel/path.png", 3], ...]}}), '
                         f'or delete {LABELS_FILE} to train unconditionally (or open the dataset with use_labels=False), or put '
                         f'the images in one sub-folder per class and run python dataset_tool.py '
                         f'--source={shlex.quote(path)} --dest=labelled.zip --labels=subfolders')
        return '\n'.join(lines)

    @staticmethod
    def _select(num_raw: int, holdout: int, split: str, max_size: Optional[int], random_seed: int) -> np.ndarray:
        """Raw indices of the chosen split and subset, sorted."""
        if split not in ('train', 'holdout'):
            raise DatasetError(f"split={split!r}: expected 'train' or 'holdout'")
        if not 0 <= int(holdout) < num_raw:
            raise DatasetError(f'holdout={holdout}: expected 0 <= holdout < the number of images ({num_raw}), '
                               f'so that some images are left to train on')
        if split == 'holdout' and holdout == 0:
            raise DatasetError("split='holdout' needs holdout > 0 (the number of images to keep out of training)")
        idx = np.arange(num_raw, dtype=np.int64)
        if holdout > 0:
            # Its own random stream, so the holdout set does not depend on max_size.
            perm = np.random.RandomState([random_seed, 0x401d]).permutation(num_raw)
            idx = np.sort(perm[:holdout] if split == 'holdout' else perm[holdout:])
        if max_size is not None and max_size < 0:
            raise DatasetError(f'max_size={max_size}: expected None or a count >= 0')
        if max_size is not None and max_size < idx.size:
            idx = idx.copy()
            np.random.RandomState(random_seed).shuffle(idx)   # The official subset when holdout=0.
            idx = np.sort(idx[:max_size])
        return idx

    #--- Items ---

    def __len__(self) -> int:
        return int(self._raw_idx.size)

    def _load_raw_image(self, raw_idx: int) -> np.ndarray:
        return decode_image(self._files.read(self._image_names[raw_idx]))

    def __getitem__(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 [C, H, W], float32 [label_dim]) for item `idx`."""
        image = self._load_raw_image(int(self._raw_idx[idx]))
        if self._xflip[idx]:
            image = image[:, :, ::-1]
        return np.ascontiguousarray(image), self.get_label(idx)

    def get_label(self, idx: int) -> np.ndarray:
        """float32 [label_dim]: the one-hot class or the label vector of item `idx` ([0] when unlabelled)."""
        label = self._raw_labels[self._raw_idx[idx]]
        if self._raw_labels.dtype == np.int64:
            onehot = np.zeros(self.label_shape, dtype=np.float32)
            onehot[label] = 1
            return onehot
        return label.astype(np.float32).copy()

    def get_details(self, idx: int) -> dnnlib.EasyDict:
        """raw_idx (file index in name order), xflip (bool) and raw_label (int64 class or float32 vector)."""
        raw_idx = int(self._raw_idx[idx])
        return dnnlib.EasyDict(raw_idx=raw_idx, xflip=bool(self._xflip[idx]),
                               raw_label=self._raw_labels[raw_idx].copy())

    def get_filename(self, idx: int) -> str:
        """The file behind item `idx`, relative to the dataset root."""
        return self._image_names[int(self._raw_idx[idx])]

    def close(self) -> None:
        self._files.close()

    #--- Properties (official names) ---

    @property
    def name(self) -> str:
        return self._name

    @property
    def image_shape(self) -> list[int]:
        return list(self._raw_shape[1:])

    @property
    def num_channels(self) -> int:
        return self.image_shape[0]

    @property
    def resolution(self) -> int:
        return self.image_shape[1]

    @property
    def label_shape(self) -> list[int]:
        if self._raw_labels.dtype == np.int64:
            return [int(self._raw_labels.max()) + 1]
        return list(self._raw_labels.shape[1:])

    @property
    def label_dim(self) -> int:
        return int(np.prod(self.label_shape))

    @property
    def has_labels(self) -> bool:
        return any(x != 0 for x in self.label_shape)

    @property
    def has_onehot_labels(self) -> bool:
        return self._raw_labels.dtype == np.int64

#----------------------------------------------------------------------------
