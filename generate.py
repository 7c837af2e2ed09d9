"""Generate images from a trained StyleGAN2 network pickle (ours or official StyleGAN2-ADA).

Seeds map to latents exactly as NVIDIA's generate.py does, z = RandomState(seed).randn(1,
z_dim), so a seed gives the same image as the official tool for the same weights. Works on
CUDA, MPS and CPU (fp32 off CUDA). Files: seed0000.png, ... (or proj00.png, ... for
--projected-w), or one grid.png with --grid.

Examples:
    python generate.py --network=network-snapshot-000100.pkl --seeds=0-9 --outdir=out
    python generate.py --network=ffhq --seeds=0-15 --grid=4x4 --trunc=0.7 --outdir=out
    python generate.py --network=cond.pkl --seeds=0,5 --class=3 --device=cpu --outdir=out
"""
import os
import re
import tempfile
from typing import Iterator, Optional

import click
import numpy as np
import PIL.Image
import torch

#----------------------------------------------------------------------------

def parse_range(text: str) -> list:
    """'0,3,5-9' -> [0, 3, 5, 6, 7, 8, 9] (ascending ranges inclusive, non-negative ints).

    >>> parse_range('0,3,5-7')
    [0, 3, 5, 6, 7]
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError('expected a list like "0,3,5-9", got an empty value')
    values = []
    for part in text.split(','):
        part = part.strip()
        m = re.fullmatch(r'(\d+)(?:-(\d+))?', part)
        if m is None:
            raise ValueError(f'"{part}" in "{text}" is not a number or a range a-b of non-negative integers; '
                             f'write e.g. "0,3,5-9"')
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f'range "{part}" in "{text}" runs backwards; write it as {hi}-{lo}')
        values.extend(range(lo, hi + 1))
    return values

#----------------------------------------------------------------------------

def parse_grid(text: str) -> tuple:
    """'4x3' -> (rows=4, cols=3).

    >>> parse_grid('2x5')
    (2, 5)
    """
    m = re.fullmatch(r'\s*(\d+)\s*[xX]\s*(\d+)\s*', text or '')
    if m is None or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f'"{text}" is not a grid size ROWSxCOLS with positive numbers; write e.g. "4x4"')
    return int(m.group(1)), int(m.group(2))

#----------------------------------------------------------------------------

def resolve_device(name: str = 'auto') -> torch.device:
    """'auto' -> CUDA if present, else MPS if present, else CPU; 'cuda'/'mps'/'cpu' checked."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, 'mps', None) is not None and torch.backends.mps.is_available()
    if name == 'auto':
        return torch.device('cuda' if cuda else 'mps' if mps else 'cpu')
    if name == 'cuda' and not cuda:
        raise ValueError('--device cuda: this PyTorch sees no CUDA device; use --device cpu (or auto)')
    if name == 'mps' and not mps:
        raise ValueError('--device mps: Apple MPS is not available here; use --device cpu (or auto)')
    if name not in ('cuda', 'mps', 'cpu'):
        raise ValueError(f'--device must be auto, cuda, mps or cpu, got {name!r}')
    return torch.device(name)

#----------------------------------------------------------------------------

def load_generator(network: str, device: torch.device) -> torch.nn.Module:
    """G_ema (else G) of a snapshot pickle (path, URL or official short name), safely loaded,
    in eval mode on device."""
    from training.checkpoint import load_network_pkl # Here: the CLI's --help needs no torch model code.
    data = load_network_pkl(network)
    G = data.get('G_ema') if data.get('G_ema') is not None else data.get('G')
    if G is None:
        raise ValueError(f'--network {network}: the pickle holds no G_ema or G generator')
    return G.eval().requires_grad_(False).to(device)

#----------------------------------------------------------------------------

def make_labels(G: torch.nn.Module, class_idx: Optional[int], num: int, device: torch.device) -> torch.Tensor:
    """One-hot labels float32 [num, c_dim] for a conditional G; [num, 0] for an unconditional one."""
    if G.c_dim == 0:
        if class_idx is not None:
            raise ValueError(f'--class={class_idx} given but the network is unconditional (c_dim=0); leave --class out')
        return torch.zeros([num, 0], device=device)
    if class_idx is None:
        raise ValueError(f'the network is conditional (c_dim={G.c_dim}): pass --class with a class index in [0, {G.c_dim})')
    if not 0 <= class_idx < G.c_dim:
        raise ValueError(f'--class={class_idx} is out of range: this network has classes 0..{G.c_dim - 1}')
    c = torch.zeros([num, G.c_dim], device=device)
    c[:, class_idx] = 1
    return c

#----------------------------------------------------------------------------

def seed_to_z(seed: int, z_dim: int) -> np.ndarray:
    """The official latent of a seed: float64 [1, z_dim] = RandomState(seed).randn(1, z_dim)."""
    if not 0 <= seed < 2 ** 32:
        raise ValueError(f'seed {seed} is out of range: numpy seeds are integers in [0, 2**32)')
    return np.random.RandomState(seed).randn(1, z_dim)

#----------------------------------------------------------------------------

def to_uint8_hwc(img: torch.Tensor) -> np.ndarray:
    """float32 [N, C, H, W] in [-1, 1] -> uint8 [N, H, W, C] as (img * 127.5 + 128).clamp(0, 255)."""
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

#----------------------------------------------------------------------------

def generate_images(G: torch.nn.Module, seeds: list, truncation_psi: float = 1, truncation_cutoff: Optional[int] = None,
                    noise_mode: str = 'const', class_idx: Optional[int] = None, batch_size: int = 8) -> Iterator[tuple]:
    """Yield (seed, uint8 [H, W, C]) for each seed, generated batch_size at a time on G's device.

    >>> import torch; from training.networks import Generator
    >>> G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
    ...               synthesis_kwargs=dict(channel_base=64, channel_max=8))
    >>> [(seed, img.shape) for seed, img in generate_images(G, [0, 1])]
    [(0, (8, 8, 3)), (1, (8, 8, 3))]
    """
    if noise_mode not in ('const', 'random', 'none'):
        raise ValueError(f'noise_mode must be const, random or none, got {noise_mode!r}')
    if batch_size < 1:
        raise ValueError(f'--batch must be at least 1, got {batch_size}')
    device = next(G.parameters()).device
    force_fp32 = device.type != 'cuda' # fp16 is for CUDA only.
    for start in range(0, len(seeds), batch_size):
        chunk = seeds[start:start + batch_size]
        z = torch.from_numpy(np.concatenate([seed_to_z(s, G.z_dim) for s in chunk])).to(torch.float32).to(device)
        c = make_labels(G, class_idx, len(chunk), device)
        torch.manual_seed(chunk[0]) # noise_mode='random' then repeats for the same seeds and batch.
        with torch.no_grad():
            img = G(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                    noise_mode=noise_mode, force_fp32=force_fp32)
        yield from zip(chunk, to_uint8_hwc(img))

#----------------------------------------------------------------------------

def load_projected_w(path: str, G: torch.nn.Module) -> np.ndarray:
    """The `w` array of a projector .npz, checked to be float [N, num_ws, w_dim]."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if 'w' not in data:
                raise ValueError(f'--projected-w {path}: no array named "w" (found {", ".join(data.files) or "none"})')
            ws = data['w']
    except (OSError, ValueError) as err:
        if isinstance(err, ValueError) and str(err).startswith('--projected-w'):
            raise
        raise ValueError(f'--projected-w {path}: cannot read it as an .npz file ({err})') from err
    if ws.ndim != 3 or ws.shape[1:] != (G.num_ws, G.w_dim):
        raise ValueError(f'--projected-w {path}: "w" has shape {ws.shape}, this network needs '
                         f'[N, num_ws={G.num_ws}, w_dim={G.w_dim}]')
    return ws

#----------------------------------------------------------------------------

def generate_from_ws(G: torch.nn.Module, ws: np.ndarray, noise_mode: str = 'const', batch_size: int = 8) -> Iterator[tuple]:
    """Yield (index, uint8 [H, W, C]) for each w [num_ws, w_dim] of ws [N, num_ws, w_dim]."""
    device = next(G.parameters()).device
    for start in range(0, ws.shape[0], batch_size):
        w = torch.from_numpy(ws[start:start + batch_size]).to(torch.float32).to(device)
        with torch.no_grad():
            img = G.synthesis(w, noise_mode=noise_mode, force_fp32=device.type != 'cuda')
        yield from zip(range(start, start + w.shape[0]), to_uint8_hwc(img))

#----------------------------------------------------------------------------

def make_grid(images: list, rows: int, cols: int) -> np.ndarray:
    """Tile uint8 [H, W, C] images row by row into [rows * H, cols * W, C]; empty cells black."""
    if len(images) > rows * cols:
        raise ValueError(f'--grid {rows}x{cols} holds {rows * cols} images but {len(images)} were asked for; '
                         f'use a bigger grid or fewer seeds')
    h, w, c = images[0].shape
    grid = np.zeros([rows, cols, h, w, c], dtype=np.uint8)
    for i, img in enumerate(images):
        grid[i // cols, i % cols] = img
    return grid.transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)

#----------------------------------------------------------------------------

def save_image(img: np.ndarray, path: str) -> None:
    """Write uint8 [H, W, C] (C = 1 -> 'L', 3 -> 'RGB') as PNG, atomically."""
    pil = PIL.Image.fromarray(img[:, :, 0], 'L') if img.shape[2] == 1 else PIL.Image.fromarray(img, 'RGB')
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp-', suffix='.png')
    try:
        with os.fdopen(fd, 'wb') as f:
            pil.save(f, format='PNG')
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise

#----------------------------------------------------------------------------

def run_generation(network: str, outdir: str, seeds: Optional[list] = None, truncation_psi: float = 1,
                   truncation_cutoff: Optional[int] = None, class_idx: Optional[int] = None,
                   noise_mode: str = 'const', projected_w: Optional[str] = None, device: str = 'auto',
                   batch_size: int = 8, grid: Optional[tuple] = None) -> list:
    """Generate and save images; returns the written paths.

    Example (a snapshot written by train.py):
        >>> run_generation('network-snapshot-000100.pkl', 'out', seeds=[0, 1, 2])  # doctest: +SKIP
        ['out/seed0000.png', 'out/seed0001.png', 'out/seed0002.png']
    """
    if (seeds is None) == (projected_w is None):
        raise ValueError('give exactly one of --seeds and --projected-w')
    G = load_generator(network, resolve_device(device))
    if projected_w is not None:
        if class_idx is not None:
            raise ValueError('--class has no effect with --projected-w (the labels are in w); leave it out')
        items = list(generate_from_ws(G, load_projected_w(projected_w, G), noise_mode, batch_size))
        names = [f'proj{i:02d}.png' for i, _ in items]
    else:
        if grid is not None and len(seeds) > grid[0] * grid[1]:
            raise ValueError(f'--grid {grid[0]}x{grid[1]} holds {grid[0] * grid[1]} images but --seeds gives '
                             f'{len(seeds)}; use a bigger grid or fewer seeds')
        make_labels(G, class_idx, 1, torch.device('cpu')) # Check --class before generating.
        items = list(generate_images(G, seeds, truncation_psi, truncation_cutoff, noise_mode, class_idx, batch_size))
        names = [f'seed{seed:04d}.png' for seed, _ in items]

    os.makedirs(outdir, exist_ok=True)
    if grid is not None:
        path = os.path.join(outdir, 'grid.png')
        save_image(make_grid([img for _, img in items], *grid), path)
        return [path]
    paths = []
    for name, (_, img) in zip(names, items):
        paths.append(os.path.join(outdir, name))
        save_image(img, paths[-1])
    return paths

#----------------------------------------------------------------------------

def _parse_option(parser, value, option: str):
    if value is None:
        return None
    try:
        return parser(value)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint=option) from None

@click.command()
@click.option('--network', 'network', help='Network pickle: path, URL or official short name', required=True)
@click.option('--seeds', help='Seeds, e.g. "0,3,5-9"', metavar='LIST')
@click.option('--trunc', 'truncation_psi', type=float, default=1, show_default=True, help='Truncation psi')
@click.option('--trunc-cutoff', 'truncation_cutoff', type=click.IntRange(min=0), help='Truncate only the first N ws')
@click.option('--class', 'class_idx', type=click.IntRange(min=0), help='Class index (conditional networks only)')
@click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True)
@click.option('--projected-w', type=click.Path(exists=True, dir_okay=False), help='Projector .npz with w [N, num_ws, w_dim]')
@click.option('--outdir', type=click.Path(file_okay=False), required=True, help='Where to save the images')
@click.option('--device', type=click.Choice(['auto', 'cuda', 'cpu', 'mps']), default='auto', show_default=True)
@click.option('--batch', 'batch_size', type=click.IntRange(min=1), default=8, show_default=True, help='Images per forward pass')
@click.option('--grid', help='Save one ROWSxCOLS grid.png instead of one file per seed', metavar='ROWSxCOLS')
def main(network, seeds, truncation_psi, truncation_cutoff, class_idx, noise_mode, projected_w, outdir, device,
         batch_size, grid):
    """Generate images with a trained network pickle.

    \b
    python generate.py --network=snapshot.pkl --seeds=0-9 --outdir=out
    python generate.py --network=snapshot.pkl --seeds=0-15 --grid=4x4 --outdir=out
    """
    seeds = _parse_option(parse_range, seeds, '--seeds')
    grid = _parse_option(parse_grid, grid, '--grid')
    if seeds is None and projected_w is None:
        raise click.UsageError('give --seeds (e.g. --seeds=0-9) or --projected-w')
    try:
        paths = run_generation(network, outdir, seeds, truncation_psi, truncation_cutoff, class_idx, noise_mode,
                               projected_w, device, batch_size, grid)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f'Wrote {len(paths)} image{"s" if len(paths) != 1 else ""} to {outdir}')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main() # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
