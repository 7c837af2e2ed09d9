"""CHAIN: lipsCHitz continuity constrAIned Normalization for the discriminator.

Implements Ni & Koniusz, "CHAIN: Enhancing Generalization in Data-Efficient GANs via
lipsCHitz continuity constrAIned Normalization", CVPR 2024, as specified in DESIGN §5:

- 0MR (zero-mean regularisation): every CHAIN layer reports sum_c mu_c^2 of its input
  Y [B, C, H, W] (mu_c = mean over B, H, W); the loss adds lambda * (p + lambda_p0) times
  their sum to D's loss on the real and fake streams.
- ARMS (adaptive root-mean-square normalisation): per sample and channel, with
  probability p (mask M of shape [B, C, 1, 1]), Y is replaced by Y / psi * psi_min, where
  psi_c is the channel's RMS and psi_min = min_c psi carries no gradient.
- Two variants: `batch` (psi from the current batch, the paper's pseudo-code) and
  `running` (the authors' recommended one: running second moments per stream and a custom
  backward that removes the running mean of y * g', see `_RunningArms`).
- `ChainController`: the p controller shared by all layers of one D,
  r <- 0.9 r + 0.1 mean(sign(D(real))), p <- clip(p + dp * sign(r - tau), 0, 1).

The seam with training/networks.py (common.md): each `Conv2dLayer` has an attribute
`chain` (None by default) called as `chain(x, p=..., stream=..., zmr_terms=...)` after
its convolution and before bias + activation; `attach_chain(D, ...)` fills those
attributes and sets `D.chain_controller`.

Streams: 'real', 'fake_d' (fakes in D's step), 'fake_g' (fakes in G's step) or None
(evaluation). Training streams draw a fresh mask and update statistics at every call.
stream=None is deterministic and updates nothing: it returns the expectation over the
mask, (1 - p) * Y + p * ARMS(Y), with ARMS using the current batch's RMS (`batch`) or the
real stream's running second moment (`running`), and plain autograd gradients.
"""

import math
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.distributed

from torch_utils import persistence

#----------------------------------------------------------------------------
# The authors' defaults, in one place; the CLI (--chain-*) imports these.

CHAIN_VARIANTS = ('batch', 'running')
CHAIN_STREAMS = ('real', 'fake_d', 'fake_g')

CHAIN_DEFAULTS = dict(
    variant     = 'running',    # 'running' (recommended by the authors) or 'batch'.
    blocks      = None,         # D block resolutions that get CHAIN; None = every block.
    tau         = 0.5,          # Target of r = running mean of sign(D(real)), in [-1, 1].
    dp          = 0.001,        # Change of p per D step, >= 0.
    lambda_0mr  = 20.0,         # Weight of the 0MR term, multiplied by (p + lambda_p0).
    lambda_p0   = 0.0,          # Constant added to p in the 0MR weight (0.1 for tiny sets).
    start_kimg  = 0.0,          # p stays where it is (0 at the start) before this many kimg.
)

# Which command-line flag sets each option, so that errors name what the user typed.
_CLI_FLAGS = dict(variant='--chain', blocks='--chain-blocks', tau='--chain-tau', dp='--chain-dp',
    lambda_0mr='--chain-lambda', lambda_p0='--chain-lambda-p0', start_kimg='--chain-start-kimg')

#----------------------------------------------------------------------------

def _option_error(name: str, expected: str, got: Any, fix: str) -> ValueError:
    return ValueError(f'CHAIN option {name!r} ({_CLI_FLAGS[name]}) must be {expected}, got {got!r}; {fix}')

#----------------------------------------------------------------------------

def parse_chain_blocks(blocks: Union[None, str, Sequence[int]]) -> Optional[List[int]]:
    """Turn None / 'all' / '64,128' / [64, 128] into None or a sorted list of ints."""
    if blocks is None:
        return None
    if isinstance(blocks, str):
        text = blocks.strip().lower()
        if text in ('', 'all', 'none'):
            return None
        items = [s.strip() for s in text.split(',') if s.strip()]
    else:
        try:
            items = list(blocks)
        except TypeError:
            raise _option_error('blocks', 'a list of block resolutions such as 64,128', blocks,
                'give comma-separated powers of two, or omit it for every block') from None
    result = []
    for item in items:
        try:
            value = int(item)
            if isinstance(item, float) and item != value:
                raise ValueError
        except (TypeError, ValueError):
            raise _option_error('blocks', 'a list of block resolutions such as 64,128', blocks,
                'give comma-separated powers of two, or omit it for every block') from None
        result.append(value)
    return sorted(set(result))

#----------------------------------------------------------------------------

def valid_block_resolutions(img_resolution: int) -> List[int]:
    """D blocks that may get CHAIN: 8 .. img_resolution (the 4x4 epilogue never does)."""
    return [2 ** i for i in range(int(math.log2(img_resolution)), 2, -1)]

#----------------------------------------------------------------------------

def validate_chain_kwargs(variant: str = CHAIN_DEFAULTS['variant'], blocks=CHAIN_DEFAULTS['blocks'],
        tau: float = CHAIN_DEFAULTS['tau'], dp: float = CHAIN_DEFAULTS['dp'],
        lambda_0mr: float = CHAIN_DEFAULTS['lambda_0mr'], lambda_p0: float = CHAIN_DEFAULTS['lambda_p0'],
        start_kimg: float = CHAIN_DEFAULTS['start_kimg'], img_resolution: Optional[int] = None) -> Dict[str, Any]:
    """Check CHAIN options and return them normalised (floats, sorted block list or None).

    Raises ValueError naming the option, its CLI flag, the accepted range and the value.
    Block resolutions are checked against `img_resolution` when it is given.
    """
    if variant not in CHAIN_VARIANTS:
        raise _option_error('variant', f'one of {", ".join(CHAIN_VARIANTS)} (or none at the CLI)', variant,
            "use 'running' (the authors' recommended variant) or 'batch'")

    def as_float(name, value):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise _option_error(name, 'a number', value, 'pass a number') from None
        if not math.isfinite(value):
            raise _option_error(name, 'finite', value, 'pass a finite number')
        return value

    tau = as_float('tau', tau)
    if not -1 <= tau <= 1:
        raise _option_error('tau', 'in [-1, 1] (it is compared with a mean of signs)', tau,
            f"the authors use {CHAIN_DEFAULTS['tau']}")
    dp = as_float('dp', dp)
    if not 0 <= dp <= 1:
        raise _option_error('dp', 'in [0, 1] (change of p per D step)', dp, f"the authors use {CHAIN_DEFAULTS['dp']}")
    lambda_0mr = as_float('lambda_0mr', lambda_0mr)
    if lambda_0mr < 0:
        raise _option_error('lambda_0mr', '>= 0', lambda_0mr, f"the authors use {CHAIN_DEFAULTS['lambda_0mr']}")
    lambda_p0 = as_float('lambda_p0', lambda_p0)
    if lambda_p0 < 0:
        raise _option_error('lambda_p0', '>= 0', lambda_p0, 'use 0, or 0.1 for tiny datasets')
    start_kimg = as_float('start_kimg', start_kimg)
    if start_kimg < 0:
        raise _option_error('start_kimg', '>= 0', start_kimg, 'use 0 to let p move from the start')

    blocks = parse_chain_blocks(blocks)
    if blocks is not None:
        if len(blocks) == 0:
            raise _option_error('blocks', 'a non-empty list of block resolutions', blocks,
                'omit it for every block, or disable CHAIN with --chain none')
        if img_resolution is not None:
            valid = valid_block_resolutions(img_resolution)
            bad = [b for b in blocks if b not in valid]
            if bad:
                raise _option_error('blocks', f'D block resolutions of a {img_resolution}px D, i.e. among '
                    f'{sorted(valid)} (the 4x4 epilogue never gets CHAIN)', bad, 'pick resolutions from that list')
        elif any(b < 8 or b & (b - 1) for b in blocks):
            raise _option_error('blocks', 'powers of two >= 8 (the 4x4 epilogue never gets CHAIN)', blocks,
                'pick D block resolutions such as 64,128')

    return dict(variant=variant, blocks=blocks, tau=tau, dp=dp, lambda_0mr=lambda_0mr,
        lambda_p0=lambda_p0, start_kimg=start_kimg)

#----------------------------------------------------------------------------

def _compute_dtype(x: torch.Tensor) -> torch.Tensor:
    """x in float32 when it is half precision (statistics of fp16 blocks), else unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x

#----------------------------------------------------------------------------

def zero_mean_term(x: torch.Tensor) -> torch.Tensor:
    """0MR term of a conv output x [B, C, H, W]: sum_c (mean_{B,H,W} x)^2, a scalar (float32 for fp16 x)."""
    return _compute_dtype(x).mean(dim=[0, 2, 3]).square().sum()

#----------------------------------------------------------------------------

class _RunningArms(torch.autograd.Function):
    """ARMS of the running variant with the authors' custom backward (DESIGN §5).

    forward(x [B,C,H,W] f32, v [C] (already updated, no grad), psi_min (scalar, no grad),
    mask [B,C,1,1] bool, u [C] running buffer, decay, eps):
        y = x / sqrt(v + eps);  out = where(mask, y * psi_min, x).
    backward: g' = grad * psi_min; u <- decay u + (1 - decay) mean_{B,H,W}(y g') (a no-grad
    side effect on the buffer, done before use, like v in the forward);
    grad_x = where(mask, (g' - u y) / sqrt(v + eps), grad).

    u is estimated from the full incoming gradient (not the masked one) so that it does
    not shrink with p. The backward is built from differentiable torch ops on the saved
    input, so a second differentiation (R1 with create_graph=True) goes through it, with u
    a constant. Each call of this backward updates u with the gradient it receives: in an
    R1 pass that is once for grad_x D(x) and, when D's head is nonlinear, once more for
    the penalty's gradient flowing back through the layer's output.
    """

    @staticmethod
    def forward(ctx, x, v, psi_min, mask, u, decay, eps):
        scale = (v + eps).rsqrt().reshape(1, -1, 1, 1)
        out = torch.where(mask, x * scale * psi_min, x)
        ctx.save_for_backward(x, mask)
        ctx.scale, ctx.psi_min, ctx.u, ctx.decay = scale, psi_min, u, decay
        return out

    @staticmethod
    def backward(ctx, grad):
        x, mask = ctx.saved_tensors
        y = x * ctx.scale
        g = grad * ctx.psi_min
        with torch.no_grad():
            ctx.u.mul_(ctx.decay).add_((y * g).mean(dim=[0, 2, 3]), alpha=1 - ctx.decay)
            u = ctx.u.clone().reshape(1, -1, 1, 1)  # A copy: later updates must not alter this graph.
        grad_x = torch.where(mask, (g - u * y) * ctx.scale, grad)
        return grad_x, None, None, None, None, None, None

#----------------------------------------------------------------------------

@persistence.persistent_class
class ChainLayer(torch.nn.Module):
    """One CHAIN layer (0MR report + ARMS) for a conv output with `num_channels` channels.

    Buffers (saved in snapshots): `running`: v_real, v_fake ([C], ones) and u_real,
    u_fake_d, u_fake_g ([C], zeros); `batch`: psi_real ([C], ones; the last real batch's
    RMS, for diagnostics only). Statistics are updated by every training-stream call,
    also at p = 0, so they are warm when p first rises.
    """

    def __init__(self,
        num_channels: int,          # Channels C of the conv output.
        variant: str = 'running',   # 'running' or 'batch'.
        eps: float = 1e-5,          # Added to second moments before the square root.
        decay: float = 0.9,         # Decay of the running statistics v and u.
    ):
        super().__init__()
        if variant not in CHAIN_VARIANTS:
            raise _option_error('variant', f'one of {", ".join(CHAIN_VARIANTS)}', variant, "use 'running' or 'batch'")
        if not (isinstance(num_channels, int) and num_channels > 0):
            raise ValueError(f'ChainLayer num_channels must be a positive int, got {num_channels!r}')
        self.num_channels = num_channels
        self.variant = variant
        self.eps = float(eps)
        self.decay = float(decay)
        if variant == 'running':
            self.register_buffer('v_real', torch.ones([num_channels]))
            self.register_buffer('v_fake', torch.ones([num_channels]))
            self.register_buffer('u_real', torch.zeros([num_channels]))
            self.register_buffer('u_fake_d', torch.zeros([num_channels]))
            self.register_buffer('u_fake_g', torch.zeros([num_channels]))
        else:
            self.register_buffer('psi_real', torch.ones([num_channels]))

    def extra_repr(self) -> str:
        return f'num_channels={self.num_channels}, variant={self.variant}, eps={self.eps:g}, decay={self.decay:g}'

    def mean_psi(self) -> float:
        """Mean over channels of the real stream's RMS (diagnostics)."""
        if self.variant == 'running':
            return float(self.v_real.sqrt().mean())
        return float(self.psi_real.mean())

    def forward(self, x: torch.Tensor, p: Union[float, torch.Tensor] = 0.0, stream: Optional[str] = None,
            zmr_terms: Optional[list] = None) -> torch.Tensor:
        """x: conv output [B, C, H, W] (float32 or float16); returns the same shape and dtype.

        p: probability of ARMS per sample and channel (scalar float or 0-dim tensor).
        stream: 'real', 'fake_d', 'fake_g' or None (evaluation, see the module docstring).
        zmr_terms: when a list, this layer's 0MR term (a scalar with gradient) is appended to it.
        """
        if stream is not None and stream not in CHAIN_STREAMS:
            raise ValueError(f'ChainLayer stream must be one of {CHAIN_STREAMS} or None, got {stream!r}')
        if x.ndim != 4 or x.shape[1] != self.num_channels:
            raise ValueError(f'ChainLayer expects [B, {self.num_channels}, H, W], got {list(x.shape)}')
        if zmr_terms is not None:
            zmr_terms.append(zero_mean_term(x))
        xf = _compute_dtype(x)  # Statistics in float32 even for fp16 blocks.
        p = torch.as_tensor(p, dtype=torch.float32, device=x.device)
        if stream is None:
            out = self._expected(xf, p)
        else:
            mask = torch.rand([x.shape[0], x.shape[1], 1, 1], device=x.device) < p  # Bernoulli(p), [B, C, 1, 1]
            out = self._running(xf, mask, stream) if self.variant == 'running' else self._batch(xf, mask, stream)
        return out.to(x.dtype)

    def _batch(self, x: torch.Tensor, mask: torch.Tensor, stream: str) -> torch.Tensor:
        psi = (x.square().mean(dim=[0, 2, 3]) + self.eps).sqrt()  # [C], with gradient
        psi_min = psi.detach().min()
        if stream == 'real':
            with torch.no_grad():
                self.psi_real.copy_(psi.detach())
        return torch.where(mask, x / psi.reshape(1, -1, 1, 1) * psi_min, x)

    def _running(self, x: torch.Tensor, mask: torch.Tensor, stream: str) -> torch.Tensor:
        v_buf = self.v_real if stream == 'real' else self.v_fake
        u_buf = getattr(self, f'u_{stream}')
        with torch.no_grad():
            # Update with the current batch before use.
            v_buf.mul_(self.decay).add_(x.detach().square().mean(dim=[0, 2, 3]), alpha=1 - self.decay)
            v = v_buf.clone()
            psi_min = v.min().sqrt()
        return _RunningArms.apply(x, v, psi_min, mask, u_buf, self.decay, self.eps)

    def _expected(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        if self.variant == 'running':
            v = self.v_real.detach()
            psi_min = v.min().sqrt()
            normed = x * (v + self.eps).rsqrt().reshape(1, -1, 1, 1) * psi_min
        else:
            psi = (x.square().mean(dim=[0, 2, 3]) + self.eps).sqrt()
            normed = x / psi.reshape(1, -1, 1, 1) * psi.detach().min()
        return x * (1 - p) + normed * p  # Exact at p = 0 and p = 1.

#----------------------------------------------------------------------------

@persistence.persistent_class
class ChainController(torch.nn.Module):
    """The p controller shared by all CHAIN layers of one discriminator.

    Buffers: p (0-dim, starts at 0) and r (0-dim, starts at 0). The loss calls
    `observe(real_logits)` on every real-stream D pass of Dmain/Dboth; the loop calls
    `step(cur_nimg)` after every D optimizer step.
    """

    def __init__(self,
        tau: float = CHAIN_DEFAULTS['tau'],                 # Target of r.
        dp: float = CHAIN_DEFAULTS['dp'],                   # Change of p per step.
        lambda_0mr: float = CHAIN_DEFAULTS['lambda_0mr'],   # 0MR weight factor.
        lambda_p0: float = CHAIN_DEFAULTS['lambda_p0'],     # Constant added to p in the 0MR weight.
        start_kimg: float = CHAIN_DEFAULTS['start_kimg'],   # p does not move before this.
        decay: float = 0.9,                                 # Decay of r.
    ):
        super().__init__()
        self.tau = float(tau)
        self.dp = float(dp)
        self.lambda_0mr = float(lambda_0mr)
        self.lambda_p0 = float(lambda_p0)
        self.start_kimg = float(start_kimg)
        self.decay = float(decay)
        self.register_buffer('p', torch.zeros([]))
        self.register_buffer('r', torch.zeros([]))
        self._acc = None  # [sum of signs, count] since the last step; on the logits' device.

    def extra_repr(self) -> str:
        return (f'tau={self.tau:g}, dp={self.dp:g}, lambda_0mr={self.lambda_0mr:g}, '
            f'lambda_p0={self.lambda_p0:g}, start_kimg={self.start_kimg:g}')

    @torch.no_grad()
    def observe(self, real_logits: torch.Tensor) -> None:
        """Accumulate sign statistics of D's logits on reals ([N, 1] or any shape)."""
        logits = real_logits.detach().float()
        stats = torch.stack([logits.sign().sum(), torch.tensor(float(logits.numel()), device=logits.device)])
        self._acc = stats if self._acc is None else self._acc + stats.to(self._acc.device)

    @torch.no_grad()
    def step(self, cur_nimg: int) -> None:
        """After a D step: all-reduce the statistics over ranks, update r, then p; reset.

        Free of host-device syncs. Every rank must call it (the all-reduce is collective).
        """
        stats = torch.zeros([2], device=self.p.device) if self._acc is None else self._acc.to(self.p.device)
        self._acc = None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)
        seen = stats[1] > 0
        mean_sign = stats[0] / stats[1].clamp(min=1)
        r_new = self.r * self.decay + mean_sign * (1 - self.decay)
        self.r.copy_(torch.where(seen, r_new, self.r))
        if cur_nimg >= self.start_kimg * 1000:
            p_new = (self.p + self.dp * torch.sign(self.r - self.tau)).clamp(0, 1)
            self.p.copy_(torch.where(seen, p_new, self.p))

    def zmr_weight(self) -> torch.Tensor:
        """Weight of the summed 0MR terms: lambda_0mr * (p + lambda_p0), a 0-dim tensor."""
        return self.lambda_0mr * (self.p + self.lambda_p0)

#----------------------------------------------------------------------------

def chain_layers(D: torch.nn.Module) -> Dict[str, ChainLayer]:
    """The CHAIN layers of D by the name of the conv they follow, e.g. {'b64.conv0': layer}."""
    return {name[:-len('.chain')]: module for name, module in D.named_modules()
        if isinstance(module, ChainLayer) and name.endswith('.chain')}

#----------------------------------------------------------------------------

def attach_chain(D: torch.nn.Module, variant: str = CHAIN_DEFAULTS['variant'], blocks=CHAIN_DEFAULTS['blocks'],
        tau: float = CHAIN_DEFAULTS['tau'], dp: float = CHAIN_DEFAULTS['dp'],
        lambda_0mr: float = CHAIN_DEFAULTS['lambda_0mr'], lambda_p0: float = CHAIN_DEFAULTS['lambda_p0'],
        start_kimg: float = CHAIN_DEFAULTS['start_kimg']) -> torch.nn.Module:
    """Put CHAIN after conv0, conv1 and skip of the selected D blocks and a controller on D.

    D: a `training.networks.Discriminator` (blocks `b<res>` for res in D.block_resolutions,
    each with conv0/conv1 and, for the resnet architecture, skip, all with a `chain`
    attribute). blocks: resolutions (None = every block); the 4x4 epilogue never gets CHAIN.
    Returns D (modified in place).
    """
    resolutions = list(getattr(D, 'block_resolutions', valid_block_resolutions(D.img_resolution)))
    kwargs = validate_chain_kwargs(variant=variant, blocks=blocks, tau=tau, dp=dp, lambda_0mr=lambda_0mr,
        lambda_p0=lambda_p0, start_kimg=start_kimg)
    selected = resolutions if kwargs['blocks'] is None else kwargs['blocks']
    bad = [res for res in selected if res not in resolutions]
    if bad:
        raise _option_error('blocks', f'among the D block resolutions {sorted(resolutions)} (the 4x4 epilogue '
            'never gets CHAIN)', bad, 'pick resolutions from that list')

    for res in selected:
        block = getattr(D, f'b{res}')
        for conv_name in ('conv0', 'conv1', 'skip'):
            conv = getattr(block, conv_name, None)
            if conv is None:
                continue  # 'orig' and 'skip' architectures have no skip conv in blocks.
            if not hasattr(conv, 'chain'):
                raise TypeError(f'{type(conv).__name__} b{res}.{conv_name} has no `chain` attribute; '
                    'CHAIN needs the Conv2dLayer seam of training/networks.py')
            conv.chain = ChainLayer(int(conv.weight.shape[0]), variant=kwargs['variant']).to(conv.weight.device)
    D.chain_controller = ChainController(tau=kwargs['tau'], dp=kwargs['dp'], lambda_0mr=kwargs['lambda_0mr'],
        lambda_p0=kwargs['lambda_p0'], start_kimg=kwargs['start_kimg']).to(next(D.parameters()).device)
    return D

#----------------------------------------------------------------------------

def chain_diagnostics(D: torch.nn.Module) -> Dict[str, float]:
    """Numbers for stats.jsonl: 'CHAIN/p', 'CHAIN/r' and 'CHAIN/psi/<block>.<conv>' (mean RMS).

    Returns {} for a D without CHAIN.
    """
    controller = getattr(D, 'chain_controller', None)
    if controller is None:
        return {}
    result = {'CHAIN/p': float(controller.p), 'CHAIN/r': float(controller.r)}
    for name, layer in chain_layers(D).items():
        result[f'CHAIN/psi/{name}'] = layer.mean_psi()
    return result

#----------------------------------------------------------------------------

def d_weight_grads(D: torch.nn.Module) -> List[torch.Tensor]:
    """The .grad of every D parameter named '*weight' that has one (detached), in parameter order."""
    return [param.grad.detach() for name, param in D.named_parameters()
        if name.endswith('weight') and param.grad is not None]

def d_weight_grad_norm(D: torch.nn.Module) -> float:
    """L2 norm of `d_weight_grads(D)` (0 where there are none).

    One host-device sync, however many parameters.
    """
    squares = [grad.float().square().sum() for grad in d_weight_grads(D)]
    return float(torch.stack(squares).sum().sqrt()) if squares else 0.0

#----------------------------------------------------------------------------
