"""grid_sample_gradfix against an explicit bilinear formula; fma against a * b + c; gradients."""
import numpy as np
import pytest
import torch

from torch_utils.ops import fma, grid_sample_gradfix

#----------------------------------------------------------------------------

def _bilinear_ref(img: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Bilinear sampling, zero padding, align_corners=False, as a per-pixel loop."""
    N, C, H, W = img.shape
    _, Ho, Wo, _ = grid.shape
    out = np.zeros((N, C, Ho, Wo))
    for n in range(N):
        for i in range(Ho):
            for j in range(Wo):
                x = ((grid[n, i, j, 0] + 1) * W - 1) / 2
                y = ((grid[n, i, j, 1] + 1) * H - 1) / 2
                x0, y0 = int(np.floor(x)), int(np.floor(y))
                for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                    for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                        if 0 <= yy < H and 0 <= xx < W:
                            out[n, :, i, j] += wy * wx * img[n, :, yy, xx]
    return out

def test_grid_sample_matches_bilinear_formula():
    rng = np.random.RandomState(0)
    img = rng.randn(2, 3, 5, 6)
    grid = rng.uniform(-1.2, 1.2, size=(2, 4, 3, 2))
    y = grid_sample_gradfix.grid_sample(torch.tensor(img), torch.tensor(grid))
    np.testing.assert_allclose(y.numpy(), _bilinear_ref(img, grid), rtol=1e-10, atol=1e-12)

@pytest.mark.parametrize('path', ['public', 'fallback'])
def test_grid_sample_gradgradcheck_through_input(path):
    torch.manual_seed(0)
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    grid = torch.rand(2, 4, 4, 2, dtype=torch.float64) * 2.2 - 1.1
    fn = grid_sample_gradfix.grid_sample if path == 'public' else grid_sample_gradfix._GridSample.apply
    assert torch.autograd.gradcheck(lambda t: fn(t, grid), (x,))
    assert torch.autograd.gradgradcheck(lambda t: fn(t, grid), (x,))

def test_grid_sample_r1_penalty_gradient_matches_between_paths():
    torch.manual_seed(0)
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    grid = torch.rand(2, 4, 4, 2, dtype=torch.float64) * 2 - 1
    v = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)  # stands in for D's weights
    def penalty(fn):
        y = (torch.tanh(fn(x, grid)) * v).sum()
        g, = torch.autograd.grad(y, x, create_graph=True)
        return torch.autograd.grad(g.square().sum(), v)[0]
    torch.testing.assert_close(penalty(grid_sample_gradfix._GridSample.apply),
                               penalty(lambda a, b: torch.nn.functional.grid_sample(a, b, align_corners=False)))

def test_grid_sample_rejects_bad_arguments():
    with pytest.raises(ValueError, match='4-D'):
        grid_sample_gradfix.grid_sample(torch.zeros(3, 4, 4), torch.zeros(1, 2, 2, 2))
    with pytest.raises(ValueError, match='grid'):
        grid_sample_gradfix.grid_sample(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 2, 3))
    with pytest.raises(ValueError, match='dtype'):
        grid_sample_gradfix.grid_sample(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 2, 2, dtype=torch.float64))

#----------------------------------------------------------------------------

def test_fma_broadcasts_and_gradchecks():
    torch.manual_seed(0)
    a = torch.randn(3, 1, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, 5, 1, dtype=torch.float64, requires_grad=True)
    c = torch.randn(4, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(fma.fma(a, b, c), a * b + c)
    assert torch.autograd.gradcheck(fma.fma, (a, b, c))
    assert torch.autograd.gradgradcheck(fma.fma, (a, b, c))
    # The gradient of a broadcast operand is summed over the broadcast dimensions.
    fma.fma(a, b, c).sum().backward()
    torch.testing.assert_close(c.grad, torch.full_like(c, 15.0))

def test_fma_rejects_non_broadcastable():
    with pytest.raises(ValueError, match='broadcast'):
        fma.fma(torch.zeros(3), torch.zeros(4), torch.zeros(1))
