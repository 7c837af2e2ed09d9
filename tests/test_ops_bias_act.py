"""bias_act against naive per-element numpy formulas; gradients by finite differences."""
import math

import numpy as np
import pytest
import torch

from torch_utils.ops import bias_act

#----------------------------------------------------------------------------
# Independent reference: each activation written out per element in plain Python math.

def _act_scalar(v: float, act: str, alpha: float) -> float:
    if act == 'linear':
        return v
    if act == 'relu':
        return max(v, 0.0)
    if act == 'lrelu':
        return v if v > 0 else alpha * v
    if act == 'tanh':
        return math.tanh(v)
    if act == 'sigmoid':
        return 1 / (1 + math.exp(-v))
    if act == 'elu':
        return v if v > 0 else math.exp(v) - 1
    if act == 'selu':
        a, s = 1.6732632423543772, 1.0507009873554805
        return s * (v if v > 0 else a * (math.exp(v) - 1))
    if act == 'softplus':
        return math.log1p(math.exp(v))
    if act == 'swish':
        return v / (1 + math.exp(-v))
    raise KeyError(act)

DEFAULTS = {  # act: (alpha, gain), the official table
    'linear': (0, 1), 'relu': (0, math.sqrt(2)), 'lrelu': (0.2, math.sqrt(2)), 'tanh': (0, 1), 'sigmoid': (0, 1),
    'elu': (0, 1), 'selu': (0, 1), 'softplus': (0, 1), 'swish': (0, math.sqrt(2)),
}

def _ref(x: np.ndarray, b, dim, act, alpha, gain, clamp) -> np.ndarray:
    out = np.empty_like(x)
    for idx in np.ndindex(*x.shape):
        v = x[idx] + (b[idx[dim]] if b is not None else 0.0)
        v = _act_scalar(float(v), act, alpha) * gain
        if clamp is not None:
            v = min(max(v, -clamp), clamp)
        out[idx] = v
    return out

#----------------------------------------------------------------------------

@pytest.mark.parametrize('act', sorted(DEFAULTS))
@pytest.mark.parametrize('dim', [0, 1, 2])
@pytest.mark.parametrize('clamp', [None, 0.6])
def test_bias_act_matches_naive_formula(act, dim, clamp):
    rng = np.random.RandomState(0)
    x = rng.randn(3, 4, 5) * 1.5
    b = rng.randn(x.shape[dim])
    alpha, gain = DEFAULTS[act]
    ref = _ref(x, b, dim, act, alpha, gain, clamp)
    y = bias_act.bias_act(torch.tensor(x), torch.tensor(b), dim=dim, act=act, clamp=clamp)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)
    # The same numbers on the autograd path (the fused node for piecewise-linear acts).
    yg = bias_act.bias_act(torch.tensor(x, requires_grad=True), torch.tensor(b), dim=dim, act=act, clamp=clamp)
    np.testing.assert_allclose(yg.detach().numpy(), ref, rtol=1e-12, atol=1e-12)

@pytest.mark.parametrize('act', ['lrelu', 'relu', 'linear', 'tanh'])
def test_bias_act_explicit_alpha_gain_and_no_bias(act):
    rng = np.random.RandomState(1)
    x = rng.randn(2, 3, 4, 4)
    ref = _ref(x, None, 1, act, 0.1, 0.7, 0.5)
    y = bias_act.bias_act(torch.tensor(x, requires_grad=True), None, act=act, alpha=0.1, gain=0.7, clamp=0.5)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-12, atol=1e-12)

def test_bias_act_float32_and_default_gain_table():
    for act, (alpha, gain) in DEFAULTS.items():
        assert bias_act.activation_funcs[act].def_gain == pytest.approx(gain)
        assert bias_act.activation_funcs[act].def_alpha == pytest.approx(alpha)
    x = torch.randn(4, 8, 3, 3)
    b = torch.randn(8)
    y = bias_act.bias_act(x, b, act='lrelu')
    assert y.dtype == torch.float32
    ref = torch.nn.functional.leaky_relu(x + b[None, :, None, None], 0.2) * math.sqrt(2)
    torch.testing.assert_close(y, ref)

def test_bias_act_negative_gain_uses_plain_path():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = bias_act.bias_act(x, None, act='lrelu', gain=-2.0)
    ref = _ref(x.detach().numpy(), None, 1, 'lrelu', 0.2, -2.0, None)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-12)

#----------------------------------------------------------------------------

@pytest.mark.parametrize('act', sorted(DEFAULTS))
@pytest.mark.parametrize('clamp', [None, 0.8])
def test_bias_act_gradcheck_and_gradgradcheck(act, clamp):
    gain = 0.5 if clamp is not None else None
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: bias_act.bias_act(x, b, act=act, gain=gain, clamp=clamp)
    # Finite differences are ill-defined at the kinks (0 and +-clamp): draw until none is near.
    for seed in range(100):
        torch.manual_seed(seed)
        x = torch.randn(2, 3, 4, dtype=torch.float64)
        unclamped = bias_act.bias_act(x, None, act=act, gain=gain)
        if x.abs().min() > 1e-2 and (clamp is None or ((unclamped.abs() - clamp).abs() > 1e-2).all()):
            break
    x.requires_grad_()
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))

def test_bias_act_output_can_be_modified_in_place_after_forward():
    # The fused node keeps masks, not its output: in-place use of y (resnet's y.add_(x)) is safe.
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    y = bias_act.bias_act(x, None, act='lrelu', clamp=1.0)
    ref_grad, = torch.autograd.grad(y.sum(), x, retain_graph=True)
    y.add_(1)
    grad, = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, ref_grad)

#----------------------------------------------------------------------------

@pytest.mark.parametrize('kwargs, match', [
    (dict(act='gelu'), 'unknown act'),
    (dict(b=torch.zeros(5)), 'elements'),
    (dict(b=torch.zeros(3, 1)), '1-D'),
    (dict(dim=4), 'dim'),
    (dict(x=torch.zeros(2, 3, dtype=torch.int32)), 'floating'),
    (dict(impl='triton'), 'impl'),
])
def test_bias_act_rejects_bad_arguments(kwargs, match):
    args = dict(x=torch.zeros(2, 3, 4, 4), b=torch.zeros(3))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        bias_act.bias_act(**args)
