"""Fused bias + activation + gain + clamp: the `bias_act` op of StyleGAN2 / StyleGAN2-ADA.

    y = clamp(act(x + b) * gain, -clamp, clamp)

with `b` broadcast along dimension `dim` of `x`. Activations and their default alpha and
gain (the official table):

    linear 1, relu sqrt(2), lrelu (alpha 0.2) sqrt(2), tanh 1, sigmoid 1, elu 1,
    selu 1, softplus 1, swish sqrt(2)

`alpha` is used by lrelu only (elu is the standard elu with alpha 1, as officially).

Two paths: the PyTorch path (every device; the CPU path) and a CUDA plugin for CUDA
tensors with `impl='cuda'` (built on first use by `torch_utils.custom_ops`, falling back to
the PyTorch path when it cannot be built). Both give gradients of any order.

The PyTorch path fuses the piecewise-linear activations (linear+clamp, relu, lrelu) into
one autograd node that works in place and keeps only one byte per element for the
backward (the sign of the output and, with clamp, whether it was clamped), instead of the
two or three full-size intermediates a chain of PyTorch ops would keep alive.
"""

import dataclasses
import math
import os
from typing import Callable, Optional

import torch
import torch.nn.functional as F

#----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ActSpec:
    """One activation: its function, default alpha and gain, and its index in the CUDA plugin."""
    func:           Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha:      float
    def_gain:       float
    cuda_idx:       int
    piecewise_linear: bool  # derivative is piecewise constant => fused PyTorch node

activation_funcs = {
    'linear':   ActSpec(lambda x, alpha: x,                             0.0, 1.0,          1, True),
    'relu':     ActSpec(lambda x, alpha: F.relu(x),                     0.0, math.sqrt(2), 2, True),
    'lrelu':    ActSpec(lambda x, alpha: F.leaky_relu(x, alpha),        0.2, math.sqrt(2), 3, True),
    'tanh':     ActSpec(lambda x, alpha: torch.tanh(x),                 0.0, 1.0,          4, False),
    'sigmoid':  ActSpec(lambda x, alpha: torch.sigmoid(x),              0.0, 1.0,          5, False),
    'elu':      ActSpec(lambda x, alpha: F.elu(x),                      0.0, 1.0,          6, False),
    'selu':     ActSpec(lambda x, alpha: F.selu(x),                     0.0, 1.0,          7, False),
    'softplus': ActSpec(lambda x, alpha: F.softplus(x),                 0.0, 1.0,          8, False),
    'swish':    ActSpec(lambda x, alpha: torch.sigmoid(x) * x,          0.0, math.sqrt(2), 9, False),
}

#----------------------------------------------------------------------------

def bias_act(
    x:      torch.Tensor,               # Input of any rank, floating point.
    b:      Optional[torch.Tensor] = None,  # Bias [x.shape[dim]], or None.
    dim:    int = 1,                    # The dimension of x that b runs along.
    act:    str = 'linear',             # Name of the activation (see `activation_funcs`).
    alpha:  Optional[float] = None,     # lrelu slope; None = the default (0.2).
    gain:   Optional[float] = None,     # Output scale; None = the activation's default.
    clamp:  Optional[float] = None,     # Clamp the output to [-clamp, clamp]; None = no clamp.
    impl:   str = 'cuda',               # 'cuda' (plugin on CUDA tensors) or 'ref' (PyTorch).
) -> torch.Tensor:
    """Add a bias, apply an activation, scale and clamp. Returns a tensor shaped like x.

    Example: `bias_act(x, b, act='lrelu')` for x [N, C, H, W] float32 and b [C] is
    `leaky_relu(x + b[None, :, None, None], 0.2) * sqrt(2)`.
    """
    dim, spec, alpha, gain, clamp = _check_args(x, b, dim, act, alpha, gain, clamp, impl)
    if b is not None and b.dtype != x.dtype:
        b = b.to(x.dtype)
    if impl == 'cuda' and x.is_cuda:
        plugin_op = _cuda_op()
        if plugin_op is not None:
            return plugin_op(x, b, dim, act, alpha, gain, clamp)
    return _bias_act_torch(x, b, dim, spec, alpha, gain, clamp)

#----------------------------------------------------------------------------

def _check_args(x, b, dim, act, alpha, gain, clamp, impl):
    """Validate the arguments of bias_act; return (dim, spec, alpha, gain, clamp) resolved."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f'bias_act: x must be a floating-point torch.Tensor, got {type(x).__name__}'
                         f'{" of dtype " + str(x.dtype) if isinstance(x, torch.Tensor) else ""}')
    if act not in activation_funcs:
        raise ValueError(f'bias_act: unknown act {act!r}; expected one of {sorted(activation_funcs)}')
    if impl not in ('cuda', 'ref'):
        raise ValueError(f"bias_act: impl must be 'cuda' or 'ref', got {impl!r}")
    if not isinstance(dim, int) or not -x.ndim <= dim < max(x.ndim, 1):
        raise ValueError(f'bias_act: dim must be an int in [0, {x.ndim}) for x of shape {list(x.shape)}, got {dim!r}')
    dim = dim % max(x.ndim, 1)
    if b is not None:
        if not isinstance(b, torch.Tensor) or not b.is_floating_point() or b.ndim != 1:
            raise ValueError(f'bias_act: b must be a 1-D floating-point tensor or None, got '
                             f'{list(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__}')
        if b.shape[0] != x.shape[dim]:
            raise ValueError(f'bias_act: b has {b.shape[0]} elements but x has {x.shape[dim]} along dim {dim} '
                             f'(x shape {list(x.shape)}); pass b of length x.shape[dim] or choose another dim')
        if b.device != x.device:
            raise ValueError(f'bias_act: b is on {b.device} but x is on {x.device}; move them to one device')
    spec = activation_funcs[act]
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    clamp = float(clamp if clamp is not None else -1)
    return dim, spec, alpha, gain, clamp

#----------------------------------------------------------------------------

def _bias_shape(x: torch.Tensor, dim: int):
    return [-1 if i == dim else 1 for i in range(x.ndim)]

def _bias_act_torch(x, b, dim, spec, alpha, gain, clamp):
    """The PyTorch path: one fused node for piecewise-linear acts, plain ops otherwise."""
    use_fused = spec.piecewise_linear and gain > 0 and (spec.cuda_idx != 1 or clamp >= 0)
    if use_fused and (x.requires_grad or (b is not None and b.requires_grad)) and torch.is_grad_enabled():
        return _PiecewiseLinearBiasAct.apply(x, b, dim, spec.cuda_idx, alpha, gain, clamp)
    if use_fused:
        # No autograd needed: the same in-place arithmetic, nothing saved.
        with torch.no_grad():
            return _piecewise_linear_forward(x, b, dim, spec.cuda_idx, alpha, gain, clamp)
    if b is not None:
        x = x + b.reshape(_bias_shape(x, dim))
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x

#----------------------------------------------------------------------------

def _piecewise_linear_forward(x, b, dim, act_idx, alpha, gain, clamp):
    """y = clamp(act(x + b) * gain) for linear/relu/lrelu and gain > 0, in one fresh buffer.

    A positive gain commutes with the (positively homogeneous) activation, so the gain is
    applied first by the same pass that adds the bias.
    """
    if b is not None:
        y = torch.add(x, b.reshape(_bias_shape(x, dim)))
        if gain != 1:
            y.mul_(gain)
    else:
        y = x * gain
    if act_idx == 2:
        y.relu_()
    elif act_idx == 3:
        F.leaky_relu_(y, alpha)
    if clamp >= 0:
        y.clamp_(-clamp, clamp)
    return y

class _PiecewiseLinearBiasAct(torch.autograd.Function):
    """bias_act for linear(+clamp)/relu/lrelu with gain > 0, saving 1 byte per element.

    dy/dx = gain * (1 if x + b > 0 else slope) * (1 if |y| < clamp else 0), where slope is
    0 (relu), alpha (lrelu) or 1 (linear). This is piecewise constant in x, so the backward
    is linear in the incoming gradient and is itself differentiable to any order.
    """

    @staticmethod
    def forward(ctx, x, b, dim, act_idx, alpha, gain, clamp):  # pylint: disable=arguments-differ
        y = _piecewise_linear_forward(x, b, dim, act_idx, alpha, gain, clamp)
        if act_idx == 1:
            mask = None
        else:
            mask = y > 0
        inside = (y.abs() < clamp) if clamp >= 0 else None
        ctx.dim = dim
        ctx.slopes = (gain, gain * (0.0 if act_idx == 2 else alpha if act_idx == 3 else 1.0))
        ctx.has_mask, ctx.has_inside = mask is not None, inside is not None
        ctx.save_for_backward(*[t for t in (mask, inside) if t is not None])
        ctx.mark_non_differentiable(*[t for t in (mask, inside) if t is not None])
        return y

    @staticmethod
    def backward(ctx, dy):  # pylint: disable=arguments-differ
        saved = list(ctx.saved_tensors)
        mask = saved.pop(0) if ctx.has_mask else None
        inside = saved.pop(0) if ctx.has_inside else None
        pos, neg = ctx.slopes
        dx = _scale_grad(dy, mask, inside, pos, neg)
        db = None
        if ctx.needs_input_grad[1]:
            db = dx.sum([i for i in range(dx.ndim) if i != ctx.dim])
        return (dx if ctx.needs_input_grad[0] else None), db, None, None, None, None, None

def _scale_grad(dy, mask, inside, pos, neg):
    """dy * (pos where mask else neg) * inside, as differentiable ops of dy."""
    if mask is None:
        dx = dy * pos
    elif neg == 0:
        dx = dy * (mask * pos).to(dy.dtype) if pos != 1 else dy * mask.to(dy.dtype)
    else:
        dx = dy * torch.where(mask, pos, neg).to(dy.dtype)
    if inside is not None:
        dx = dx * inside.to(dy.dtype)
    return dx

#----------------------------------------------------------------------------

# The CUDA plugin. Its kernel (bias_act.h) computes, with z = x + b,
#   order 0: clamp(gain * act(z))      order k: u * gain * act^(k)(z) * [|gain * act(z)| < clamp]
# and the autograd nodes below get every order of gradient by calling it again.

def _cuda_kernel():
    """The plugin's kernel function, or None when the plugin cannot be built (one warning)."""
    from .. import custom_ops  # pylint: disable=import-outside-toplevel
    plugin = custom_ops.get_plugin('bias_act_plugin', sources=['bias_act.cpp', 'bias_act.cu'],
                                   headers=['bias_act.h'], source_dir=os.path.dirname(__file__),
                                   extra_cuda_cflags=['--use_fast_math'])
    if plugin is None:
        return None
    def kernel(x, b, u, dim, act_idx, order, alpha, gain, clamp):
        with torch.cuda.device(x.device):
            return plugin.bias_act(x, b, u, dim, act_idx, order, alpha, gain, clamp,
                                   torch.cuda.current_stream(x.device).cuda_stream)
    return kernel

def _cuda_op():
    """bias_act through the plugin (a callable like _bias_act_torch's caller), or None."""
    kernel = _cuda_kernel()
    if kernel is None:
        return None
    return lambda x, b, dim, act, alpha, gain, clamp: bias_act_by_kernel(kernel, x, b, dim, act, alpha, gain, clamp)

def _act_derivative(z: torch.Tensor, act: str, alpha: float, order: int) -> torch.Tensor:
    """d^order act / dz^order at z, by repeated autograd of the elementwise function (any order)."""
    with torch.enable_grad():
        z = z.detach().requires_grad_()
        d = activation_funcs[act].func(z, alpha)
        for _ in range(order):
            if not d.requires_grad:  # constant: every further derivative is 0
                return torch.zeros_like(z)
            d, = torch.autograd.grad(d.sum(), z, create_graph=True, allow_unused=True)
            if d is None:
                return torch.zeros_like(z)
    return d.detach()

def reference_kernel(x, b, u, dim, act_idx, order, alpha, gain, clamp):
    """The plugin kernel's contract in PyTorch (any order); tests drive the autograd glue with it."""
    act = _act_name(act_idx)
    z = x if b is None or b.numel() == 0 else x + b.reshape(_bias_shape(x, dim))
    y = activation_funcs[act].func(z, alpha) * gain
    if order == 0:
        return y.clamp(-clamp, clamp) if clamp >= 0 else y
    out = u * gain * _act_derivative(z, act, alpha, order)
    return out * (y.abs() < clamp).to(out.dtype) if clamp >= 0 else out

def _act_name(act_idx: int) -> str:
    return next(name for name, spec in activation_funcs.items() if spec.cuda_idx == act_idx)

def bias_act_by_kernel(kernel, x, b, dim, act, alpha, gain, clamp):
    """bias_act through a kernel with the plugin's contract; differentiable to any order."""
    spec = activation_funcs[act]
    cfg = (kernel, dim, spec.cuda_idx, alpha, gain, clamp)
    empty = x.new_empty([0])
    return _KernelBiasAct.apply(x, b if b is not None else empty, cfg)

def _run_kernel(cfg, x, b, u, order):
    kernel, dim, act_idx, alpha, gain, clamp = cfg
    if order <= 2:
        return kernel(x, b, u, dim, act_idx, order, alpha, gain, clamp)
    # Orders the kernel does not provide: the same contract, computed by PyTorch.
    return reference_kernel(x, b, u, dim, act_idx, order, alpha, gain, clamp)

def _sum_to_bias(t, b, dim):
    return t.sum([i for i in range(t.ndim) if i != dim]) if b.numel() > 0 else None

class _KernelBiasAct(torch.autograd.Function):
    """y = kernel order 0; dy/dx * g = kernel order 1 applied to g."""

    @staticmethod
    def forward(ctx, x, b, cfg):  # pylint: disable=arguments-differ
        ctx.cfg = cfg
        ctx.save_for_backward(x, b)
        return _run_kernel(cfg, x, b, x.new_empty([0]), 0)

    @staticmethod
    def backward(ctx, dy):  # pylint: disable=arguments-differ
        x, b = ctx.saved_tensors
        dx = _KernelDerivative.apply(dy, x, b, ctx.cfg, 1)
        db = _sum_to_bias(dx, b, ctx.cfg[1]) if ctx.needs_input_grad[1] else None
        return dx, db, None

class _KernelDerivative(torch.autograd.Function):
    """out = u * gain * act^(k)(x + b) * mask; linear in u, its x-derivative is order k + 1."""

    @staticmethod
    def forward(ctx, u, x, b, cfg, order):  # pylint: disable=arguments-differ
        ctx.cfg, ctx.order = cfg, order
        ctx.save_for_backward(u, x, b)
        return _run_kernel(cfg, x, b, u.contiguous(), order)

    @staticmethod
    def backward(ctx, g):  # pylint: disable=arguments-differ
        u, x, b = ctx.saved_tensors
        du = _KernelDerivative.apply(g, x, b, ctx.cfg, ctx.order) if ctx.needs_input_grad[0] else None
        dx = db = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            dx = _KernelDerivative.apply(g * u, x, b, ctx.cfg, ctx.order + 1)
            db = _sum_to_bias(dx, b, ctx.cfg[1]) if ctx.needs_input_grad[2] else None
        return du, dx, db, None, None

#----------------------------------------------------------------------------
