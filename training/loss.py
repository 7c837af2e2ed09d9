"""The StyleGAN2 loss with CHAIN's 0MR term, organised in training phases.

Implements, after Karras et al., "Analyzing and Improving the Image Quality of StyleGAN"
(CVPR 2020) and "Training Generative Adversarial Networks with Limited Data" (NeurIPS
2020), and DESIGN §5 and §7:

- the non-saturating logistic loss: G minimises softplus(-D(G(z))), D minimises
  softplus(D(G(z))) + softplus(-D(x));
- lazy R1 on reals: gamma / 2 * ||grad_x D(aug(x))||^2, gradient taken with respect to
  the un-augmented image (the loop scales the phase by its interval through `gain`);
- path-length regularisation of G: (||J_w^T y|| - a)^2 with y ~ N(0, I) / sqrt(H W), a the
  running mean of the lengths (decay pl_decay), on a batch shrunk by pl_batch_shrink;
- style mixing: with probability style_mixing_prob per batch, the ws from a random cutoff
  in [1, num_ws) on come from a second latent;
- CHAIN (Ni & Koniusz, CVPR 2024): D is called separately per stream ('real', 'fake_d',
  'fake_g'), and in D's main step zmr_weight() * (sum of the layers' 0MR terms) is added
  to D's loss on each of the real and fake streams (never in G's step).

Phases (the loop's names): 'Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth'.
"""

import contextlib
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import training_stats
from torch_utils.ops import conv2d_gradfix

PHASES = ('Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth')

#----------------------------------------------------------------------------

@contextlib.contextmanager
def _frozen(module: torch.nn.Module) -> Iterator[None]:
    """For the duration, `module`'s parameters do not require grad; then restore the flags.

    A phase must accumulate into its own network only, even if the caller left the other
    one trainable (the official loop toggles requires_grad per phase; this makes the loss
    safe without it). The phase's own network is left as the caller set it, so parameters
    frozen on purpose stay frozen.
    """
    saved = [(param, param.requires_grad) for param in module.parameters()]
    for param, _ in saved:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param, flag in saved:
            param.requires_grad_(flag)

#----------------------------------------------------------------------------

class StyleGAN2Loss:
    """Accumulates the gradients of one phase into G's or D's parameters.

    G: a `training.networks.Generator` (or any module with .mapping, .synthesis, .z_dim,
    .num_ws). D: a `training.networks.Discriminator` called as D(img, c, stream=...,
    zmr_terms=...) -> logits [N, 1]; its `chain_controller` (or None) gives the 0MR weight
    and receives the real logits. augment_pipe: any module images -> images (or None),
    applied to everything D sees. ada: an object with .observe(real_logits) (or None).
    """

    def __init__(self,
        device: torch.device,
        G: torch.nn.Module,
        D: torch.nn.Module,
        augment_pipe: Optional[torch.nn.Module] = None,
        r1_gamma: float = 10,               # R1 weight gamma; 0 disables R1.
        style_mixing_prob: float = 0.9,     # Probability per batch of mixing two latents.
        pl_weight: float = 2,               # Path-length regularisation weight; 0 disables it.
        pl_batch_shrink: int = 2,           # The PL batch is the batch divided by this.
        pl_decay: float = 0.01,             # Decay of the running mean of path lengths.
        ada=None,                           # Adaptive-p helper for ADA (observe(real_logits)), or None.
    ):
        if r1_gamma < 0 or pl_weight < 0:
            raise ValueError(f'StyleGAN2Loss: r1_gamma and pl_weight must be >= 0, got {r1_gamma} and {pl_weight}')
        if not 0 <= style_mixing_prob <= 1:
            raise ValueError(f'StyleGAN2Loss: style_mixing_prob must be in [0, 1], got {style_mixing_prob}')
        if int(pl_batch_shrink) < 1:
            raise ValueError(f'StyleGAN2Loss: pl_batch_shrink must be an int >= 1, got {pl_batch_shrink}')
        self.device = torch.device(device)
        self.G = G
        self.D = D
        self.augment_pipe = augment_pipe
        self.r1_gamma = float(r1_gamma)
        self.style_mixing_prob = float(style_mixing_prob)
        self.pl_weight = float(pl_weight)
        self.pl_batch_shrink = int(pl_batch_shrink)
        self.pl_decay = float(pl_decay)
        self.ada = ada
        self.pl_mean = torch.zeros([], device=self.device)  # Running mean of path lengths (resume state).

    #------------------------------------------------------------------------

    def run_G(self, z: torch.Tensor, c: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """z [N, z_dim], c [N, c_dim] -> (images [N, C, H, W] float32, ws [N, num_ws, w_dim])."""
        ws = self.G.mapping(z, c)
        num_ws = ws.shape[1]
        if self.style_mixing_prob > 0 and num_ws > 1 and float(torch.rand([])) < self.style_mixing_prob:
            cutoff = int(torch.randint(1, num_ws, []))
            ws_mix = self.G.mapping(torch.randn_like(z), c, skip_w_avg_update=True)
            ws = torch.cat([ws[:, :cutoff], ws_mix[:, cutoff:]], dim=1)
        img = self.G.synthesis(ws)
        return img, ws

    def run_D(self, img: torch.Tensor, c: torch.Tensor, stream: str,
            zmr_terms: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        """Augment (if a pipe is set) and call D on one stream -> logits [N, 1]."""
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c, stream=stream, zmr_terms=zmr_terms)

    def _chain_controller(self):
        return getattr(self.D, 'chain_controller', None)

    def _zmr_loss(self, zmr_terms: List[torch.Tensor]) -> Optional[torch.Tensor]:
        """zmr_weight() * sum of the 0MR terms of one stream, or None without CHAIN."""
        controller = self._chain_controller()
        if controller is None or len(zmr_terms) == 0:
            return None
        return controller.zmr_weight() * torch.stack(zmr_terms).sum()

    #------------------------------------------------------------------------

    def accumulate_gradients(self, phase: str, real_img: torch.Tensor, real_c: torch.Tensor,
            gen_z: torch.Tensor, gen_c: torch.Tensor, gain: float, cur_nimg: int) -> None:
        """Backpropagate the phase's losses, scaled by gain, into the phase's network.

        real_img: [N, C, H, W] float32 in [-1, 1]; real_c: [N, c_dim]; gen_z: [N, z_dim];
        gen_c: [N, c_dim]. cur_nimg is accepted for interface compatibility.
        """
        if phase not in PHASES:
            raise ValueError(f'StyleGAN2Loss: unknown phase {phase!r}; expected one of {PHASES}')
        do_Gmain = phase in ('Gmain', 'Gboth')
        do_Dmain = phase in ('Dmain', 'Dboth')
        do_Gpl = phase in ('Greg', 'Gboth') and self.pl_weight != 0
        do_Dr1 = phase in ('Dreg', 'Dboth') and self.r1_gamma != 0

        if do_Gmain or do_Gpl:
            with _frozen(self.D):
                if do_Gmain:
                    self._accumulate_Gmain(gen_z, gen_c, gain)
                if do_Gpl:
                    self._accumulate_Gpl(gen_z, gen_c, gain)
        if do_Dmain or do_Dr1:
            with _frozen(self.G):
                fake = self._accumulate_Dgen(gen_z, gen_c, gain) if do_Dmain else None
                self._accumulate_Dreal(real_img, real_c, gain, do_Dmain, do_Dr1, fake)

    #------------------------------------------------------------------------

    def _accumulate_Gmain(self, gen_z, gen_c, gain):
        # Gmain: maximise D's logits on fakes (stream 'fake_g', no 0MR).
        gen_img, _ws = self.run_G(gen_z, gen_c)
        gen_logits = self.run_D(gen_img, gen_c, stream='fake_g')
        training_stats.report('Loss/scores/fake', gen_logits)
        training_stats.report('Loss/signs/fake', gen_logits.sign())
        loss_Gmain = F.softplus(-gen_logits)  # -log(sigmoid(gen_logits))
        training_stats.report('Loss/G/loss', loss_Gmain)
        loss_Gmain.mean().mul(gain).backward()

    def _accumulate_Gpl(self, gen_z, gen_c, gain):
        # Greg: path-length regularisation on a shrunk batch.
        batch_size = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
        gen_img, gen_ws = self.run_G(gen_z[:batch_size], gen_c[:batch_size])
        pl_noise = torch.randn_like(gen_img) / np.sqrt(gen_img.shape[2] * gen_img.shape[3])
        with conv2d_gradfix.no_weight_gradients():
            (pl_grads,) = torch.autograd.grad(outputs=[(gen_img * pl_noise).sum()], inputs=[gen_ws],
                create_graph=True, only_inputs=True)
        pl_lengths = pl_grads.square().sum(dim=2).mean(dim=1).sqrt()  # [N]
        pl_mean = self.pl_mean.lerp(pl_lengths.mean(), self.pl_decay)
        self.pl_mean.copy_(pl_mean.detach())
        pl_penalty = (pl_lengths - pl_mean).square()
        training_stats.report('Loss/pl_penalty', pl_penalty)
        loss_Gpl = pl_penalty * self.pl_weight
        training_stats.report('Loss/G/reg', loss_Gpl)
        loss_Gpl.mean().mul(gain).backward()

    def _accumulate_Dgen(self, gen_z, gen_c, gain) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        # Dmain, fake stream: minimise D's logits on fakes, plus 0MR on this stream.
        # Returns the per-sample loss and the 0MR loss (detached) for the reports.
        with torch.no_grad():
            gen_img, _ws = self.run_G(gen_z, gen_c)
        zmr_terms: List[torch.Tensor] = []
        gen_logits = self.run_D(gen_img, gen_c, stream='fake_d', zmr_terms=zmr_terms)
        training_stats.report('Loss/scores/fake', gen_logits)
        training_stats.report('Loss/signs/fake', gen_logits.sign())
        loss_Dgen = F.softplus(gen_logits)  # -log(1 - sigmoid(gen_logits))
        loss = loss_Dgen.mean()
        zmr = self._zmr_loss(zmr_terms)
        if zmr is not None:
            loss = loss + zmr
        loss.mul(gain).backward()
        return loss_Dgen.detach(), (None if zmr is None else zmr.detach())

    def _accumulate_Dreal(self, real_img, real_c, gain, do_Dmain, do_Dr1, fake):
        # Dmain and/or Dreg, real stream: maximise D's logits on reals; R1 on the same pass.
        real_img_tmp = real_img.detach().requires_grad_(do_Dr1)
        zmr_terms: List[torch.Tensor] = []
        real_logits = self.run_D(real_img_tmp, real_c, stream='real', zmr_terms=zmr_terms if do_Dmain else None)
        training_stats.report('Loss/scores/real', real_logits)
        training_stats.report('Loss/signs/real', real_logits.sign())

        loss = real_logits.new_zeros([])
        if do_Dmain:
            loss_Dreal = F.softplus(-real_logits)  # -log(sigmoid(real_logits))
            loss_Dgen, zmr_fake = fake
            training_stats.report('Loss/D/loss', loss_Dgen + loss_Dreal)
            loss = loss + loss_Dreal.mean()
            zmr = self._zmr_loss(zmr_terms)
            if zmr is not None:
                loss = loss + zmr
                training_stats.report('Loss/D/0mr', zmr.detach() + (0 if zmr_fake is None else zmr_fake))
            if self.ada is not None:
                self.ada.observe(real_logits.detach())
            controller = self._chain_controller()
            if controller is not None:
                controller.observe(real_logits.detach())

        if do_Dr1:
            with conv2d_gradfix.no_weight_gradients():
                (r1_grads,) = torch.autograd.grad(outputs=[real_logits.sum()], inputs=[real_img_tmp],
                    create_graph=True, only_inputs=True)
            r1_penalty = r1_grads.square().sum(dim=[1, 2, 3])  # [N]
            loss_Dr1 = r1_penalty * (self.r1_gamma / 2)
            training_stats.report('Loss/r1_penalty', r1_penalty)
            training_stats.report('Loss/D/reg', loss_Dr1)
            loss = loss + loss_Dr1.mean()

        loss.mul(gain).backward()

#----------------------------------------------------------------------------
