"""StyleGAN2 generator and discriminator (Karras et al., "Analyzing and Improving the Image
Quality of StyleGAN", CVPR 2020, config F), as used by StyleGAN2-ADA (Karras et al., NeurIPS 2020).

The classes, constructor arguments and parameter/buffer names follow the official
StyleGAN2-ADA PyTorch release, so that its pickles load by name (see
../shared/compat/official_state_keys.json); the code itself is written from the papers.

Conventions:
    images  float32 [N, C, H, W], nominally in [-1, 1];
    z       float32 [N, z_dim];  c  float32 [N, c_dim] (c_dim may be 0: c is ignored);
    ws      float32 [N, num_ws, w_dim], one w per modulated layer (+ the last ToRGB).

Equalised learning rate (ProGAN, Karras et al. 2018, sec. 4.1): every weight is stored
N(0, 1) and scaled at run time by 1/sqrt(fan_in) (times an lr multiplier).

FP16: the `num_fp16_res` highest resolutions run in float16 only on CUDA; on CPU/MPS
everything runs in float32 (or float64 when given float64 inputs, for gradcheck).

CHAIN seam (Ni & Koniusz, CVPR 2024; the layer itself lives in training/chain.py): each
Conv2dLayer has a plain attribute `chain` (None by default) applied between its convolution
and its bias/activation; Discriminator.forward(img, c, stream, zmr_terms) passes the
controller's p, the stream name and the 0MR accumulator down to the blocks.
"""
import math
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from torch_utils import persistence
from torch_utils.ops import bias_act
from torch_utils.ops import conv2d_resample
from torch_utils.ops import fma
from torch_utils.ops import upfirdn2d

ARCHITECTURES = ('orig', 'skip', 'resnet')
NOISE_MODES = ('random', 'const', 'none')

#----------------------------------------------------------------------------
# Small helpers.

def _def_gain(activation: str) -> float:
    """The activation's default gain (sqrt(2) for (l)relu, 1 for linear), as bias_act uses it."""
    return float(bias_act.activation_funcs[activation].def_gain)

def _working_dtype(x: torch.Tensor, use_fp16: bool = False) -> torch.dtype:
    """float16 for fp16 layers on CUDA; float64 if given float64 (gradcheck); else float32."""
    if use_fp16 and x.device.type == 'cuda':
        return torch.float16
    return torch.float64 if x.dtype == torch.float64 else torch.float32

def _check_architecture(architecture: str, where: str) -> None:
    if architecture not in ARCHITECTURES:
        raise ValueError(f'{where}: unknown architecture {architecture!r}; expected one of {ARCHITECTURES}')

def _check_resolution(img_resolution: int, where: str) -> int:
    """Return log2(img_resolution); the resolution must be a power of two >= 4."""
    if not isinstance(img_resolution, (int, np.integer)) or img_resolution < 4 or (img_resolution & (img_resolution - 1)) != 0:
        raise ValueError(f'{where}: img_resolution must be a power of two >= 4 (4, 8, ..., 1024), got {img_resolution!r}; '
                         f'resize the dataset with dataset_tool.py --resolution')
    return int(np.log2(img_resolution))

def _channels_per_resolution(resolutions: Sequence[int], channel_base: int, channel_max: int, where: str) -> Dict[int, int]:
    """Feature maps per resolution: min(channel_base / res, channel_max)."""
    channels = {res: min(channel_base // res, channel_max) for res in resolutions}
    if min(channels.values()) < 1:
        raise ValueError(f'{where}: channel_base={channel_base} gives 0 channels at {max(resolutions)}x{max(resolutions)}; '
                         f'use channel_base >= {max(resolutions)}')
    return channels

def _check_labels(c: Optional[torch.Tensor], c_dim: int, batch_size: Optional[int], where: str) -> None:
    """c must be [N, c_dim]; with c_dim == 0 it may be None or [N, 0]."""
    if c_dim == 0:
        if c is not None and c.numel() > 0:
            raise ValueError(f'{where}: the network is unconditional (c_dim=0) but got labels c of shape {list(c.shape)}; '
                             f'pass c=None or an empty [N, 0] tensor, or build the network with c_dim={c.shape[-1]}')
        return
    if c is None or c.ndim != 2 or c.shape[1] != c_dim or (batch_size is not None and c.shape[0] != batch_size):
        got = None if c is None else list(c.shape)
        raise ValueError(f'{where}: expected labels c of shape [{batch_size if batch_size is not None else "N"}, {c_dim}], '
                         f'got {got}; pass one label vector (e.g. one-hot) of length c_dim per sample')

def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector to unit root-mean-square along `dim` (the mapping network's input norm)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()

#----------------------------------------------------------------------------
# Modulated convolution (StyleGAN2 paper, sec. 2.2, eqs. 1-3).

def modulated_conv2d(
    x:               torch.Tensor,          # Input features [N, I, H, W].
    weight:          torch.Tensor,          # Shared weight [O, I, kh, kw] (already gain-free: N(0,1)).
    styles:          torch.Tensor,          # Per-sample input scales [N, I].
    noise:           Optional[torch.Tensor] = None,  # Added after demodulation, broadcastable to the output.
    up:              int = 1,               # Integer upsampling factor.
    down:            int = 1,               # Integer downsampling factor.
    padding:         int = 0,               # Padding w.r.t. the (upsampled) input.
    resample_filter: Optional[torch.Tensor] = None,  # FIR filter for up/down (upfirdn2d.setup_filter).
    demodulate:      bool = True,           # Divide each output channel by the norm of its modulated weights.
    flip_weight:     bool = True,           # False = convolution (used with up > 1), True = correlation.
    fused_modconv:   bool = True,           # One grouped conv with per-sample weights, else scale-conv-scale.
) -> torch.Tensor:
    """y[n,o] = sum_i w[o,i] * s[n,i] * x[n,i] (a conv), optionally divided by
    sqrt(sum_{i,k} (w[o,i,k] s[n,i])^2 + 1e-8). Returns [N, O, H', W'] in x's dtype.

    The two paths are the same function: the fused one builds per-sample weights and runs one
    grouped conv; the non-fused one scales the input, runs one ordinary conv with the shared
    weight (one big GEMM: fastest on CPU) and scales the output.
    """
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if styles.shape != (batch_size, in_channels):
        raise ValueError(f'modulated_conv2d: styles must be [{batch_size}, {in_channels}], got {list(styles.shape)}')

    # In fp16 the modulated weights could overflow: rescale weight and styles first. With
    # demodulation any such scale cancels exactly, so the result is unchanged.
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / math.sqrt(in_channels * kh * kw) / weight.norm(float('inf'), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float('inf'), dim=1, keepdim=True)

    if not fused_modconv:
        dcoefs = None
        if demodulate:
            # sum_{i,k} (w[o,i,k] s[n,i])^2 = sum_i s[n,i]^2 * sum_k w[o,i,k]^2: an [N,I] x [I,O]
            # product instead of materialising the [N, O, I, kh, kw] modulated weights.
            dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, O]
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = conv2d_resample.conv2d_resample(x=x, w=weight.to(x.dtype), f=resample_filter, up=up, down=down,
                                            padding=padding, flip_weight=flip_weight)
        dcoefs = dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1) if dcoefs is not None else None
        noise = noise.to(x.dtype) if noise is not None else None
        if not torch.is_grad_enabled():
            # Inference: the conv output is a fresh tensor; scaling it in place saves a full-size
            # allocation per layer (large CPU allocations cost page faults, ~5x a pass).
            if dcoefs is not None:
                x.mul_(dcoefs)
            return x.add_(noise) if noise is not None else x
        if dcoefs is not None and noise is not None:
            return fma.fma(x, dcoefs, noise)
        if dcoefs is not None:
            return x * dcoefs
        if noise is not None:
            return x + noise
        return x

    # Fused: per-sample weights, the batch folded into the channel axis, one grouped conv.
    w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)  # [N, O, I, kh, kw]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(batch_size, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])                                  # [1, N*I, H, W]
    w = w.reshape(-1, in_channels, kh, kw).to(x.dtype)                  # [N*O, I, kh, kw]
    x = conv2d_resample.conv2d_resample(x=x, w=w, f=resample_filter, up=up, down=down,
                                        padding=padding, groups=batch_size, flip_weight=flip_weight)
    x = x.reshape(batch_size, -1, *x.shape[2:])                         # [N, O, H', W']
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x

#----------------------------------------------------------------------------

@persistence.persistent_class
class FullyConnectedLayer(torch.nn.Module):
    """Dense layer with equalised learning rate: y = act(x @ (W * g).T + b * lr), g = lr / sqrt(in).
    x: [N, in_features] -> [N, out_features]."""

    def __init__(self,
        in_features:    int,                # Number of input features.
        out_features:   int,                # Number of output features.
        bias:           bool  = True,       # Learn a bias?
        activation:     str   = 'linear',   # Any bias_act activation.
        lr_multiplier:  float = 1,          # Learning-rate multiplier (the mapping network uses 0.01).
        bias_init:      float = 0,          # Initial value of the (effective) bias.
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        # Stored as N(0, 1/lr^2) so that the effective weight W * lr / sqrt(in) starts at N(0, 1/in).
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The gain goes into addmm's alpha (y = b + gain * x @ W.T) rather than into a scaled
        # copy of W: no weight-sized temporary per call.
        w = self.weight.to(x.dtype).t()
        if self.bias is not None:
            b = self.bias.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
            x = torch.addmm(b.unsqueeze(0), x, w, alpha=self.weight_gain)
        else:
            x = x.matmul(w) * self.weight_gain
        if self.activation != 'linear':
            x = bias_act.bias_act(x, None, act=self.activation)
        return x

    def extra_repr(self) -> str:
        return f'in_features={self.in_features:d}, out_features={self.out_features:d}, activation={self.activation:s}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class Conv2dLayer(torch.nn.Module):
    """Conv with equalised lr, optional FIR up/down-sampling, bias + activation + clamp.
    x: [N, in_channels, H, W] -> [N, out_channels, H * up / down, W * up / down].

    CHAIN seam: `self.chain` (None, or a module set by training.chain.attach_chain) is
    applied to the raw conv output, before bias and activation, as chain(x, **chain_args).
    """

    def __init__(self,
        in_channels:     int,                       # Number of input channels.
        out_channels:    int,                       # Number of output channels.
        kernel_size:     int,                       # Width and height of the kernel.
        bias:            bool = True,               # Add a learned bias?
        activation:      str  = 'linear',           # Any bias_act activation.
        up:              int  = 1,                  # Integer upsampling factor.
        down:            int  = 1,                  # Integer downsampling factor.
        resample_filter: Sequence[float] = (1, 3, 3, 1),  # 1D FIR filter of the resampling (outer product -> 2D).
        conv_clamp:      Optional[float] = None,    # Clamp the output to +-X; None = no clamping.
        channels_last:   bool = False,              # Keep the weight in channels_last memory format?
        trainable:       bool = True,               # False = weight and bias are frozen buffers.
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = _def_gain(activation)
        self.chain = None  # Plain attribute (not a module) so a plain layer has exactly the official names.

        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        bias_value = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias_value) if bias_value is not None else None
        else:
            self.register_buffer('weight', weight)
            if bias_value is not None:
                self.register_buffer('bias', bias_value)
            else:
                self.bias = None

    def forward(self, x: torch.Tensor, gain: float = 1, chain_args: Optional[dict] = None) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        # Upsampling convs are transposed convs; flip_weight=False makes them the exact adjoint.
        x = conv2d_resample.conv2d_resample(x=x, w=w, f=self.resample_filter, up=self.up, down=self.down,
                                            padding=self.padding, flip_weight=(self.up == 1))
        if self.chain is not None:
            x = self.chain(x, **(chain_args or {}))
        b = self.bias.to(x.dtype) if self.bias is not None else None
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=act_clamp)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels:d}, out_channels={self.out_channels:d}, activation={self.activation:s}, '
                f'up={self.up}, down={self.down}')

#----------------------------------------------------------------------------

@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
    """z (+ embedded label c) -> w, broadcast to [N, num_ws, w_dim], with truncation towards w_avg.
    Also the label mapping of the conditional Discriminator (z_dim=0, num_ws=None, w_avg_beta=None)."""

    def __init__(self,
        z_dim:          int,                # Input latent (Z) dimensionality, 0 = no latent.
        c_dim:          int,                # Conditioning label (C) dimensionality, 0 = no label.
        w_dim:          int,                # Intermediate latent (W) dimensionality.
        num_ws:         Optional[int],      # Number of ws to output, None = return [N, w_dim].
        num_layers:     int   = 8,          # Number of fully-connected layers.
        embed_features: Optional[int] = None,  # Label embedding size, None = w_dim.
        layer_features: Optional[int] = None,  # Hidden layer width, None = w_dim.
        activation:     str   = 'lrelu',    # Hidden layers' activation.
        lr_multiplier:  float = 0.01,       # Learning-rate multiplier of the hidden layers.
        w_avg_beta:     Optional[float] = 0.995,  # Decay of the tracked mean of w, None = do not track.
    ):
        super().__init__()
        if z_dim == 0 and c_dim == 0:
            raise ValueError('MappingNetwork: z_dim and c_dim are both 0; nothing to map')
        if num_layers < 1:
            raise ValueError(f'MappingNetwork: num_layers must be >= 1, got {num_layers}')
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        widths = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(widths[idx], widths[idx + 1], activation=activation, lr_multiplier=lr_multiplier)
            setattr(self, f'fc{idx}', layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self,
        z:                  Optional[torch.Tensor],   # [N, z_dim], or None when z_dim == 0.
        c:                  Optional[torch.Tensor],   # [N, c_dim], or None / [N, 0] when c_dim == 0.
        truncation_psi:     float = 1,                # 1 = no truncation, 0 = every w is w_avg.
        truncation_cutoff:  Optional[int] = None,     # Truncate only ws[:, :cutoff]; None = all.
        skip_w_avg_update:  bool = False,             # Do not update w_avg even in training mode.
    ) -> torch.Tensor:
        """Returns ws [N, num_ws, w_dim] (or [N, w_dim] if num_ws is None), float32."""
        batch_size = self._check_inputs(z, c)
        dtype = _working_dtype(z if self.z_dim > 0 else c)
        parts = []
        if self.z_dim > 0:
            parts.append(normalize_2nd_moment(z.to(dtype)))
        if self.c_dim > 0:
            parts.append(normalize_2nd_moment(self.embed(c.to(dtype))))
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)

        # Track the mean of w for truncation (exponential moving average over training batches).
        if self.w_avg_beta is not None and self.num_ws is not None and self.training and not skip_w_avg_update:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).to(self.w_avg.dtype).lerp(self.w_avg, self.w_avg_beta))

        if self.num_ws is not None:
            x = x.unsqueeze(1).expand(batch_size, self.num_ws, self.w_dim)
        if truncation_psi != 1:
            x = self._truncate(x, truncation_psi, truncation_cutoff)
        elif self.num_ws is not None:
            x = x.contiguous()  # Own memory: callers may write into ws (e.g. style mixing).
        return x

    def _check_inputs(self, z: Optional[torch.Tensor], c: Optional[torch.Tensor]) -> int:
        batch_size = None
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f'MappingNetwork: expected z of shape [N, {self.z_dim}], got '
                                 f'{None if z is None else list(z.shape)}; draw it e.g. as torch.randn([N, {self.z_dim}])')
            batch_size = z.shape[0]
        _check_labels(c, self.c_dim, batch_size, 'MappingNetwork')
        return batch_size if batch_size is not None else c.shape[0]

    def _truncate(self, x: torch.Tensor, psi: float, cutoff: Optional[int]) -> torch.Tensor:
        """w' = w_avg + psi * (w - w_avg), on all ws or on ws[:, :cutoff] only."""
        if self.w_avg_beta is None or self.num_ws is None:
            raise ValueError('MappingNetwork: truncation needs a tracked w_avg (num_ws and w_avg_beta set)')
        w_avg = self.w_avg.to(x.dtype)
        if cutoff is None or cutoff >= self.num_ws:
            return w_avg.lerp(x, psi)
        if cutoff < 0:
            raise ValueError(f'truncation_cutoff must be >= 0 or None, got {cutoff}')
        return torch.cat([w_avg.lerp(x[:, :cutoff], psi), x[:, cutoff:]], dim=1)

    def extra_repr(self) -> str:
        return f'z_dim={self.z_dim:d}, c_dim={self.c_dim:d}, w_dim={self.w_dim:d}, num_ws={self.num_ws}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class SynthesisLayer(torch.nn.Module):
    """Modulated 3x3 conv (optionally upsampling 2x) + per-pixel noise + bias + lrelu.
    x: [N, in_channels, R / up, R / up], w: [N, w_dim] -> [N, out_channels, R, R]."""

    def __init__(self,
        in_channels:     int,                       # Number of input channels.
        out_channels:    int,                       # Number of output channels.
        w_dim:           int,                       # Intermediate latent (W) dimensionality.
        resolution:      int,                       # Output resolution R.
        kernel_size:     int  = 3,                  # Convolution kernel size.
        up:              int  = 1,                  # Integer upsampling factor.
        use_noise:       bool = True,               # Add per-pixel noise?
        activation:      str  = 'lrelu',            # Any bias_act activation.
        resample_filter: Sequence[float] = (1, 3, 3, 1),  # 1D FIR filter of the upsampling.
        conv_clamp:      Optional[float] = None,    # Clamp the output to +-X; None = no clamping.
        channels_last:   bool = False,              # Keep the weight in channels_last memory format?
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.act_gain = _def_gain(activation)

        # Styles start at 1 (bias_init=1): the layer initially sees its input unmodulated.
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        if use_noise:
            self.register_buffer('noise_const', torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = 'random',
                fused_modconv: bool = True, gain: float = 1) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f'noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}')
        styles = self.affine(w)  # [N, in_channels]

        noise = None
        if self.use_noise and noise_mode == 'random':
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device, dtype=x.dtype)
            noise = noise * self.noise_strength.to(x.dtype)
        elif self.use_noise and noise_mode == 'const':
            noise = self.noise_const.to(x.dtype) * self.noise_strength.to(x.dtype)

        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=(self.up == 1), fused_modconv=fused_modconv)
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=act_clamp)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels:d}, out_channels={self.out_channels:d}, w_dim={self.w_dim:d}, '
                f'resolution={self.resolution:d}, up={self.up}, activation={self.activation:s}')

#----------------------------------------------------------------------------

@persistence.persistent_class
class ToRGBLayer(torch.nn.Module):
    """Modulated 1x1 conv without demodulation, + bias: features [N, in, H, W] -> image [N, img_channels, H, W]."""

    def __init__(self,
        in_channels:   int,                         # Number of input channels.
        out_channels:  int,                         # Number of image channels.
        w_dim:         int,                         # Intermediate latent (W) dimensionality.
        kernel_size:   int  = 1,                    # Convolution kernel size.
        conv_clamp:    Optional[float] = None,      # Clamp the output to +-X; None = no clamping.
        channels_last: bool = False,                # Keep the weight in channels_last memory format?
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        # Without demodulation the equalised-lr gain has to be applied explicitly (to the styles).
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        return f'in_channels={self.in_channels:d}, out_channels={self.out_channels:d}, w_dim={self.w_dim:d}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class SynthesisBlock(torch.nn.Module):
    """One resolution of the synthesis network: (const | conv0 with 2x up) -> conv1 -> ToRGB.
    forward(x [N, in, R/2, R/2] or None, img [N, C, R/2, R/2] or None, ws [N, num_conv + num_torgb, w_dim])
    -> (x [N, out, R, R], img [N, C, R, R] float32 or None)."""

    def __init__(self,
        in_channels:         int,               # Number of input channels, 0 = first block (learned const).
        out_channels:        int,               # Number of output channels.
        w_dim:               int,               # Intermediate latent (W) dimensionality.
        resolution:          int,               # Resolution of this block.
        img_channels:        int,               # Number of output image channels.
        is_last:             bool,              # Is this the last block?
        architecture:        str  = 'skip',     # 'orig', 'skip' or 'resnet'.
        resample_filter:     Sequence[float] = (1, 3, 3, 1),  # 1D FIR filter of the upsampling.
        conv_clamp:          Optional[float] = None,  # Clamp the outputs of the convs to +-X; None = no clamping.
        use_fp16:            bool = False,      # Run this block in float16 (CUDA only)?
        fp16_channels_last:  bool = False,      # Use channels_last memory format with fp16?
        **layer_kwargs,                         # Extra SynthesisLayer arguments.
    ):
        super().__init__()
        _check_architecture(architecture, 'SynthesisBlock')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(list(resample_filter)))
        self.num_conv = 0
        self.num_torgb = 0

        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp,
                                        channels_last=self.channels_last, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                    conv_clamp=conv_clamp, channels_last=self.channels_last, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == 'skip':
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                    channels_last=self.channels_last)
            self.num_torgb += 1
        if in_channels != 0 and architecture == 'resnet':
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter, channels_last=self.channels_last)

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], ws: torch.Tensor,
                force_fp32: bool = False, fused_modconv: Optional[bool] = None, **layer_kwargs):
        w_iter = iter(ws.unbind(dim=1))
        dtype = _working_dtype(ws, self.use_fp16 and not force_fp32)
        memory_format = torch.channels_last if self.channels_last and dtype == torch.float16 else torch.contiguous_format
        if fused_modconv is None:
            fused_modconv = self._default_fused_modconv(ws, dtype)

        # Input: the learned constant, or the previous block's features.
        if self.in_channels == 0:
            # repeat, not expand: a view of a parameter made under no_grad still claims requires_grad
            # without a grad_fn, which breaks module hooks (e.g. FlopCounterMode); the copy is 4x4.
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1]).to(memory_format=memory_format)
        else:
            x = x.to(dtype=dtype, memory_format=memory_format)

        # Main layers.
        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        elif self.architecture == 'resnet':
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, gain=np.sqrt(0.5), **layer_kwargs)
            x = y + x
        else:
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)

        # Image: upsample the running image and add this block's ToRGB output.
        if img is not None:
            img = upfirdn2d.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == 'skip':
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=_working_dtype(ws), memory_format=torch.contiguous_format)
            img = img + y if img is not None else y
        return x, img

    def _default_fused_modconv(self, ws: torch.Tensor, dtype: torch.dtype) -> bool:
        """On CUDA, the grouped conv in inference (as officially); on CPU, scale-conv-scale
        (one large GEMM with the shared weight beats N small ones, and keeps autograd cheap)."""
        if ws.device.type != 'cuda':
            return False
        return (not self.training) and (dtype == torch.float32 or ws.shape[0] == 1)

    def extra_repr(self) -> str:
        return f'resolution={self.resolution:d}, architecture={self.architecture:s}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    """ws [N, num_ws, w_dim] -> image float32 [N, img_channels, R, R] (unbounded, nominally [-1, 1])."""

    def __init__(self,
        w_dim:          int,            # Intermediate latent (W) dimensionality.
        img_resolution: int,            # Output image resolution (power of two >= 4).
        img_channels:   int,            # Number of color channels.
        channel_base:   int = 32768,    # Overall multiplier for the number of channels.
        channel_max:    int = 512,      # Maximum number of channels in any layer.
        num_fp16_res:   int = 0,        # Use FP16 for the N highest resolutions (CUDA only).
        **block_kwargs,                 # Arguments for SynthesisBlock (architecture, conv_clamp, ...).
    ):
        super().__init__()
        log2 = _check_resolution(img_resolution, 'SynthesisNetwork')
        _check_architecture(block_kwargs.get('architecture', 'skip'), 'SynthesisNetwork')
        if img_channels < 1:
            raise ValueError(f'SynthesisNetwork: img_channels must be >= 1, got {img_channels}')
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = log2
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        channels = _channels_per_resolution(self.block_resolutions, channel_base, channel_max, 'SynthesisNetwork')
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=(res == img_resolution),
                                   use_fp16=(res >= fp16_resolution), **block_kwargs)
            # A block's ToRGB shares its w with the next block's first conv; only the last one adds a w.
            self.num_ws += block.num_conv + (block.num_torgb if res == img_resolution else 0)
            setattr(self, f'b{res}', block)

    def forward(self, ws: torch.Tensor, **block_kwargs) -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f'SynthesisNetwork: expected ws of shape [N, {self.num_ws}, {self.w_dim}], '
                             f'got {list(ws.shape)}; get them from G.mapping(z, c)')
        ws = ws.to(_working_dtype(ws))
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, block_ws, **block_kwargs)
        return img

    def extra_repr(self) -> str:
        return f'w_dim={self.w_dim:d}, num_ws={self.num_ws:d}, img_resolution={self.img_resolution:d}, img_channels={self.img_channels:d}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class Generator(torch.nn.Module):
    """StyleGAN2 generator: z [N, z_dim], c [N, c_dim] -> images float32 [N, img_channels, R, R]."""

    def __init__(self,
        z_dim:              int,        # Input latent (Z) dimensionality.
        c_dim:              int,        # Conditioning label (C) dimensionality, 0 = unconditional.
        w_dim:              int,        # Intermediate latent (W) dimensionality.
        img_resolution:     int,        # Output resolution (power of two >= 4).
        img_channels:       int,        # Number of output color channels.
        mapping_kwargs:     dict = {},  # Arguments for MappingNetwork.
        synthesis_kwargs:   dict = {},  # Arguments for SynthesisNetwork.
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(self,
        z:                  torch.Tensor,               # [N, z_dim] latents.
        c:                  Optional[torch.Tensor],     # [N, c_dim] labels (None / [N, 0] if unconditional).
        truncation_psi:     float = 1,                  # 1 = no truncation.
        truncation_cutoff:  Optional[int] = None,       # Truncate only the first ws; None = all.
        noise_mode:         str = 'random',             # 'random', 'const' or 'none'.
        force_fp32:         bool = False,               # Never use fp16 (it is never used off CUDA anyway).
        **synthesis_kwargs,                             # E.g. fused_modconv.
    ) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, force_fp32=force_fp32, **synthesis_kwargs)

#----------------------------------------------------------------------------

@persistence.persistent_class
class DiscriminatorBlock(torch.nn.Module):
    """One resolution of the discriminator: (fromrgb) -> conv0 -> conv1 (2x down) (+ 1x1 skip, resnet).
    forward(x [N, in, R, R] or None, img [N, C, R, R] or None) -> (x [N, out, R/2, R/2], img or None)."""

    def __init__(self,
        in_channels:         int,               # Number of input channels, 0 = first block.
        tmp_channels:        int,               # Number of intermediate channels.
        out_channels:        int,               # Number of output channels.
        resolution:          int,               # Resolution of this block.
        img_channels:        int,               # Number of input color channels.
        first_layer_idx:     int,               # Index of the first layer (for freeze_layers).
        architecture:        str  = 'resnet',   # 'orig', 'skip' or 'resnet'.
        activation:          str  = 'lrelu',    # Any bias_act activation.
        resample_filter:     Sequence[float] = (1, 3, 3, 1),  # 1D FIR filter of the downsampling.
        conv_clamp:          Optional[float] = None,  # Clamp the outputs of the convs to +-X; None = no clamping.
        use_fp16:            bool = False,      # Run this block in float16 (CUDA only)?
        fp16_channels_last:  bool = False,      # Use channels_last memory format with fp16?
        freeze_layers:       int  = 0,          # Freeze (make buffers of) the first layers of the whole D.
    ):
        super().__init__()
        _check_architecture(architecture, 'DiscriminatorBlock')
        if in_channels not in (0, tmp_channels):
            raise ValueError(f'DiscriminatorBlock: in_channels must be 0 (first block) or tmp_channels={tmp_channels}, got {in_channels}')
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(list(resample_filter)))

        # Layers are numbered through the whole D in creation order; the first `freeze_layers` are frozen.
        self.num_layers = 0
        def layer(*args, **kwargs) -> Conv2dLayer:
            trainable = (first_layer_idx + self.num_layers) >= freeze_layers
            self.num_layers += 1
            return Conv2dLayer(*args, trainable=trainable, channels_last=self.channels_last, **kwargs)

        if in_channels == 0 or architecture == 'skip':
            self.fromrgb = layer(img_channels, tmp_channels, kernel_size=1, activation=activation, conv_clamp=conv_clamp)
        self.conv0 = layer(tmp_channels, tmp_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp)
        self.conv1 = layer(tmp_channels, out_channels, kernel_size=3, activation=activation, down=2,
                           resample_filter=resample_filter, conv_clamp=conv_clamp)
        if architecture == 'resnet':
            self.skip = layer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2, resample_filter=resample_filter)

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], force_fp32: bool = False,
                chain_args: Optional[dict] = None):
        ref = x if x is not None else img
        dtype = _working_dtype(ref, self.use_fp16 and not force_fp32)
        memory_format = torch.channels_last if self.channels_last and dtype == torch.float16 else torch.contiguous_format

        # Input: add FromRGB of the image (first block, or every block in 'skip').
        if x is not None:
            x = x.to(dtype=dtype, memory_format=memory_format)
        if self.in_channels == 0 or self.architecture == 'skip':
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = upfirdn2d.downsample2d(img, self.resample_filter) if self.architecture == 'skip' else None

        # Main layers; CHAIN (when attached) acts inside conv0, conv1 and skip.
        if self.architecture == 'resnet':
            y = self.skip(x, gain=np.sqrt(0.5), chain_args=chain_args)
            x = self.conv0(x, chain_args=chain_args)
            x = self.conv1(x, gain=np.sqrt(0.5), chain_args=chain_args)
            x = y + x
        else:
            x = self.conv0(x, chain_args=chain_args)
            x = self.conv1(x, chain_args=chain_args)
        return x, img

    def extra_repr(self) -> str:
        return f'resolution={self.resolution:d}, architecture={self.architecture:s}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class MinibatchStdLayer(torch.nn.Module):
    """Appends the minibatch standard deviation (ProGAN, sec. 3) as extra feature maps.

    Samples are split into groups of `group_size` taking every (N / G)-th sample (sample n is in
    group n mod N/G); for each group the std over its members is averaged over each of the
    `num_channels` channel slices and all pixels. x: [N, C, H, W] -> [N, C + num_channels, H, W].
    """

    def __init__(self, group_size: Optional[int], num_channels: int = 1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        G = min(self.group_size, N) if self.group_size is not None else N
        F = self.num_channels
        if N % G != 0:
            raise ValueError(f'MinibatchStdLayer: batch size {N} is not divisible by the group size {G}; '
                             f'use a per-GPU batch that is a multiple of mbstd_group_size ({self.group_size})')
        if C % F != 0:
            raise ValueError(f'MinibatchStdLayer: {C} channels are not divisible by num_channels={F}')
        y = x.reshape(G, N // G, F, C // F, H, W)   # [G, M, F, c, H, W]: member g of group m is sample g*M + m.
        y = y - y.mean(dim=0)                       # Deviation from the group mean.
        y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [M, F, c, H, W] std over the group.
        y = y.mean(dim=[2, 3, 4])                   # [M, F]
        y = y.reshape(-1, F, 1, 1).repeat(G, 1, H, W)  # [N, F, H, W]
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f'group_size={self.group_size}, num_channels={self.num_channels:d}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class DiscriminatorEpilogue(torch.nn.Module):
    """The 4x4 head: (fromrgb) -> mbstd -> conv -> fc -> out (-> projection onto cmap).
    x [N, in_channels, 4, 4] -> logits [N, 1] (or [N, cmap_dim] before projection). Always fp32."""

    def __init__(self,
        in_channels:        int,            # Number of input channels.
        cmap_dim:           int,            # Dimensionality of the mapped label, 0 = unconditional.
        resolution:         int,            # Resolution of this block (4).
        img_channels:       int,            # Number of input color channels.
        architecture:       str   = 'resnet',  # 'orig', 'skip' or 'resnet'.
        mbstd_group_size:   Optional[int] = 4,  # Group size of the minibatch std, None = whole batch.
        mbstd_num_channels: int   = 1,      # Number of std features, 0 = no minibatch std.
        activation:         str   = 'lrelu',   # Any bias_act activation.
        conv_clamp:         Optional[float] = None,  # Clamp the conv output to +-X; None = no clamping.
    ):
        super().__init__()
        _check_architecture(architecture, 'DiscriminatorEpilogue')
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture

        if architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(group_size=mbstd_group_size, num_channels=mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, img: Optional[torch.Tensor], cmap: Optional[torch.Tensor],
                force_fp32: bool = False) -> torch.Tensor:
        dtype = _working_dtype(x)
        x = x.to(dtype=dtype, memory_format=torch.contiguous_format)
        if self.architecture == 'skip':
            x = x + self.fromrgb(img.to(dtype=dtype, memory_format=torch.contiguous_format))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        # Projection discriminator (Miyato & Koyama 2018): logit = <out, cmap> / sqrt(cmap_dim).
        if self.cmap_dim > 0:
            x = (x * cmap.to(x.dtype)).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        return x

    def extra_repr(self) -> str:
        return f'resolution={self.resolution:d}, architecture={self.architecture:s}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class Discriminator(torch.nn.Module):
    """StyleGAN2 discriminator: images [N, img_channels, R, R] (+ labels [N, c_dim]) -> logits float32 [N, 1].

    With `chain_kwargs` (a dict for training.chain.attach_chain) CHAIN layers are attached to the
    convs of the selected blocks; forward's `stream` ('real', 'fake_d', 'fake_g' or None for
    evaluation) and `zmr_terms` (a list collecting each CHAIN layer's 0MR term) go to them.
    """

    def __init__(self,
        c_dim:              int,                # Conditioning label (C) dimensionality, 0 = unconditional.
        img_resolution:     int,                # Input resolution (power of two >= 4).
        img_channels:       int,                # Number of input color channels.
        architecture:       str  = 'resnet',    # 'orig', 'skip' or 'resnet'.
        channel_base:       int  = 32768,       # Overall multiplier for the number of channels.
        channel_max:        int  = 512,         # Maximum number of channels in any layer.
        num_fp16_res:       int  = 0,           # Use FP16 for the N highest resolutions (CUDA only).
        conv_clamp:         Optional[float] = None,  # Clamp the outputs of the convs to +-X; None = no clamping.
        cmap_dim:           Optional[int] = None,    # Mapped label size, None = channels at 4x4.
        block_kwargs:       dict = {},          # Arguments for DiscriminatorBlock.
        mapping_kwargs:     dict = {},          # Arguments for the label MappingNetwork.
        epilogue_kwargs:    dict = {},          # Arguments for DiscriminatorEpilogue.
        chain_kwargs:       Optional[dict] = None,  # Arguments for training.chain.attach_chain, None = no CHAIN.
    ):
        super().__init__()
        log2 = _check_resolution(img_resolution, 'Discriminator')
        _check_architecture(architecture, 'Discriminator')
        if img_channels < 1:
            raise ValueError(f'Discriminator: img_channels must be >= 1, got {img_channels}')
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = log2
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(log2, 2, -1)]
        channels = _channels_per_resolution(self.block_resolutions + [4], channel_base, channel_max, 'Discriminator')
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0
        self.cmap_dim = cmap_dim

        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(channels[res] if res < img_resolution else 0, channels[res], channels[res // 2],
                                       resolution=res, first_layer_idx=layer_idx, use_fp16=(res >= fp16_resolution),
                                       **block_kwargs, **common)
            setattr(self, f'b{res}', block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4, **epilogue_kwargs, **common)

        self.chain_controller = None
        if chain_kwargs is not None:
            from training.chain import attach_chain  # Imported here: training.chain imports this module.
            attach_chain(self, **chain_kwargs)

    def forward(self,
        img:        torch.Tensor,               # [N, img_channels, R, R] images, nominally in [-1, 1].
        c:          Optional[torch.Tensor],     # [N, c_dim] labels (None / [N, 0] if unconditional).
        stream:     Optional[str] = None,       # CHAIN stream: 'real', 'fake_d', 'fake_g'; None = evaluation.
        zmr_terms:  Optional[List[torch.Tensor]] = None,  # CHAIN layers append their 0MR terms here.
        **block_kwargs,                         # E.g. force_fp32.
    ) -> torch.Tensor:
        """Returns logits [N, 1] (float32, or float64 for float64 input)."""
        self._check_inputs(img, c)
        chain_args = None
        if self.chain_controller is not None:
            chain_args = dict(p=self.chain_controller.p, stream=stream, zmr_terms=zmr_terms)
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f'b{res}')(x, img, chain_args=chain_args, **block_kwargs)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)

    def _check_inputs(self, img: torch.Tensor, c: Optional[torch.Tensor]) -> None:
        expected = [self.img_channels, self.img_resolution, self.img_resolution]
        if img.ndim != 4 or list(img.shape[1:]) != expected:
            raise ValueError(f'Discriminator: expected images of shape [N, {", ".join(map(str, expected))}], '
                             f'got {list(img.shape)}; the dataset resolution/channels must match the network '
                             f'(built for {self.img_resolution}x{self.img_resolution}, {self.img_channels} channels)')
        _check_labels(c, self.c_dim, img.shape[0], 'Discriminator')

    def extra_repr(self) -> str:
        return f'c_dim={self.c_dim:d}, img_resolution={self.img_resolution:d}, img_channels={self.img_channels:d}'

#----------------------------------------------------------------------------
