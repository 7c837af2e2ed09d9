"""2-D convolutions with gradients of any order and an off switch for weight gradients.

The `conv2d_gradfix` interface of StyleGAN2-ADA: `conv2d` and `conv_transpose2d` take the
arguments of `torch.nn.functional.conv2d` / `conv_transpose2d`, and inside

    with no_weight_gradients():
        grads = torch.autograd.grad(...)

their backward skips the weight (and bias) gradient. R1 and path-length regularisation
use this: they need d(output)/d(input) only, while the same forward graph may also be
used for a loss that does need weight gradients.

The backward calls `aten.convolution_backward`, which PyTorch itself differentiates (any
order), so gradients of the input gradient with respect to the weight -- what the R1
penalty needs -- stay exact. Public APIs only; works on PyTorch 2.1 and later.
"""

import contextlib
from typing import Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F

IntOrPair = Union[int, Sequence[int]]

# Kept for compatibility with code that sets `conv2d_gradfix.enabled = True`; our path is
# correct on every supported PyTorch, so the flag changes nothing.
enabled = True

# A module-level counter rather than a context variable: the autograd engine runs CUDA
# backward passes on its own threads, which do not see the caller's context variables.
_weight_gradients_disabled = 0

#----------------------------------------------------------------------------

@contextlib.contextmanager
def no_weight_gradients(disable: bool = True) -> Iterator[None]:
    """Within this block, backward passes of conv2d/conv_transpose2d compute no weight gradient."""
    global _weight_gradients_disabled  # pylint: disable=global-statement
    if disable:
        _weight_gradients_disabled += 1
    try:
        yield
    finally:
        if disable:
            _weight_gradients_disabled -= 1

#----------------------------------------------------------------------------

def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
           stride: IntOrPair = 1, padding: IntOrPair = 0, dilation: IntOrPair = 1,
           groups: int = 1) -> torch.Tensor:
    """Like F.conv2d (correlation): input [N, Cin, H, W], weight [Cout, Cin/groups, kh, kw]."""
    args = _conv_args('conv2d', input, weight, bias, stride, padding, dilation, groups, transposed=False,
                      output_padding=0)
    return _conv(input, weight, bias, args)

def conv_transpose2d(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                     stride: IntOrPair = 1, padding: IntOrPair = 0, output_padding: IntOrPair = 0,
                     groups: int = 1, dilation: IntOrPair = 1) -> torch.Tensor:
    """Like F.conv_transpose2d: input [N, Cin, H, W], weight [Cin, Cout/groups, kh, kw]."""
    args = _conv_args('conv_transpose2d', input, weight, bias, stride, padding, dilation, groups,
                      transposed=True, output_padding=output_padding)
    return _conv(input, weight, bias, args)

#----------------------------------------------------------------------------

def _pair(value, name, op, minimum):
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (list, tuple)) or len(value) != 2 or \
            not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value):
        raise ValueError(f'{op}: {name} must be an int >= {minimum} or a pair of them, got {value!r}')
    return tuple(value)

def _conv_args(op, x, w, b, stride, padding, dilation, groups, transposed, output_padding):
    """Validate and normalise the convolution arguments into a dict of tuples."""
    for name, t in (('input', x), ('weight', w)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.ndim != 4:
            what = f'shape {list(t.shape)} dtype {t.dtype}' if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f'{op}: {name} must be a 4-D floating-point tensor, got {what}')
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f'{op}: groups must be an int >= 1, got {groups!r}')
    cin = w.shape[0] if transposed else w.shape[1] * groups
    if x.shape[1] != cin:
        raise ValueError(f'{op}: input has {x.shape[1]} channels but weight {list(w.shape)} with groups={groups} '
                         f'expects {cin}')
    if b is not None and (not isinstance(b, torch.Tensor) or b.ndim != 1):
        raise ValueError(f'{op}: bias must be a 1-D tensor or None, got {b!r:.80}')
    return dict(stride=_pair(stride, 'stride', op, 1), padding=_pair(padding, 'padding', op, 0),
                dilation=_pair(dilation, 'dilation', op, 1), transposed=transposed,
                output_padding=_pair(output_padding, 'output_padding', op, 0), groups=groups)

def _conv(x, w, b, args):
    """Run the convolution; through the custom node only when a gradient can be asked for."""
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or w.requires_grad or
                                              (b is not None and b.requires_grad))
    if not needs_grad:
        return _forward(x, w, b, args)
    return _Conv2d.apply(x, w, b, args)

def _forward(x, w, b, args):
    if args['transposed']:
        return F.conv_transpose2d(x, w, b, stride=args['stride'], padding=args['padding'],
                                  output_padding=args['output_padding'], groups=args['groups'],
                                  dilation=args['dilation'])
    return F.conv2d(x, w, b, stride=args['stride'], padding=args['padding'], dilation=args['dilation'],
                    groups=args['groups'])

class _Conv2d(torch.autograd.Function):
    """conv2d / conv_transpose2d whose backward honours no_weight_gradients()."""

    @staticmethod
    def forward(ctx, x, w, b, args):  # pylint: disable=arguments-differ
        ctx.args = args
        ctx.bias_sizes = None if b is None else list(b.shape)
        ctx.save_for_backward(x, w)
        return _forward(x, w, b, args)

    @staticmethod
    def backward(ctx, dy):  # pylint: disable=arguments-differ
        x, w = ctx.saved_tensors
        a = ctx.args
        keep_weight = _weight_gradients_disabled == 0
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1] and keep_weight,
                ctx.needs_input_grad[2] and keep_weight]
        if not any(mask):
            return None, None, None, None
        dx, dw, db = torch.ops.aten.convolution_backward(
            dy, x, w, ctx.bias_sizes, list(a['stride']), list(a['padding']), list(a['dilation']),
            a['transposed'], list(a['output_padding']), a['groups'], mask)
        return (dx if mask[0] else None), (dw if mask[1] else None), (db if mask[2] else None), None

#----------------------------------------------------------------------------
