"""conv2d_gradfix: F.conv2d numbers, any-order gradients, and no_weight_gradients()."""
import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import conv2d_gradfix

#----------------------------------------------------------------------------

@pytest.mark.parametrize('kw', [dict(), dict(stride=2, padding=1), dict(padding=[1, 0], dilation=2), dict(groups=2)])
def test_conv2d_equals_torch_and_gradchecks(kw):
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 2 // kw.get('groups', 1), 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(conv2d_gradfix.conv2d(x, w, b, **kw), F.conv2d(x, w, b, **kw))
    fn = lambda x, w, b: conv2d_gradfix.conv2d(x, w, b, **kw)
    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))

@pytest.mark.parametrize('kw', [dict(), dict(stride=2, padding=1, output_padding=1), dict(groups=2, stride=[2, 1])])
def test_conv_transpose2d_equals_torch_and_gradchecks(kw):
    torch.manual_seed(0)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 4 // kw.get('groups', 1), 3, 3, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(conv2d_gradfix.conv_transpose2d(x, w, **kw), F.conv_transpose2d(x, w, **kw))
    fn = lambda x, w: conv2d_gradfix.conv_transpose2d(x, w, **kw)
    assert torch.autograd.gradcheck(fn, (x, w))
    assert torch.autograd.gradgradcheck(fn, (x, w))

def test_third_order_gradient_matches_native():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    def third(conv):
        y = conv(x, w).pow(3).sum()
        g1, = torch.autograd.grad(y, x, create_graph=True)
        g2, = torch.autograd.grad(g1.pow(2).sum(), w, create_graph=True)
        g3, = torch.autograd.grad(g2.sum(), x)
        return g3
    torch.testing.assert_close(third(conv2d_gradfix.conv2d), third(F.conv2d))

#----------------------------------------------------------------------------

def test_no_weight_gradients_drops_weight_and_bias_gradient_only():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    y = conv2d_gradfix.conv2d(x, w, b, padding=1)
    with conv2d_gradfix.no_weight_gradients():
        y.square().sum().backward()
    assert w.grad is None and b.grad is None
    ref_x = x.detach().requires_grad_()
    F.conv2d(ref_x, w, b, padding=1).square().sum().backward()
    torch.testing.assert_close(x.grad, ref_x.grad)
    # Outside the block the weight gradient is back.
    conv2d_gradfix.conv2d(x, w, b, padding=1).sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0

def test_r1_style_penalty_still_reaches_weights_under_no_weight_gradients():
    # R1: the input gradient is taken inside the block, the penalty's weight gradient outside.
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    def penalty(conv, ctx):
        y = torch.tanh(conv(x, w, padding=1)).sum()
        with ctx():
            g, = torch.autograd.grad(y, x, create_graph=True)
        return g.square().sum()
    dw, = torch.autograd.grad(penalty(conv2d_gradfix.conv2d, conv2d_gradfix.no_weight_gradients), w)
    ref, = torch.autograd.grad(penalty(F.conv2d, conv2d_gradfix.no_weight_gradients), w)
    torch.testing.assert_close(dw, ref)
    assert dw.abs().sum() > 0

def test_no_weight_gradients_nests_and_can_be_disabled():
    with conv2d_gradfix.no_weight_gradients():
        with conv2d_gradfix.no_weight_gradients(disable=False):
            assert conv2d_gradfix._weight_gradients_disabled == 1
        assert conv2d_gradfix._weight_gradients_disabled == 1
    assert conv2d_gradfix._weight_gradients_disabled == 0

#----------------------------------------------------------------------------

@pytest.mark.parametrize('kwargs, match', [
    (dict(input=torch.zeros(3, 8, 8)), '4-D'),
    (dict(weight=torch.zeros(4, 5, 3, 3)), 'channels'),
    (dict(padding=-1), 'padding'),
    (dict(stride=0), 'stride'),
    (dict(groups=0), 'groups'),
])
def test_conv2d_rejects_bad_arguments(kwargs, match):
    args = dict(input=torch.zeros(1, 3, 8, 8), weight=torch.zeros(4, 3, 3, 3))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        conv2d_gradfix.conv2d(**args)
