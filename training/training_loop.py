"""The training loop of StyleGAN2-ADA (Karras et al., "Training Generative Adversarial
Networks with Limited Data", NeurIPS 2020), with DiffAugment (Zhao et al., NeurIPS 2020)
as an alternative augmentation and CHAIN (Ni & Koniusz, CVPR 2024) in the discriminator.

One call of `training_loop(**c)` trains one run. It is split into:
  setup     `TrainingRun.__init__`: seeds, datasets, networks, resume/transfer, phases;
  step      `TrainingRun.train_step`: one batch through Gmain/Greg/Dmain/Dreg (lazy
            regularisation), gradients all-reduced by hand, EMA, ADA and CHAIN p updates;
  per tick  `TrainingRun.end_tick`: progress line, image grid, snapshot (with the full
            resume state), metrics, stats.jsonl / TensorBoard / curves.png.

Everything the run needs arrives as plain kwargs dicts with a `class_name` (the road
CLI option -> training_options.json -> constructor kwargs), so the networks, loss,
augmentation and optimizers can be swapped without editing this file.
"""

import copy
import json
import os
import pickle
import random
import signal
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import psutil
import torch
from PIL import Image

import dnnlib
from torch_utils import misc
from torch_utils import persistence
from torch_utils import training_stats
from training.chain import chain_diagnostics, d_weight_grad_norm

#----------------------------------------------------------------------------
# Image grids (reals.png, fakes_init.png, fakes<kimg>.png), laid out as officially.

def setup_snapshot_image_grid(training_set: Any, random_seed: int = 0) -> Tuple[Tuple[int, int], np.ndarray, np.ndarray]:
    """Pick the training images shown in the grids.

    Returns ((gw, gh), images uint8 [gw*gh, C, H, W], labels float32 [gw*gh, label_dim]).
    Unconditional: a seeded random choice; conditional: one row per class.
    """
    rnd = np.random.RandomState(random_seed)
    gw = int(np.clip(7680 // training_set.image_shape[2], 7, 32))
    gh = int(np.clip(4320 // training_set.image_shape[1], 4, 32))

    if not training_set.has_labels:
        order = list(range(len(training_set)))
        rnd.shuffle(order)
        indices = [order[i % len(order)] for i in range(gw * gh)]
    else:
        # Group the images by label, one class per row, cycling through each class's images.
        by_label: Dict[tuple, List[int]] = {}
        for idx in range(len(training_set)):
            by_label.setdefault(tuple(training_set.get_label(idx).flatten().tolist()), []).append(idx)
        keys = sorted(by_label.keys())
        for key in keys:
            rnd.shuffle(by_label[key])
        indices = []
        for y in range(gh):
            members = by_label[keys[y % len(keys)]]
            indices += [members[x % len(members)] for x in range(gw)]

    images, labels = zip(*[training_set[i] for i in indices])
    return (gw, gh), np.stack(images), np.stack(labels)

#----------------------------------------------------------------------------

def save_image_grid(img: np.ndarray, fname: str, drange: Sequence[float], grid_size: Tuple[int, int]) -> None:
    """Write images [gw*gh, C, H, W] (values in `drange`) as one PNG grid, atomically."""
    lo, hi = drange
    img = (np.asarray(img, dtype=np.float32) - lo) * (255 / (hi - lo))
    img = np.rint(img).clip(0, 255).astype(np.uint8)
    gw, gh = grid_size
    _N, C, H, W = img.shape
    img = img.reshape(gh, gw, C, H, W).transpose(0, 3, 1, 4, 2).reshape(gh * H, gw * W, C)
    pil = Image.fromarray(img[:, :, 0], 'L') if C == 1 else Image.fromarray(img, 'RGB')
    tmp = f'{fname}.tmp{os.getpid()}.png'
    pil.save(tmp)
    os.replace(tmp, fname)

#----------------------------------------------------------------------------

class GeneratorEMA:
    """Exponential moving average of G's weights with a half-life in images (`ema_kimg`).

    With `ema_rampup` the half-life is at most `cur_nimg * ema_rampup`, so the average
    forgets the random initialisation quickly. Buffers (w_avg, noise) are copied as is.
    The averaged module itself is the state: it is saved as G_ema in every snapshot.
    """

    def __init__(self, module: torch.nn.Module, ema_kimg: float, ema_rampup: Optional[float]):
        self.module = module
        self.ema_kimg = ema_kimg
        self.ema_rampup = ema_rampup

    def beta(self, cur_nimg: int, batch_size: int) -> float:
        ema_nimg = self.ema_kimg * 1000
        if self.ema_rampup is not None:
            ema_nimg = min(ema_nimg, cur_nimg * self.ema_rampup)
        return 0.5 ** (batch_size / max(ema_nimg, 1e-8))

    @torch.no_grad()
    def update(self, source: torch.nn.Module, cur_nimg: int, batch_size: int) -> None:
        beta = self.beta(cur_nimg, batch_size)
        for p_ema, p in zip(self.module.parameters(), source.parameters()):
            p_ema.copy_(p.lerp(p_ema, beta))
        for b_ema, b in zip(self.module.buffers(), source.buffers()):
            b_ema.copy_(b)

#----------------------------------------------------------------------------
# RNG state: saved per rank in the resume state; maintenance must not consume it.

def get_rng_state(device: torch.device) -> dict:
    """Every RNG the step draws from, as plain picklable values (lists and uint8 tensors)."""
    np_state = np.random.get_state()
    state = dict(
        torch=torch.get_rng_state(),
        numpy=[np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        python=random.getstate(),
    )
    if device.type == 'cuda':
        state['cuda'] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state['torch'])
    name, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    py = state['python']
    random.setstate((py[0], tuple(py[1]), py[2]))
    if device.type == 'cuda' and 'cuda' in state:
        torch.cuda.set_rng_state(state['cuda'], device)

#----------------------------------------------------------------------------

class rng_neutral:
    """Context: whatever runs inside leaves every RNG where it found it (grids, metrics,
    snapshots, diagnostics), so a resumed run draws exactly what an uninterrupted one does."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        self.state = get_rng_state(self.device)

    def __exit__(self, *exc):
        set_rng_state(self.state, self.device)

#----------------------------------------------------------------------------

class _StopRequest:
    """SIGINT/SIGTERM -> finish the current step, write a snapshot, exit 0.

    A second signal falls back to the previous handler (e.g. KeyboardInterrupt).
    Handlers can only be installed from the main thread; elsewhere this does nothing.
    """

    def __init__(self):
        self.signum: Optional[int] = None
        self.time = 0.0
        self._previous: Dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum, _frame) -> None:
        if self.signum is not None:
            if time.time() - self.time < 2:
                return  # The same request twice (a process group and a forwarding launcher).
            self.uninstall()  # A later, second request: stop the hard way.
            signal.raise_signal(signum)
            return
        self.signum = signum
        self.time = time.time()
        print(f'\nReceived {signal.Signals(signum).name}: finishing this step, writing a snapshot, then stopping.', flush=True)

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

#----------------------------------------------------------------------------

class NonFiniteLossError(RuntimeError):
    """Raised when a whole tick's gradients were non-finite; the last good snapshot is kept."""

#----------------------------------------------------------------------------

class TrainingRun:
    """State of one training run; `training_loop()` documents the kwargs."""

    #------------------------------------------------------------------
    # Setup.

    def __init__(self, c: dnnlib.EasyDict):
        if c.batch_gpu < 1 or c.batch_size % (c.num_gpus * c.batch_gpu) != 0:
            raise ValueError(f'training_loop: batch_size={c.batch_size} must be a multiple of num_gpus * batch_gpu '
                             f'= {c.num_gpus} * {c.batch_gpu} (the rest is gradient accumulation); change batch_gpu')
        if not 0 <= c.rank < c.num_gpus:
            raise ValueError(f'training_loop: rank={c.rank} must be in [0, num_gpus={c.num_gpus})')
        self.c = c
        self.device = torch.device(c.device)
        self.rank = c.rank
        self.num_gpus = c.num_gpus
        self.batch_per_rank = c.batch_size // c.num_gpus
        self.num_rounds = self.batch_per_rank // c.batch_gpu
        self.start_time = time.time()
        self._init_torch()
        self._seed(c.random_seed * c.num_gpus + c.rank)
        self._open_datasets()
        self._build_networks()
        resume_data = self._load_resume_pkl()
        self._build_augmentation()
        self.loss = dnnlib.util.construct_class_by_name(device=self.device, G=self.G, D=self.D,
            augment_pipe=self.augment_pipe, ada=self.ada, **c.loss_kwargs)
        self._build_phases()
        self.cur_nimg = int(c.resume_kimg * 1000)
        self.cur_tick = 0
        self.batch_idx = 0
        self.exact_resume = False
        if resume_data is not None:
            self._apply_resume(resume_data)
        self._sync_initial_weights()
        self._open_data_iterator()
        self.ema = GeneratorEMA(self.G_ema, c.ema_kimg, c.ema_rampup)
        self.stats_collector = training_stats.Collector(regex='.*')
        self.stats_metrics: Dict[str, float] = {}
        self.stats_jsonl = None
        self.stats_tfevents = None
        self.stop = _StopRequest()
        self.tick_finite_steps = 0
        self.tick_steps = 0
        self.last_snapshot_pkl: Optional[str] = None
        self.pending_curves = False

    def _init_torch(self) -> None:
        c = self.c
        if self.device.type == 'cuda':
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = c.cudnn_benchmark
            torch.backends.cuda.matmul.allow_tf32 = c.allow_tf32
            torch.backends.cudnn.allow_tf32 = c.allow_tf32
        training_stats.init_multiprocessing(rank=self.rank, sync_device=self.device if self.num_gpus > 1 else None)

    @staticmethod
    def _seed(seed: int) -> None:
        np.random.seed(seed)
        torch.manual_seed(seed)
        random.seed(seed)

    def print0(self, *args, **kwargs) -> None:
        if self.rank == 0:
            print(*args, **kwargs, flush=True)

    def _open_datasets(self) -> None:
        c = self.c
        self.print0('Loading training set...')
        self.training_set = dnnlib.util.construct_class_by_name(**c.training_set_kwargs)
        self.holdout_set = None
        if c.holdout_kwargs is not None:
            self.holdout_set = dnnlib.util.construct_class_by_name(**c.holdout_kwargs)
        self.print0(f'Num images:  {len(self.training_set)}')
        self.print0(f'Image shape: {self.training_set.image_shape}')
        self.print0(f'Label shape: {self.training_set.label_shape}')
        if self.holdout_set is not None:
            self.print0(f'Held out:    {len(self.holdout_set)} images (D diagnostics only)')
        self.print0()

    def _build_networks(self) -> None:
        c = self.c
        self.print0('Constructing networks...')
        common = dict(c_dim=self.training_set.label_dim, img_resolution=self.training_set.resolution,
            img_channels=self.training_set.num_channels)
        # Same initial weights on every rank whatever its seed; rank 0 also broadcasts them.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.random_seed)
            G = dnnlib.util.construct_class_by_name(**c.G_kwargs, **common)
            D = dnnlib.util.construct_class_by_name(**c.D_kwargs, **common)
        self.G = G.train().requires_grad_(False).to(self.device)
        self.D = D.train().requires_grad_(False).to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval()

    def _load_resume_pkl(self) -> Optional[dict]:
        """Load `resume_pkl` safely and copy matching tensors into G, D and G_ema."""
        c = self.c
        if not c.resume_pkl:
            return None
        from training.checkpoint import load_network_pkl
        self.print0(f'Resuming from "{c.resume_pkl}"')
        data = load_network_pkl(c.resume_pkl)
        self.resume_mismatch: Dict[str, Any] = {}
        for name in ('G', 'D', 'G_ema'):
            src = data.get(name)
            if src is None:
                self.resume_mismatch[name] = 'missing from the pickle'
                continue
            report = misc.copy_params_and_buffers(src, getattr(self, name), require_all=False)
            if _has_mismatch(report):
                self.resume_mismatch[name] = report
        for name, report in self.resume_mismatch.items():
            why = report if isinstance(report, str) else _describe_mismatch(report)
            self.print0(f'  {name}: not copied (kept as initialised): {why}')
        return data

    def _build_augmentation(self) -> None:
        c = self.c
        self.augment_pipe = None
        self.ada = None
        if c.augment_kwargs is None:
            return
        self.augment_pipe = dnnlib.util.construct_class_by_name(**c.augment_kwargs).train().requires_grad_(False).to(self.device)
        if _has_p(self.augment_pipe):
            self.augment_pipe.p.copy_(torch.as_tensor(c.augment_p))
            if c.ada_target is not None:
                from training.augment import AdaptiveAugment
                self.ada = AdaptiveAugment(target=c.ada_target, interval=c.ada_interval, speed_kimg=c.ada_kimg)

    def _build_phases(self) -> None:
        """Gmain/Greg/Dmain/Dreg (lazy regularisation) or Gboth/Dboth; one Adam per network."""
        c = self.c
        self.phases: List[dnnlib.EasyDict] = []
        self.optimizers: Dict[str, torch.optim.Optimizer] = {}
        for name, module, opt_kwargs, reg_interval in [('G', self.G, c.G_opt_kwargs, c.G_reg_interval),
                                                        ('D', self.D, c.D_opt_kwargs, c.D_reg_interval)]:
            opt_kwargs = dnnlib.EasyDict(opt_kwargs)
            if 'betas' in opt_kwargs:  # Current torch wants floats; configs say [0, 0.99] as officially.
                opt_kwargs.betas = [float(beta) for beta in opt_kwargs.betas]
            if reg_interval:
                # The regulariser runs every k steps: scale lr and betas by k/(k+1) so the
                # optimiser sees the same effective averaging horizon.
                mb_ratio = reg_interval / (reg_interval + 1)
                opt_kwargs.lr = opt_kwargs.lr * mb_ratio
                opt_kwargs.betas = [beta ** mb_ratio for beta in opt_kwargs.betas]
            opt = dnnlib.util.construct_class_by_name(params=module.parameters(), **opt_kwargs)
            self.optimizers[name] = opt
            if reg_interval:
                self.phases += [dnnlib.EasyDict(name=name + 'main', module=module, opt=opt, interval=1),
                                dnnlib.EasyDict(name=name + 'reg', module=module, opt=opt, interval=reg_interval)]
            else:
                self.phases += [dnnlib.EasyDict(name=name + 'both', module=module, opt=opt, interval=1)]

    def _apply_resume(self, data: dict) -> None:
        """Exact resume from our own snapshot, or a transfer (fresh schedule) otherwise."""
        c = self.c
        state = data.get('resume_state')
        if self.augment_pipe is not None and data.get('augment_pipe') is not None:
            misc.copy_params_and_buffers(data['augment_pipe'], self.augment_pipe, require_all=False)
        if state is None or self.resume_mismatch:
            why = 'it holds no resume state' if state is None else 'the networks differ'
            self.print0(f'Transfer: matching tensors copied; {why}, so the schedule starts fresh at kimg {c.resume_kimg:g}.')
            if self.augment_pipe is not None and _has_p(self.augment_pipe):
                self.augment_pipe.p.copy_(torch.as_tensor(c.augment_p))
            return
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state['optimizers'][name])
        self.cur_nimg = int(state['cur_nimg'])
        self.cur_tick = int(state['cur_tick']) + 1  # The snapshot ended that tick.
        self.batch_idx = int(state['batch_idx'])
        if self.ada is not None and state.get('ada') is not None:
            self.ada.load_state_dict(state['ada'])
        if state.get('pl_mean') is not None and hasattr(self.loss, 'pl_mean'):
            self.loss.pl_mean.copy_(torch.as_tensor(state['pl_mean']).to(self.device))
        rng = state.get('rng') or []
        if len(rng) == self.num_gpus:
            set_rng_state(rng[self.rank], self.device)
        else:
            # Another process count: data order and randomness cannot continue exactly.
            self._seed(c.random_seed * self.num_gpus + self.rank + self.cur_nimg)
            self.print0(f'Note: the snapshot was written by {len(rng)} processes, this run has {self.num_gpus}; '
                        'random streams restart (weights, optimizer state and counters are exact).')
        self.exact_resume = True
        self.print0(f'Exact resume at kimg {self.cur_nimg / 1000:.3f}, tick {self.cur_tick}.')

    def _sync_initial_weights(self) -> None:
        """Every rank starts from rank 0's weights (also after a resume)."""
        if self.num_gpus == 1:
            return
        for module in (self.G, self.D, self.G_ema, self.augment_pipe):
            if module is None:
                continue
            for tensor in misc.params_and_buffers(module):
                torch.distributed.broadcast(tensor, src=0)

    def _open_data_iterator(self) -> None:
        c = self.c
        # The sampler's position counts items of all ranks together: continue where the run stopped.
        sampler = misc.InfiniteSampler(dataset=self.training_set, rank=self.rank, num_replicas=self.num_gpus,
            seed=c.random_seed, start_idx=self.batch_idx * c.batch_size)
        loader = torch.utils.data.DataLoader(dataset=self.training_set, sampler=sampler,
            batch_size=self.batch_per_rank, **c.data_loader_kwargs)
        # Creating the iterator draws the worker base seed from torch's RNG: keep the
        # training RNG untouched so a resumed run continues with the same draws.
        with torch.random.fork_rng(devices=[]):
            self.data_iter = iter(loader)

    #------------------------------------------------------------------
    # One training step.

    def _fetch_batch(self):
        """Reals (split into rounds of batch_gpu) and z, c for every phase."""
        c = self.c
        real_img, real_c = next(self.data_iter)
        real_img = (real_img.to(self.device).to(torch.float32) / 127.5 - 1).split(c.batch_gpu)
        real_c = real_c.to(self.device).split(c.batch_gpu)
        n = len(self.phases) * self.batch_per_rank
        all_gen_z = torch.randn([n, self.G.z_dim], device=self.device)
        all_gen_z = [z.split(c.batch_gpu) for z in all_gen_z.split(self.batch_per_rank)]
        all_gen_c = [self.training_set.get_label(np.random.randint(len(self.training_set))) for _ in range(n)]
        all_gen_c = torch.from_numpy(np.stack(all_gen_c)).to(self.device)
        all_gen_c = [gc.split(c.batch_gpu) for gc in all_gen_c.split(self.batch_per_rank)]
        return real_img, real_c, all_gen_z, all_gen_c

    def train_step(self) -> None:
        real_img, real_c, all_gen_z, all_gen_c = self._fetch_batch()
        step_finite = True
        for phase, gen_z, gen_c in zip(self.phases, all_gen_z, all_gen_c):
            if self.batch_idx % phase.interval != 0:
                continue
            step_finite &= self._run_phase(phase, real_img, real_c, gen_z, gen_c)

        self.ema.update(self.G, self.cur_nimg, self.c.batch_size)
        self.cur_nimg += self.c.batch_size
        self.batch_idx += 1
        if self.ada is not None:
            self.ada.update(self.augment_pipe, self.c.batch_size)
        self.tick_steps += 1
        self.tick_finite_steps += int(step_finite)

    def _run_phase(self, phase, real_img, real_c, gen_z, gen_c) -> bool:
        """Accumulate a phase's gradients over the rounds, reduce them, step. Returns finiteness."""
        phase.opt.zero_grad(set_to_none=True)
        phase.module.requires_grad_(True)
        for round_img, round_c, round_z, round_gen_c in zip(real_img, real_c, gen_z, gen_c):
            self.loss.accumulate_gradients(phase=phase.name, real_img=round_img, real_c=round_c,
                gen_z=round_z, gen_c=round_gen_c, gain=phase.interval, cur_nimg=self.cur_nimg)
        phase.module.requires_grad_(False)
        finite = self._reduce_gradients(phase.module)
        if phase.name in ('Dmain', 'Dboth'):
            training_stats.report('Diag/D/grad_norm', d_weight_grad_norm(self.D))
        phase.opt.step()
        # CHAIN's p follows D's main steps, where the loss observed the real logits.
        if phase.name in ('Dmain', 'Dboth') and getattr(self.D, 'chain_controller', None) is not None:
            self.D.chain_controller.step(self.cur_nimg)
        return finite

    def _reduce_gradients(self, module: torch.nn.Module) -> bool:
        """Average the gradients over ranks and rounds (no DDP), then replace non-finite values."""
        params = [p for p in module.parameters() if p.grad is not None]
        if not params:
            return True
        flat = torch.cat([p.grad.flatten() for p in params])
        if self.num_gpus > 1:
            torch.distributed.all_reduce(flat)
        flat /= self.num_gpus * self.num_rounds
        finite = bool(torch.isfinite(flat).all())
        torch.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
        for p, grad in zip(params, flat.split([p.numel() for p in params])):
            p.grad = grad.reshape(p.shape)
        return finite

    #------------------------------------------------------------------
    # Per-tick maintenance.

    def tick_due(self) -> bool:
        return self.cur_nimg >= self.tick_start_nimg + self.c.kimg_per_tick * 1000

    def stop_requested(self) -> bool:
        """True on every rank when any rank got SIGINT/SIGTERM."""
        flag = self.stop.signum is not None
        if self.num_gpus > 1:
            t = torch.tensor([float(flag)], device=self.device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            flag = bool(t.item() > 0)
        return flag

    def end_tick(self, done: bool) -> bool:
        """Progress line, grids, snapshot, metrics and stats. Returns True when training ends."""
        c = self.c
        tick_end_time = time.time()
        self._check_finite_tick()
        done = self._print_progress(tick_end_time) or done
        if c.abort_fn is not None and c.abort_fn():
            done = True
            self.print0('Aborting...')

        # The snapshot holds the RNG as the step left it; maintenance leaves it untouched.
        rng_state = get_rng_state(self.device)
        with rng_neutral(self.device):
            self._tick_outputs(done, rng_state)

        self._write_stats(tick_end_time)
        if c.progress_fn is not None:
            c.progress_fn(self.cur_nimg // 1000, c.total_kimg)

        self.cur_tick += 1
        self.tick_start_nimg = self.cur_nimg
        self.tick_start_time = time.time()
        self.maintenance_time = self.tick_start_time - tick_end_time
        self.tick_steps = self.tick_finite_steps = 0
        return done

    def _tick_outputs(self, done: bool, rng_state: dict) -> None:
        """Image grid, snapshot, metrics and D diagnostics of this tick."""
        c = self.c
        if self.rank == 0 and c.image_snapshot_ticks is not None and (done or self.cur_tick % c.image_snapshot_ticks == 0):
            self._save_fakes(os.path.join(c.run_dir, f'fakes{self.cur_nimg // 1000:06d}.png'))
        snapshot_pkl, snapshot_data = None, None
        if c.network_snapshot_ticks is not None and (done or self.cur_tick % c.network_snapshot_ticks == 0):
            snapshot_pkl, snapshot_data = self._save_snapshot(rng_state)
        if snapshot_data is not None and len(c.metrics) > 0:
            self._evaluate_metrics(snapshot_pkl, snapshot_data)
        del snapshot_data
        if self.holdout_set is not None:
            self._report_d_diagnostics()
        self.pending_curves = snapshot_pkl is not None

    def _check_finite_tick(self) -> None:
        if self.tick_steps > 0 and self.tick_finite_steps == 0:
            where = (f'the last good snapshot is {self.last_snapshot_pkl}' if self.last_snapshot_pkl
                     else 'no snapshot was written before this')
            raise NonFiniteLossError(f'Training stopped: the losses were non-finite (NaN/inf gradients) for every '
                f'step of tick {self.cur_tick} (kimg {self.cur_nimg / 1000:.3f}); no snapshot was written for it and '
                f'{where}. Lower the learning rate (--glr/--dlr) or raise --gamma, then resume from it.')

    def _print_progress(self, tick_end_time: float) -> bool:
        c = self.c
        ts = training_stats.report0
        fields = []
        fields += [f"tick {ts('Progress/tick', self.cur_tick):<5d}"]
        fields += [f"kimg {ts('Progress/kimg', self.cur_nimg / 1e3):<8.3f}"]
        fields += [f"time {dnnlib.util.format_time(ts('Timing/total_sec', tick_end_time - self.start_time)):<12s}"]
        sec_per_tick = tick_end_time - self.tick_start_time
        fields += [f"sec/tick {ts('Timing/sec_per_tick', sec_per_tick):<7.1f}"]
        kimg_this_tick = max(self.cur_nimg - self.tick_start_nimg, 1) / 1e3
        fields += [f"sec/kimg {ts('Timing/sec_per_kimg', sec_per_tick / kimg_this_tick):<7.2f}"]
        fields += [f"maintenance {ts('Timing/maintenance_sec', self.maintenance_time):<6.1f}"]
        fields += [f"cpumem {ts('Resources/cpu_mem_gb', psutil.Process(os.getpid()).memory_info().rss / 2**30):<6.2f}"]
        if self.device.type == 'cuda':
            fields += [f"gpumem {ts('Resources/peak_gpu_mem_gb', torch.cuda.max_memory_allocated(self.device) / 2**30):<6.2f}"]
            torch.cuda.reset_peak_memory_stats()
        p = float(self.augment_pipe.p) if self.augment_pipe is not None and _has_p(self.augment_pipe) else 0.0
        fields += [f"augment {ts('Progress/augment', p):.3f}"]
        chain_stats = _chain_diagnostics(self.D)
        for name, value in chain_stats.items():
            ts(name, value)
        if 'CHAIN/p' in chain_stats:
            fields += [f"chain_p {chain_stats['CHAIN/p']:.3f}"]
        self.print0(' '.join(fields))
        return self.cur_nimg >= c.total_kimg * 1000

    @torch.no_grad()
    def _save_fakes(self, fname: str) -> None:
        images = torch.cat([self.G_ema(z=z, c=c, noise_mode='const').cpu() for z, c in zip(self.grid_z, self.grid_c)])
        save_image_grid(images.numpy(), fname, drange=[-1, 1], grid_size=self.grid_size)

    def _resume_state(self, rng_state: dict) -> dict:
        """Everything beyond the networks that an exact resume needs, as plain values."""
        rng = [rng_state]
        if self.num_gpus > 1:
            rng = [None] * self.num_gpus
            torch.distributed.all_gather_object(rng, rng_state)
        pl_mean = getattr(self.loss, 'pl_mean', None)
        return dict(
            version=1,
            cur_nimg=self.cur_nimg,
            cur_tick=self.cur_tick,
            batch_idx=self.batch_idx,
            num_gpus=self.num_gpus,
            batch_size=self.c.batch_size,
            optimizers={name: _to_cpu(opt.state_dict()) for name, opt in self.optimizers.items()},
            ada=_to_cpu(self.ada.state_dict()) if self.ada is not None else None,
            pl_mean=pl_mean.detach().cpu().clone() if isinstance(pl_mean, torch.Tensor) else None,
            rng=[_to_cpu(r) for r in rng],
            sampler=dict(seed=self.c.random_seed, start_idx=self.batch_idx * self.c.batch_size),
        )

    def _save_snapshot(self, rng_state: dict) -> Tuple[Optional[str], dict]:
        c = self.c
        data = dict(training_set_kwargs=dict(c.training_set_kwargs))
        for name in ('G', 'D', 'G_ema', 'augment_pipe'):
            module = getattr(self, name)
            if name == 'augment_pipe' and module is not None and not persistence.is_persistent(module):
                module = None  # E.g. DiffAugment: stateless, rebuilt from the options; official files hold None.
            if module is not None:
                if self.num_gpus > 1:
                    misc.check_ddp_consistency(module, ignore_regex=_RANK_LOCAL_BUFFERS)
                module = copy.deepcopy(module).eval().requires_grad_(False).cpu()
            data[name] = module
        data['resume_state'] = self._resume_state(rng_state)
        snapshot_pkl = None
        if self.rank == 0:
            from training.checkpoint import save_snapshot
            snapshot_pkl = os.path.join(c.run_dir, f'network-snapshot-{self.cur_nimg // 1000:06d}.pkl')
            save_snapshot(snapshot_pkl, data)
            self.last_snapshot_pkl = snapshot_pkl
            self.print0(f'Saved {snapshot_pkl}')
        return snapshot_pkl, data

    def _evaluate_metrics(self, snapshot_pkl: Optional[str], snapshot_data: dict) -> None:
        from metrics import metric_main
        c = self.c
        self.print0('Evaluating metrics...')
        for metric in c.metrics:
            result_dict = metric_main.calc_metric(metric=metric, G=snapshot_data['G_ema'],
                dataset_kwargs=c.training_set_kwargs, num_gpus=self.num_gpus, rank=self.rank, device=self.device,
                **c.metric_kwargs)
            if self.rank == 0:
                metric_main.report_metric(result_dict, run_dir=c.run_dir, snapshot_pkl=snapshot_pkl)
            self.stats_metrics.update(result_dict['results'])

    @torch.no_grad()
    def _report_d_diagnostics(self) -> None:
        """D's mean raw output (stream=None) on real-train, real-held-out and fake images."""
        n = len(self.holdout_set)
        gen = torch.Generator().manual_seed(self.c.random_seed + 1)
        train_idx = torch.randperm(len(self.training_set), generator=gen)[:n].tolist()
        results = {}
        for key, dataset, indices in [('real_train', self.training_set, train_idx),
                                      ('real_holdout', self.holdout_set, list(range(n)))]:
            scores = []
            for start, m in _eval_chunks(len(indices), self.c.batch_gpu, self.D):
                img, c = zip(*[dataset[int(i)] for i in indices[start:start + m]])
                img = torch.from_numpy(np.stack(img)).to(self.device).to(torch.float32) / 127.5 - 1
                c = torch.from_numpy(np.stack(c)).to(self.device)
                scores.append(self.D(img, c).flatten().cpu())
            results[key] = torch.cat(scores).mean()
        fakes = []
        with _eval_mode(self.G):
            for start, m in _eval_chunks(n, self.c.batch_gpu, self.D):
                z = torch.randn([m, self.G.z_dim], generator=gen).to(self.device)
                c = torch.from_numpy(np.stack([self.training_set.get_label(i % len(self.training_set))
                                               for i in train_idx[start:start + m]])).to(self.device)
                fakes.append(self.D(self.G(z=z, c=c, noise_mode='const'), c).flatten().cpu())
        results['fake'] = torch.cat(fakes).mean()
        for key, value in results.items():
            training_stats.report0(f'Diag/D/{key}', value)

    def _write_stats(self, tick_end_time: float) -> None:
        c = self.c
        self.stats_collector.update()
        if self.rank != 0:
            return
        stats_dict = self.stats_collector.as_dict()
        timestamp = time.time()
        if self.stats_jsonl is None:
            self.stats_jsonl = open(os.path.join(c.run_dir, 'stats.jsonl'), 'at')
            self.stats_tfevents = _open_tensorboard(c.run_dir)
        fields = dict(stats_dict, timestamp=timestamp)
        self.stats_jsonl.write(json.dumps(_jsonable(fields)) + '\n')
        self.stats_jsonl.flush()
        if self.pending_curves:
            _write_curves(c.run_dir)
        if self.stats_tfevents is not None:
            global_step = int(self.cur_nimg / 1e3)
            walltime = timestamp - self.start_time
            for name, value in stats_dict.items():
                self.stats_tfevents.add_scalar(name, value.mean, global_step=global_step, walltime=walltime)
            for name, value in self.stats_metrics.items():
                self.stats_tfevents.add_scalar(f'Metrics/{name}', value, global_step=global_step, walltime=walltime)
            self.stats_tfevents.flush()

    #------------------------------------------------------------------
    # The whole run.

    def _write_initial_grids(self) -> None:
        c = self.c
        self.print0('Exporting sample images...')
        self.grid_size, images, labels = setup_snapshot_image_grid(self.training_set, c.random_seed)
        if not self.exact_resume:
            save_image_grid(images, os.path.join(c.run_dir, 'reals.png'), drange=[0, 255], grid_size=self.grid_size)
        # A dedicated generator keeps the grid latents fixed across resumes and off the training RNG.
        gen = torch.Generator().manual_seed(c.random_seed)
        # Off the GPU, small batches waste time and memory is plentiful: generate 64 at a time.
        chunk = c.batch_gpu if self.device.type == 'cuda' else max(c.batch_gpu, 64)
        self.grid_z = torch.randn([labels.shape[0], self.G.z_dim], generator=gen).to(self.device).split(chunk)
        self.grid_c = torch.from_numpy(labels).to(self.device).split(chunk)
        if not self.exact_resume:
            self._save_fakes(os.path.join(c.run_dir, 'fakes_init.png'))

    def _print_summaries(self) -> None:
        """Module tables from real inputs, on copies so no RNG draw or buffer update leaks."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == 'cuda' else []):
            G, D = copy.deepcopy(self.G), copy.deepcopy(self.D)
            z = torch.zeros([self.c.batch_gpu, G.z_dim], device=self.device)
            c = torch.zeros([self.c.batch_gpu, G.c_dim], device=self.device)
            img = misc.print_module_summary(G, [z, c])
            misc.print_module_summary(D, [img, c])

    def run(self) -> None:
        c = self.c
        if self.rank == 0:
            with rng_neutral(self.device):
                self._print_summaries()
                if c.image_snapshot_ticks is not None:
                    self._write_initial_grids()
        self.print0(f'Training for {c.total_kimg:g} kimg...')
        self.print0()
        self.tick_start_nimg = self.cur_nimg
        self.tick_start_time = time.time()
        self.maintenance_time = self.tick_start_time - self.start_time
        if c.progress_fn is not None:
            c.progress_fn(self.cur_nimg // 1000, c.total_kimg)
        self.stop.install()
        try:
            done = self.cur_nimg >= c.total_kimg * 1000
            while not done:
                self.train_step()
                done = self.stop_requested() or self.cur_nimg >= c.total_kimg * 1000
                # As officially, tick 0 ends after the first step: early grids and a snapshot show it works.
                if done or self.cur_tick == 0 or self.tick_due():
                    done = self.end_tick(done)
        finally:
            self.stop.uninstall()
            if self.stats_jsonl is not None:
                self.stats_jsonl.close()
            if self.stats_tfevents is not None:
                self.stats_tfevents.close()
        if self.stop.signum is not None:
            self.print0(f'Stopped by {signal.Signals(self.stop.signum).name}; the last snapshot is {self.last_snapshot_pkl}.')
        self.print0()
        self.print0('Exiting...')

#----------------------------------------------------------------------------
# Small helpers.

# Buffers that legitimately differ between ranks: each rank tracks them on its own batches.
_RANK_LOCAL_BUFFERS = r'.*\.(w_avg|v_real|v_fake|u_real|u_fake_d|u_fake_g|psi_real)'


def _eval_chunks(n: int, batch: int, D: torch.nn.Module) -> List[Tuple[int, int]]:
    """(start, size) chunks covering n images that D's minibatch-std layer accepts.

    The layer needs each batch to be a multiple of its group size, or smaller than it (then the
    whole batch is one group); batch (= batch_gpu) is already a multiple. A remainder such as
    10 % 8 = 2 with group 4 is fine; 10 with group 4 becomes 8 + 2.
    """
    group = next((m.group_size for m in D.modules() if type(m).__name__ == 'MinibatchStdLayer'), None) or 1
    sizes = [batch] * (n // batch)
    rest = n % batch
    sizes += [s for s in (rest - rest % group, rest % group) if s > 0]
    starts = np.cumsum([0] + sizes[:-1]).tolist()
    return list(zip(starts, sizes))

#----------------------------------------------------------------------------

def _has_p(module: Any) -> bool:
    return isinstance(getattr(module, 'p', None), torch.Tensor)


_MISMATCH_KINDS = ('missing', 'unexpected', 'mismatched')  # Of misc.copy_params_and_buffers' report.


def _has_mismatch(report: dict) -> bool:
    """Did copy_params_and_buffers leave anything out (missing, unexpected, other shape)?"""
    return any(len(report.get(kind, [])) > 0 for kind in _MISMATCH_KINDS)


def _describe_mismatch(report: dict) -> str:
    """Every tensor left out, by kind: the user must see exactly what a transfer skipped."""
    parts = []
    for kind in _MISMATCH_KINDS:
        items = list(report.get(kind, []))
        if items:
            names = [item if isinstance(item, str) else f'{item[0]} {list(item[1])}->{list(item[2])}' for item in items]
            parts.append(f'{kind} ({len(items)}): {", ".join(names)}')
    return '; '.join(parts)


def _chain_diagnostics(D: torch.nn.Module) -> Dict[str, float]:
    if getattr(D, 'chain_controller', None) is None:
        return {}
    return chain_diagnostics(D)


class _eval_mode:
    """Temporarily put a module in eval mode (no w_avg update, no statistics)."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def __enter__(self):
        self.was_training = self.module.training
        self.module.eval()

    def __exit__(self, *exc):
        self.module.train(self.was_training)


def _to_cpu(obj: Any) -> Any:
    """Deep copy with every tensor moved to the CPU (optimizer states, RNG states)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else (1e300 if obj > 0 else -1e300)
    return obj


def _open_tensorboard(run_dir: str):
    try:
        import torch.utils.tensorboard as tensorboard
        return tensorboard.SummaryWriter(run_dir)
    except ImportError:
        return None

#----------------------------------------------------------------------------
# curves.png: losses, augment p, CHAIN p and metrics against kimg (needs matplotlib).

_CURVES = [('Losses', ['Loss/G/loss', 'Loss/D/loss', 'Loss/r1_penalty', 'Loss/D/0mr']),
           ('D outputs', ['Loss/scores/real', 'Loss/scores/fake', 'Diag/D/real_train', 'Diag/D/real_holdout', 'Diag/D/fake']),
           ('p', ['Progress/augment', 'CHAIN/p', 'CHAIN/r'])]


def _write_curves(run_dir: str) -> None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return
    stats = []
    with open(os.path.join(run_dir, 'stats.jsonl'), 'rt') as f:
        for line in f:
            stats.append(json.loads(line))
    metrics: Dict[str, List[Tuple[float, float]]] = {}
    for fname in sorted(os.listdir(run_dir)):
        if fname.startswith('metric-') and fname.endswith('.jsonl'):
            with open(os.path.join(run_dir, fname), 'rt') as f:
                for line in f:
                    entry = json.loads(line)
                    kimg = _kimg_of_snapshot(entry.get('snapshot_pkl'))
                    for name, value in entry.get('results', {}).items():
                        if kimg is not None:
                            metrics.setdefault(name, []).append((kimg, value))

    fig = Figure(figsize=(12, 3.2))
    FigureCanvasAgg(fig)
    panels = _CURVES + ([('Metrics', list(metrics.keys()))] if metrics else [])
    kimg = [s.get('Progress/kimg', {}).get('mean') for s in stats]
    for i, (title, names) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for name in names:
            if title == 'Metrics':
                xs, ys = zip(*metrics[name])
            else:
                pts = [(k, s[name]['mean']) for k, s in zip(kimg, stats) if name in s and s[name].get('mean') is not None]
                if not pts:
                    continue
                xs, ys = zip(*pts)
            ax.plot(xs, ys, label=name, marker='.' if len(xs) < 20 else None)
        ax.set_title(title)
        ax.set_xlabel('kimg')
        if ax.lines:
            ax.legend(fontsize=6)
    fig.tight_layout()
    path = os.path.join(run_dir, 'curves.png')
    tmp = f'{path}.tmp{os.getpid()}.png'
    fig.savefig(tmp, dpi=80)
    os.replace(tmp, path)


def _kimg_of_snapshot(snapshot_pkl: Optional[str]) -> Optional[float]:
    if not snapshot_pkl:
        return None
    stem = os.path.splitext(os.path.basename(snapshot_pkl))[0]
    try:
        return float(stem.rsplit('-', 1)[-1])
    except ValueError:
        return None

#----------------------------------------------------------------------------

def training_loop(
    run_dir                 = '.',      # Output directory.
    training_set_kwargs     = {},       # Options for the training set (class_name, path, ...).
    holdout_kwargs          = None,     # Options for the held-out set (D diagnostics); None = none.
    data_loader_kwargs      = {},       # Options for torch.utils.data.DataLoader.
    G_kwargs                = {},       # Options for the generator network.
    D_kwargs                = {},       # Options for the discriminator (chain_kwargs: CHAIN, None = off).
    G_opt_kwargs            = {},       # Options for the generator optimizer.
    D_opt_kwargs            = {},       # Options for the discriminator optimizer.
    augment_kwargs          = None,     # Options for the augment pipe (AugmentPipe or DiffAugment); None = none.
    loss_kwargs             = {},       # Options for the loss function.
    metrics                 = [],       # Metrics to evaluate at each network snapshot.
    metric_kwargs           = {},       # Extra calc_metric options (e.g. detector, num_gen for quick looks).
    random_seed             = 0,        # Global random seed.
    num_gpus                = 1,        # Number of processes taking part in training.
    rank                    = 0,        # Rank of the current process in [0, num_gpus).
    batch_size              = 4,        # Total batch size for one training iteration.
    batch_gpu               = 4,        # Images per process per round (gradient accumulation below batch/num_gpus).
    ema_kimg                = 10,       # Half-life of G's exponential moving average, in kimg.
    ema_rampup              = 0.05,     # EMA ramp-up coefficient; None = no ramp-up.
    G_reg_interval          = 4,        # How often the path-length regulariser runs; None = with the main loss.
    D_reg_interval          = 16,       # How often R1 runs; None = with the main loss.
    augment_p               = 0,        # Initial (or fixed) augmentation probability.
    ada_target              = None,     # ADA target value; None = p does not adapt.
    ada_interval            = 4,        # How often ADA adjusts p, in batches.
    ada_kimg                = 500,      # ADA speed: kimg for p to go from 0 to 1.
    total_kimg              = 25000,    # Total length of the training, in kimg (fractions allowed).
    kimg_per_tick           = 4,        # Progress snapshot interval, in kimg (fractions allowed).
    image_snapshot_ticks    = 50,       # How often to save image grids; None = never.
    network_snapshot_ticks  = 50,       # How often to save network snapshots; None = never.
    resume_pkl              = None,     # Snapshot to resume from (ours: exact; others: transfer).
    resume_kimg             = 0,        # kimg at which a transfer starts its schedule.
    cudnn_benchmark         = True,     # Enable torch.backends.cudnn.benchmark?
    allow_tf32              = False,    # Enable TF32 matmul/convolutions on CUDA?
    abort_fn                = None,     # Callable returning True to stop training early.
    progress_fn             = None,     # Callable(cur_kimg, total_kimg) called once per tick.
    device                  = 'cuda',   # Torch device of this process ('cuda', 'cuda:1', 'cpu', 'mps').
) -> 'TrainingRun':
    """Train G and D; write log.txt, stats.jsonl, grids and snapshots into `run_dir`.

    Returns the finished TrainingRun (its G, D, G_ema, counters) for callers that inspect it.
    Raises NonFiniteLossError when every step of a tick had non-finite gradients.
    """
    c = dnnlib.EasyDict(locals())
    c.metrics = list(metrics)
    logger = dnnlib.util.Logger(os.path.join(run_dir, 'log.txt'), file_mode='a') if rank == 0 else None
    try:
        run = TrainingRun(c)
        run.run()
        return run
    finally:
        if logger is not None:
            logger.close()

#----------------------------------------------------------------------------

def training_config(**overrides: Any) -> dnnlib.EasyDict:
    """training_loop's kwargs with its defaults, updated by `overrides` (unknown names refused)."""
    import inspect
    params = inspect.signature(training_loop).parameters
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise TypeError(f'training_config: unknown option(s) {", ".join(unknown)}; known: {", ".join(params)}')
    c = dnnlib.EasyDict({name: copy.deepcopy(p.default) for name, p in params.items()})
    c.update(overrides)
    c.metrics = list(c.metrics)
    return c

#----------------------------------------------------------------------------
