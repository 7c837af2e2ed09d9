"""generate.py: files for seed ranges, classes, grids and projected ws; the official
seed -> latent recipe; clear errors for bad options."""
import doctest

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import generate
from training.checkpoint import save_snapshot
from training.networks import Generator

#----------------------------------------------------------------------------

def tiny_generator(c_dim: int = 0, img_channels: int = 3) -> Generator:
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=16, img_channels=img_channels,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=128, channel_max=16))
    with torch.no_grad(): # A non-zero w_avg, so that truncation shows.
        G.mapping.w_avg.normal_()
    return G.eval() # Eval: the mapping must not update w_avg.

def write_snapshot(tmp_path, G, name='net.pkl') -> str:
    path = str(tmp_path / name)
    save_snapshot(path, dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=None))
    return path

@pytest.fixture
def uncond_pkl(tmp_path):
    return write_snapshot(tmp_path, tiny_generator(), 'uncond.pkl')

@pytest.fixture
def cond_pkl(tmp_path):
    return write_snapshot(tmp_path, tiny_generator(c_dim=3), 'cond.pkl')

def run_cli(*args):
    return CliRunner().invoke(generate.main, [str(a) for a in args], catch_exceptions=False)

def official_image(G, seed, c=None, psi=1.0):
    """The official tool's recipe, one seed at a time: uint8 [H, W, C]."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(torch.float32)
    c = torch.zeros([1, G.c_dim]) if c is None else c
    with torch.no_grad():
        img = G(z, c, truncation_psi=psi, noise_mode='const', force_fp32=True)
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()

def read_png(path):
    return np.asarray(PIL.Image.open(path))

#----------------------------------------------------------------------------

def test_parse_range_expands_lists_and_ranges():
    assert generate.parse_range('0,3,5-9') == [0, 3, 5, 6, 7, 8, 9]
    assert generate.parse_range('7') == [7]
    assert generate.parse_range(' 2 - 2 '.replace(' ', '')) == [2]

@pytest.mark.parametrize('text, match', [('5-3', 'backwards'), ('a', 'not a number'), ('1,,2', 'not a number'),
                                         ('', 'empty'), ('-1', 'not a number'), ('1-2-3', 'not a number')])
def test_parse_range_rejects_bad_input_with_reason(text, match):
    with pytest.raises(ValueError, match=match):
        generate.parse_range(text)

def test_parse_grid():
    assert generate.parse_grid('2x3') == (2, 3)
    for bad in ['2', '0x3', 'axb', '2x']:
        with pytest.raises(ValueError, match='ROWSxCOLS'):
            generate.parse_grid(bad)

#----------------------------------------------------------------------------

def test_seed_ranges_write_official_images(tmp_path, uncond_pkl):
    out = tmp_path / 'out'
    res = run_cli('--network', uncond_pkl, '--seeds', '0,3,5-6', '--outdir', out, '--device', 'cpu', '--batch', '3')
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ['seed0000.png', 'seed0003.png', 'seed0005.png', 'seed0006.png']
    G = tiny_generator()
    for seed in [0, 3, 5, 6]:
        img = read_png(out / f'seed{seed:04d}.png')
        assert img.shape == (16, 16, 3)
        np.testing.assert_array_equal(img, official_image(G, seed))

def test_same_seed_gives_same_file_twice(tmp_path, uncond_pkl):
    for d in ['a', 'b']:
        assert run_cli('--network', uncond_pkl, '--seeds', '4', '--outdir', tmp_path / d, '--noise-mode', 'random').exit_code == 0
    assert (tmp_path / 'a' / 'seed0004.png').read_bytes() == (tmp_path / 'b' / 'seed0004.png').read_bytes()

def test_truncation_moves_towards_average(tmp_path, uncond_pkl):
    run_cli('--network', uncond_pkl, '--seeds', '1', '--trunc', '0.5', '--outdir', tmp_path)
    G = tiny_generator()
    np.testing.assert_array_equal(read_png(tmp_path / 'seed0001.png'), official_image(G, 1, psi=0.5))

#----------------------------------------------------------------------------

def test_conditional_network_needs_a_class_and_uses_it(tmp_path, cond_pkl):
    res = run_cli('--network', cond_pkl, '--seeds', '0', '--outdir', tmp_path)
    assert res.exit_code != 0 and 'conditional (c_dim=3)' in res.output and '--class' in res.output
    res = run_cli('--network', cond_pkl, '--seeds', '0', '--outdir', tmp_path, '--class', '5')
    assert res.exit_code != 0 and 'out of range' in res.output
    assert run_cli('--network', cond_pkl, '--seeds', '0', '--outdir', tmp_path / 'c2', '--class', '2').exit_code == 0
    G = tiny_generator(c_dim=3)
    c2 = torch.tensor([[0.0, 0.0, 1.0]])
    img = read_png(tmp_path / 'c2' / 'seed0000.png')
    np.testing.assert_array_equal(img, official_image(G, 0, c2))
    assert not np.array_equal(img, official_image(G, 0, torch.tensor([[1.0, 0.0, 0.0]])))

def test_unconditional_network_refuses_a_class(tmp_path, uncond_pkl):
    res = run_cli('--network', uncond_pkl, '--seeds', '0', '--outdir', tmp_path, '--class', '1')
    assert res.exit_code != 0 and 'unconditional' in res.output
    assert not any(tmp_path.glob('*.png'))

#----------------------------------------------------------------------------

def test_grid_tiles_seed_images_row_by_row(tmp_path, uncond_pkl):
    res = run_cli('--network', uncond_pkl, '--seeds', '0-2', '--grid', '2x2', '--outdir', tmp_path / 'g')
    assert res.exit_code == 0, res.output
    assert [p.name for p in (tmp_path / 'g').iterdir()] == ['grid.png']
    grid = read_png(tmp_path / 'g' / 'grid.png')
    assert grid.shape == (32, 32, 3)
    G = tiny_generator()
    np.testing.assert_array_equal(grid[:16, :16], official_image(G, 0))
    np.testing.assert_array_equal(grid[:16, 16:], official_image(G, 1))
    np.testing.assert_array_equal(grid[16:, :16], official_image(G, 2))
    assert grid[16:, 16:].max() == 0 # The empty cell is black.

def test_grid_too_small_for_the_seeds_is_an_error(tmp_path, uncond_pkl):
    res = run_cli('--network', uncond_pkl, '--seeds', '0-4', '--grid', '2x2', '--outdir', tmp_path / 'g')
    assert res.exit_code != 0 and 'holds 4 images' in res.output and '5' in res.output

def test_bad_seeds_option_names_the_option(tmp_path, uncond_pkl):
    res = run_cli('--network', uncond_pkl, '--seeds', '9-2', '--outdir', tmp_path)
    assert res.exit_code != 0 and '--seeds' in res.output and 'backwards' in res.output

#----------------------------------------------------------------------------

def test_grayscale_network_saves_mode_L(tmp_path):
    pkl = write_snapshot(tmp_path, tiny_generator(img_channels=1))
    assert run_cli('--network', pkl, '--seeds', '0', '--outdir', tmp_path / 'o').exit_code == 0
    im = PIL.Image.open(tmp_path / 'o' / 'seed0000.png')
    assert im.mode == 'L' and im.size == (16, 16)
    np.testing.assert_array_equal(np.asarray(im), official_image(tiny_generator(img_channels=1), 0)[:, :, 0])

def test_projected_w_of_a_seed_reproduces_the_seed_image(tmp_path, uncond_pkl):
    G = tiny_generator()
    z = torch.from_numpy(np.random.RandomState(3).randn(1, G.z_dim)).to(torch.float32)
    with torch.no_grad():
        w = G.mapping(z, None).numpy()
    np.savez(tmp_path / 'proj.npz', w=np.concatenate([w, w]))
    res = run_cli('--network', uncond_pkl, '--projected-w', tmp_path / 'proj.npz', '--outdir', tmp_path / 'p')
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / 'p').iterdir()) == ['proj00.png', 'proj01.png']
    np.testing.assert_array_equal(read_png(tmp_path / 'p' / 'proj00.png'), official_image(G, 3))
    np.savez(tmp_path / 'bad.npz', w=np.zeros([1, 2, 8], np.float32))
    res = run_cli('--network', uncond_pkl, '--projected-w', tmp_path / 'bad.npz', '--outdir', tmp_path / 'p')
    assert res.exit_code != 0 and 'num_ws=' in res.output

#----------------------------------------------------------------------------

def test_docstring_examples_run():
    failed, attempted = doctest.testmod(generate)
    assert attempted >= 4 and failed == 0
