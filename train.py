"""Train a StyleGAN2 generator with ADA, DiffAugment and/or CHAIN (the StyleGAN2-ADA
command line, https://github.com/NVlabs/stylegan2-ada-pytorch, with the presets of
DESIGN.md section 4, StyleGAN3's network-size options and CHAIN's options).

Thin by design: parse -> one config dict (checked, each error naming its flag) ->
print it -> run directory + training_options.json -> one process per device.

Examples:

\b
  # The low-shot protocol with DiffAugment and CHAIN on 100 built-in faces, on the CPU:
  python train.py --outdir=runs --data=builtin:lfw-faces-100 --cfg=lowshot --chain=running \\
      --device=cpu --cbase=2048 --cmax=64 --kimg=2 --metrics=none
\b
  # Official StyleGAN2-ADA settings on 2 GPUs:
  python train.py --outdir=runs --data=ffhq256.zip --gpus=2 --cfg=paper256 --mirror=1
"""

import copy
import json
import os
import re
import signal
import socket
import tempfile
from typing import Any, Dict, List, Optional, Tuple

import click

import dnnlib

#----------------------------------------------------------------------------
# Presets (--cfg). ref_gpus: the GPU count the batch was tuned for (batch_gpu = batch //
# ref_gpus, the rest by gradient accumulation); None = --gpus. None values of `auto` are
# computed from the resolution. `res`: the only resolution the preset is meant for.

PRESETS: Dict[str, Dict[str, Any]] = {
    #              ref_gpus       kimg          batch      mbstd      fmaps       lrate          gamma        ema        ramp         map    aug               mirror        res
    'auto':      dict(ref_gpus=None, kimg=25000,  batch=None, mbstd=None, fmaps=None, lrate=None,   gamma=None,  ema=None,  ramp=0.05,  map=2, aug='ada',     mirror=False, res=None),
    'stylegan2': dict(ref_gpus=8,    kimg=25000,  batch=32,   mbstd=4,    fmaps=1,    lrate=0.002,  gamma=10,    ema=10,    ramp=None,  map=8, aug='ada',     mirror=False, res=None),
    'paper256':  dict(ref_gpus=8,    kimg=25000,  batch=64,   mbstd=8,    fmaps=0.5,  lrate=0.0025, gamma=1,     ema=20,    ramp=None,  map=8, aug='ada',     mirror=False, res=256),
    'paper512':  dict(ref_gpus=8,    kimg=25000,  batch=64,   mbstd=8,    fmaps=1,    lrate=0.0025, gamma=0.5,   ema=20,    ramp=None,  map=8, aug='ada',     mirror=False, res=512),
    'paper1024': dict(ref_gpus=8,    kimg=25000,  batch=32,   mbstd=4,    fmaps=1,    lrate=0.002,  gamma=2,     ema=10,    ramp=None,  map=8, aug='ada',     mirror=False, res=1024),
    'cifar':     dict(ref_gpus=2,    kimg=100000, batch=64,   mbstd=32,   fmaps=1,    lrate=0.0025, gamma=0.01,  ema=500,   ramp=0.05,  map=2, aug='ada',     mirror=False, res=32),
    # DiffAugment's low-shot protocol (Zhao et al. 2020): 300 kimg (500 for AnimalFace).
    'lowshot':   dict(ref_gpus=None, kimg=300,    batch=16,   mbstd=4,    fmaps=0.5,  lrate=0.002,  gamma=10,    ema=10,    ramp=None,  map=2, aug='diffaug', mirror=True,  res=None),
}

# Official pretrained pickles usable with --resume by name.
RESUME_SPECS = {
    'ffhq256':   'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/ffhq-res256-mirror-paper256-noaug.pkl',
    'ffhq512':   'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/ffhq-res512-mirror-stylegan2-noaug.pkl',
    'ffhq1024':  'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/ffhq-res1024-mirror-stylegan2-noaug.pkl',
    'celebahq256': 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/celebahq-res256-mirror-paper256-kimg100000-ada-target0.5.pkl',
    'lsundog256': 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/lsundog-res256-paper256-kimg100000-noaug.pkl',
}

DEFAULT_DIFFAUG_POLICY = 'color,translation,cutout'

#----------------------------------------------------------------------------

def _bad(flag: str, message: str) -> click.BadParameter:
    return click.BadParameter(message, param_hint=f"'{flag}'")

#----------------------------------------------------------------------------

def _open_training_set(opts: dnnlib.EasyDict) -> Tuple[dnnlib.EasyDict, Any]:
    """Open the dataset once (it checks every image) and return its kwargs and itself."""
    from training.dataset import DatasetError
    kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=opts.data, use_labels=True,
                             max_size=None, xflip=False, random_seed=opts.seed, holdout=opts.holdout)
    try:
        dataset = dnnlib.util.construct_class_by_name(**kwargs)
    except (DatasetError, FileNotFoundError, NotADirectoryError, OSError) as err:
        flag = '--holdout' if opts.holdout and str(err).startswith('holdout=') else '--data'
        raise _bad(flag, str(err)) from None
    return kwargs, dataset


def _dataset_kwargs(opts: dnnlib.EasyDict) -> Tuple[dnnlib.EasyDict, Optional[dnnlib.EasyDict], dict]:
    """training_set_kwargs, holdout_kwargs and facts about the data (resolution, labels, size)."""
    kwargs, dataset = _open_training_set(opts)
    facts = dict(name=dataset.name, resolution=dataset.resolution, num_channels=dataset.num_channels,
                 has_labels=dataset.has_labels, size=len(dataset))
    if opts.cond and not dataset.has_labels:
        raise _bad('--cond', f'--cond=True needs labels, but {opts.data} has no dataset.json labels; '
                   'make them with dataset_tool.py --labels=subfolders, or drop --cond')
    if opts.subset is not None and not 1 <= opts.subset <= len(dataset):
        raise _bad('--subset', f'--subset={opts.subset} must be between 1 and the dataset size ({len(dataset)})')
    kwargs.resolution = dataset.resolution
    kwargs.use_labels = bool(opts.cond)
    kwargs.max_size = opts.subset
    kwargs.xflip = bool(opts.mirror)
    holdout_kwargs = None
    if opts.holdout:
        holdout_kwargs = dnnlib.EasyDict(kwargs, max_size=None, xflip=False, split='holdout')
    else:
        del kwargs['holdout']
    return kwargs, holdout_kwargs, facts

#----------------------------------------------------------------------------

def _resolve_preset(opts: dnnlib.EasyDict, res: int) -> dnnlib.EasyDict:
    """The preset's numbers, `auto` computed from resolution and --gpus, then the flags on top."""
    spec = dnnlib.EasyDict(PRESETS[opts.cfg])
    if spec.res is not None and spec.res != res:
        raise _bad('--cfg', f'--cfg={opts.cfg} is meant for {spec.res}x{spec.res} images, but the dataset is '
                   f'{res}x{res}; use --cfg=auto, --cfg=stylegan2 or --cfg=lowshot, or resize the data with dataset_tool.py')
    gpus = opts.gpus
    if opts.cfg == 'auto':
        spec.batch = max(min(gpus * min(4096 // res, 32), 64), gpus)
        spec.mbstd = min(spec.batch // gpus, 4)
        spec.fmaps = 1 if res >= 512 else 0.5
        spec.lrate = 0.002 if res >= 1024 else 0.0025
        spec.gamma = 0.0002 * (res ** 2) / spec.batch
        spec.ema = spec.batch * 10 / 32
    ref_gpus = spec.ref_gpus or gpus
    spec.batch_gpu = max(spec.batch // ref_gpus, 1)
    spec.cbase = int(spec.fmaps * 32768)
    spec.cmax = 512
    if opts.batch is not None:
        spec.batch = opts.batch
        spec.batch_gpu = opts.batch // gpus
    if opts.batch_gpu is not None:
        spec.batch_gpu = opts.batch_gpu
    for flag, key in [('kimg', 'kimg'), ('gamma', 'gamma'), ('cbase', 'cbase'), ('cmax', 'cmax'),
                      ('map_depth', 'map'), ('mbstd_group', 'mbstd'), ('aug', 'aug'), ('mirror', 'mirror')]:
        if opts[flag] is not None:
            spec[key] = opts[flag]
    spec.glr = opts.glr if opts.glr is not None else spec.lrate
    spec.dlr = opts.dlr if opts.dlr is not None else spec.lrate
    return spec


def _check_batch(opts: dnnlib.EasyDict, spec: dnnlib.EasyDict) -> None:
    flag = '--batch-gpu' if opts.batch_gpu is not None else '--batch'
    if spec.batch % opts.gpus != 0:
        raise _bad('--batch', f'--batch={spec.batch} must be a multiple of --gpus={opts.gpus}')
    if spec.batch_gpu < 1 or spec.batch % (opts.gpus * spec.batch_gpu) != 0:
        raise _bad(flag, f'--batch={spec.batch} must be a multiple of --gpus * --batch-gpu = '
                   f'{opts.gpus} * {spec.batch_gpu}; pick --batch-gpu dividing {spec.batch // opts.gpus}')
    if spec.mbstd and spec.batch_gpu >= spec.mbstd and spec.batch_gpu % spec.mbstd != 0:
        raise _bad('--mbstd-group', f'the minibatch-std group size {spec.mbstd} must divide the per-device batch '
                   f'{spec.batch_gpu} (--batch-gpu); pick --mbstd-group among the divisors of {spec.batch_gpu}')


def _check_flags(opts: dnnlib.EasyDict, aug: str) -> None:
    """Cross-field checks that need no data."""
    if opts.p is not None and aug != 'fixed':
        raise _bad('--p', f'--p can only be given with --aug=fixed (the augmentation is --aug={aug})')
    if aug == 'fixed' and opts.p is None:
        raise _bad('--p', '--aug=fixed needs --p (the fixed augmentation probability, e.g. --p=0.2)')
    if opts.target is not None and aug != 'ada':
        raise _bad('--target', f'--target can only be given with --aug=ada (the augmentation is --aug={aug})')
    if opts.augpipe is not None and aug not in ('ada', 'fixed'):
        raise _bad('--augpipe', f'--augpipe can only be given with --aug=ada or --aug=fixed (the augmentation is --aug={aug})')
    if opts.diffaug is not None and aug != 'diffaug':
        raise _bad('--diffaug', f'--diffaug can only be given with --aug=diffaug (the augmentation is --aug={aug})')
    if opts.device == 'mps' and opts.gpus != 1:
        raise _bad('--gpus', '--device=mps runs one process; use --gpus=1')
    if opts.device == 'cuda':
        import torch
        if not torch.cuda.is_available():
            raise _bad('--device', '--device=cuda but PyTorch sees no CUDA device; use --device=cpu (or auto)')
        if opts.gpus > torch.cuda.device_count():
            raise _bad('--gpus', f'--gpus={opts.gpus} but only {torch.cuda.device_count()} CUDA devices are visible')

#----------------------------------------------------------------------------

def _augment_kwargs(opts: dnnlib.EasyDict, aug: str) -> Tuple[Optional[dnnlib.EasyDict], dict]:
    """augment_kwargs and the loop's augment options for --aug / --p / --target / --augpipe / --diffaug."""
    loop = dict(augment_p=0.0, ada_target=None)
    if aug == 'noaug':
        return None, loop
    if aug == 'diffaug':
        from training.diffaug import DiffAugment
        policy = opts.diffaug if opts.diffaug is not None else DEFAULT_DIFFAUG_POLICY
        try:
            policy = DiffAugment(policy).policy
        except ValueError as err:
            raise _bad('--diffaug', str(err)) from None
        return dnnlib.EasyDict(class_name='training.diffaug.DiffAugment', policy=policy), loop
    from training.augment import augpipe_specs
    augpipe = opts.augpipe if opts.augpipe is not None else 'bgc'
    if augpipe not in augpipe_specs:
        raise _bad('--augpipe', f'--augpipe={augpipe} is not one of {", ".join(sorted(augpipe_specs))}')
    kwargs = dnnlib.EasyDict(class_name='training.augment.AugmentPipe', **augpipe_specs[augpipe])
    if aug == 'ada':
        loop['ada_target'] = opts.target if opts.target is not None else 0.6
    else:
        loop['augment_p'] = opts.p
    return kwargs, loop


def _chain_kwargs(opts: dnnlib.EasyDict, res: int) -> Optional[dict]:
    if opts.chain == 'none':
        for flag, key in [('--chain-tau', 'chain_tau'), ('--chain-lambda', 'chain_lambda'),
                          ('--chain-lambda-p0', 'chain_lambda_p0'), ('--chain-dp', 'chain_dp'),
                          ('--chain-blocks', 'chain_blocks'), ('--chain-start-kimg', 'chain_start_kimg')]:
            if opts[key] is not None:
                raise _bad(flag, f'{flag} needs CHAIN switched on with --chain=running or --chain=batch')
        return None
    from training.chain import CHAIN_DEFAULTS, validate_chain_kwargs
    def pick(key, default):
        return opts[key] if opts[key] is not None else default
    try:
        return validate_chain_kwargs(variant=opts.chain, blocks=pick('chain_blocks', CHAIN_DEFAULTS['blocks']),
            tau=pick('chain_tau', CHAIN_DEFAULTS['tau']), dp=pick('chain_dp', CHAIN_DEFAULTS['dp']),
            lambda_0mr=pick('chain_lambda', CHAIN_DEFAULTS['lambda_0mr']),
            lambda_p0=pick('chain_lambda_p0', CHAIN_DEFAULTS['lambda_p0']),
            start_kimg=pick('chain_start_kimg', CHAIN_DEFAULTS['start_kimg']), img_resolution=res)
    except ValueError as err:
        flag = re.search(r'\((--chain[\w-]*)\)', str(err))
        raise _bad(flag.group(1) if flag else '--chain', str(err)) from None


def _metrics(opts: dnnlib.EasyDict) -> List[str]:
    text = (opts.metrics or '').strip()
    if text.lower() in ('', 'none'):
        return []
    names = [name.strip() for name in text.split(',') if name.strip()]
    try:
        from metrics import metric_main
    except ImportError as err:
        raise _bad('--metrics', f'metrics are unavailable ({err}); use --metrics=none') from None
    for name in names:
        if not metric_main.is_valid_metric(name):
            raise _bad('--metrics', f'unknown metric {name!r}; valid: {", ".join(metric_main.list_valid_metrics())}, or none')
    return names


def _resume(opts: dnnlib.EasyDict, facts: dict) -> Tuple[Optional[str], bool]:
    """(resume_pkl, exact): the pickle is opened once here so a bad file fails before training."""
    if opts.resume in (None, '', 'noresume'):
        if opts.resume_kimg:
            raise _bad('--resume-kimg', '--resume-kimg needs --resume')
        return None, False
    resume = RESUME_SPECS.get(opts.resume, opts.resume)
    if resume == 'latest':
        resume = find_latest_snapshot(opts.outdir)
        if resume is None:
            return None, False  # Nothing to continue: start fresh (rerunning the command resumes later).
    from training.checkpoint import load_network_pkl
    try:
        data = load_network_pkl(resume)
    except Exception as err:  # A path, URL or file problem: all reported against the flag.
        raise _bad('--resume', f'cannot load {resume}: {err}') from None
    missing = [key for key in ('G', 'D', 'G_ema') if data.get(key) is None]
    if missing:
        raise _bad('--resume', f'{resume} has no {", ".join(missing)}; expected a StyleGAN2-ADA network snapshot')
    exact = data.get('resume_state') is not None
    if exact and opts.resume_kimg:
        raise _bad('--resume-kimg', f'{resume} holds its own kimg ({data["resume_state"]["cur_nimg"] / 1000:g}); '
                   '--resume-kimg is only for transfers from other pickles')
    return resume, exact


def find_latest_snapshot(outdir: str) -> Optional[str]:
    """The newest network-snapshot-*.pkl of the highest-numbered run in `outdir`, or None."""
    if not os.path.isdir(outdir):
        return None
    runs = sorted((d for d in os.listdir(outdir) if re.match(r'^\d+-', d)), key=lambda d: int(d.split('-')[0]), reverse=True)
    for run in runs:
        snapshots = sorted(f for f in os.listdir(os.path.join(outdir, run)) if re.fullmatch(r'network-snapshot-\d+\.pkl', f))
        if snapshots:
            return os.path.join(outdir, run, snapshots[-1])
    return None

#----------------------------------------------------------------------------

def build_config(opts: dnnlib.EasyDict) -> Tuple[dnnlib.EasyDict, str]:
    """Options -> the training_loop kwargs (c) and the run description; every error names its flag."""
    aug = opts.aug if opts.aug is not None else PRESETS[opts.cfg]['aug']
    _check_flags(opts, aug)
    c = dnnlib.EasyDict()
    c.training_set_kwargs, c.holdout_kwargs, facts = _dataset_kwargs(opts)
    res = facts['resolution']
    spec = _resolve_preset(opts, res)
    _check_batch(opts, spec)
    c.training_set_kwargs.xflip = bool(spec.mirror)

    c.G_kwargs = dnnlib.EasyDict(class_name='training.networks.Generator', z_dim=512, w_dim=512,
        mapping_kwargs=dnnlib.EasyDict(num_layers=spec.map), synthesis_kwargs=dnnlib.EasyDict())
    c.D_kwargs = dnnlib.EasyDict(class_name='training.networks.Discriminator', block_kwargs=dnnlib.EasyDict(),
        mapping_kwargs=dnnlib.EasyDict(), epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=spec.mbstd))
    for kwargs in (c.G_kwargs.synthesis_kwargs, c.D_kwargs):
        kwargs.channel_base = spec.cbase
        kwargs.channel_max = spec.cmax
        kwargs.num_fp16_res = 0 if opts.fp32 else 4
        kwargs.conv_clamp = None if opts.fp32 else 256
    if opts.nhwc:
        c.G_kwargs.synthesis_kwargs.fp16_channels_last = c.D_kwargs.block_kwargs.fp16_channels_last = True
    if opts.freezed:
        c.D_kwargs.block_kwargs.freeze_layers = opts.freezed
    if opts.cfg == 'cifar':
        c.D_kwargs.architecture = 'orig'
    c.D_kwargs.chain_kwargs = _chain_kwargs(opts, res)

    c.G_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', lr=spec.glr, betas=[0, 0.99], eps=1e-8)
    c.D_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', lr=spec.dlr, betas=[0, 0.99], eps=1e-8)
    c.loss_kwargs = dnnlib.EasyDict(class_name='training.loss.StyleGAN2Loss', r1_gamma=spec.gamma)
    if opts.cfg == 'cifar':
        c.loss_kwargs.pl_weight = 0  # Disable path length regularisation, as officially.
        c.loss_kwargs.style_mixing_prob = 0
    c.augment_kwargs, loop_aug = _augment_kwargs(opts, aug)
    c.update(loop_aug)
    c.data_loader_kwargs = dnnlib.EasyDict(pin_memory=(opts.device != 'cpu'), num_workers=opts.workers,
                                           prefetch_factor=2 if opts.workers > 0 else None)
    c.metrics = _metrics(opts)
    c.random_seed = opts.seed
    c.num_gpus = opts.gpus
    c.batch_size = spec.batch
    c.batch_gpu = spec.batch_gpu
    c.ema_kimg = spec.ema
    c.ema_rampup = spec.ramp
    c.total_kimg = spec.kimg
    c.kimg_per_tick = opts.tick
    c.image_snapshot_ticks = c.network_snapshot_ticks = opts.snap
    c.cudnn_benchmark = not opts.nobench
    c.allow_tf32 = bool(opts.allow_tf32)
    c.device = opts.device
    c.resume_pkl, exact = _resume(opts, facts)
    c.resume_kimg = opts.resume_kimg
    if c.resume_pkl is not None and not exact:
        c.ada_kimg = 100  # As officially: a transfer's augmentation ramps up faster,
        c.ema_rampup = None  # and its EMA needs no ramp from a random init.

    desc = _describe(opts, facts, aug)
    return c, desc


def _describe(opts: dnnlib.EasyDict, facts: dict, aug: str) -> str:
    """The run directory's name after the id, official style plus our options."""
    desc = facts['name']
    if opts.cond:
        desc += '-cond'
    if opts.subset is not None:
        desc += f'-subset{opts.subset}'
    if opts.mirror:
        desc += '-mirror'
    desc += f'-{opts.cfg}' + (f'{opts.gpus:d}' if opts.cfg == 'auto' else '')
    if opts.gamma is not None:
        desc += f'-gamma{opts.gamma:g}'
    if opts.kimg is not None:
        desc += f'-kimg{opts.kimg:g}'
    if opts.batch is not None:
        desc += f'-batch{opts.batch}'
    if opts.aug is not None or aug != 'ada':
        desc += f'-{aug}'
    if opts.p is not None:
        desc += f'-p{opts.p:g}'
    if opts.target is not None:
        desc += f'-target{opts.target:g}'
    if opts.augpipe is not None:
        desc += f'-{opts.augpipe}'
    if opts.resume not in (None, '', 'noresume', 'latest'):
        name = opts.resume if opts.resume in RESUME_SPECS else os.path.splitext(os.path.basename(opts.resume))[0]
        desc += f'-resume{name}'
    if opts.freezed:
        desc += f'-freezed{opts.freezed}'
    if opts.fp32:
        desc += '-fp32'
    if opts.chain != 'none':
        desc += f'-chain{opts.chain}'
    if opts.desc:
        desc += f'-{opts.desc}'
    return re.sub(r'[^\w.+-]', '_', desc)

#----------------------------------------------------------------------------

def next_run_dir(outdir: str, desc: str) -> str:
    """`<outdir>/<id:05d>-<desc>`, id one more than the largest numeric prefix there."""
    ids = []
    if os.path.isdir(outdir):
        for name in os.listdir(outdir):
            m = re.match(r'^(\d+)', name)
            if m and os.path.isdir(os.path.join(outdir, name)):
                ids.append(int(m.group(1)))
    return os.path.join(outdir, f'{max(ids, default=-1) + 1:05d}-{desc}')


def _write_json_atomic(path: str, obj: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.tmp-', suffix='.json')
    with os.fdopen(fd, 'wt') as f:
        json.dump(obj, f, indent=2)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; this is a plain report.
    os.replace(tmp, path)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _resolve_device(device: str) -> str:
    if device != 'auto':
        return device
    import torch
    return 'cuda' if torch.cuda.is_available() else 'cpu'

#----------------------------------------------------------------------------

def subprocess_fn(rank: int, c: dnnlib.EasyDict, port: Optional[int], rendezvous_timeout_s: float = 120) -> Any:
    """One training process: join the group (several processes), pick the device, train.
    Returns the finished training_loop.TrainingRun."""
    import torch
    from torch_utils import distributed
    from training.training_loop import training_loop
    if c.num_gpus > 1 and port is not None:  # Started by launch(): describe the group as torchrun would.
        os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank),
                          WORLD_SIZE=str(c.num_gpus), LOCAL_RANK=str(rank))
    local_rank = int(os.environ.get('LOCAL_RANK', rank))
    if c.num_gpus > 1:
        distributed.init(backend='nccl' if c.device.startswith('cuda') else 'gloo',
                         rendezvous_timeout_s=rendezvous_timeout_s)
    c = dnnlib.EasyDict(c, rank=rank)
    if c.device == 'cuda':
        c.device = f'cuda:{local_rank}'
        torch.cuda.set_device(local_rank)
    if c.device == 'cpu' and c.num_gpus > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // c.num_gpus))  # Share the cores.
    try:
        return training_loop(**c)
    finally:
        distributed.shutdown()


def launch(c: dnnlib.EasyDict) -> None:
    """Run subprocess_fn in this process (one device) or spawn one process per device."""
    import torch.multiprocessing as mp
    if c.num_gpus == 1:
        subprocess_fn(rank=0, c=c, port=None)
        return
    port = _free_port()
    context = mp.start_processes(subprocess_fn, args=(c, port), nprocs=c.num_gpus, join=False, start_method='spawn')
    # Forward SIGINT/SIGTERM sent to this launcher alone; the ranks finish their step and save.
    def forward(signum, _frame):
        for process in context.processes:
            if process.is_alive():
                os.kill(process.pid, signum)
    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not context.join():
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _launch_torchrun(c: dnnlib.EasyDict, desc: str, outdir: str) -> None:
    """Started by torchrun: rank 0 makes the run directory and tells the others."""
    import torch
    from torch_utils import distributed
    distributed.init(backend='nccl' if c.device.startswith('cuda') else 'gloo')
    rank = distributed.get_rank()
    run_dir = [None]
    if rank == 0:
        run_dir = [_make_run_dir(c, desc, outdir)]
    torch.distributed.broadcast_object_list(run_dir, src=0)
    c.run_dir = run_dir[0]
    subprocess_fn(rank=rank, c=c, port=None)


def _make_run_dir(c: dnnlib.EasyDict, desc: str, outdir: str) -> str:
    run_dir = next_run_dir(outdir, desc)
    c.run_dir = run_dir
    os.makedirs(run_dir, exist_ok=False)
    _write_json_atomic(os.path.join(run_dir, 'training_options.json'), c)
    return run_dir

#----------------------------------------------------------------------------

def _print_options(c: dnnlib.EasyDict, desc: str, outdir: str) -> None:
    print()
    print('Training options:')
    print(json.dumps(c, indent=2))
    print()
    print(f'Output directory:    {c.run_dir}')
    print(f'Number of GPUs:      {c.num_gpus}' + (f' (processes on {c.device})' if not c.device.startswith('cuda') else ''))
    print(f'Device:              {c.device}')
    print(f'Batch size:          {c.batch_size} images ({c.batch_gpu} per device per round)')
    print(f'Training duration:   {c.total_kimg:g} kimg')
    print(f'Dataset path:        {c.training_set_kwargs.path}')
    print(f'Dataset size:        {c.training_set_kwargs.max_size or "all"} images')
    print(f'Dataset resolution:  {c.training_set_kwargs.resolution}')
    print(f'Dataset labels:      {c.training_set_kwargs.use_labels}')
    print(f'Dataset x-flips:     {c.training_set_kwargs.xflip}')
    print(f'Augmentation:        {c.augment_kwargs.class_name if c.augment_kwargs else "none"}')
    print(f'CHAIN:               {c.D_kwargs.chain_kwargs or "off"}')
    print()

#----------------------------------------------------------------------------

@click.command(help=__doc__, context_settings=dict(max_content_width=120))
@click.pass_context
# General options.
@click.option('--outdir', help='Where to save the results', required=True, metavar='DIR')
@click.option('--gpus', help='Number of processes (GPUs, or CPU processes with --device=cpu) [default: 1]', type=click.IntRange(min=1), default=1, metavar='INT')
@click.option('--snap', help='Snapshot interval [default: 50 ticks]', type=click.IntRange(min=1), default=50, metavar='INT')
@click.option('--metrics', help='Comma-separated list or "none" [default: fid50k_full]', default='fid50k_full', metavar='LIST')
@click.option('--seed', help='Random seed [default: 0]', type=click.IntRange(min=0), default=0, metavar='INT')
@click.option('-n', '--dry-run', help='Print training options and exit', is_flag=True)
@click.option('--device', help='Device [default: auto = cuda if available, else cpu]', type=click.Choice(['auto', 'cuda', 'cpu', 'mps']), default='auto')
@click.option('--desc', help='String to include in the run directory name', metavar='STR')
# Dataset.
@click.option('--data', help='Training data (folder, zip or builtin:lfw-faces-100)', metavar='PATH', required=True)
@click.option('--cond', help='Train conditional model based on dataset labels [default: false]', type=bool, default=False, metavar='BOOL')
@click.option('--subset', help='Train with only N images [default: all]', type=click.IntRange(min=1), metavar='INT')
@click.option('--mirror', help='Enable dataset x-flips [default: preset (false; true for lowshot)]', type=bool, metavar='BOOL')
@click.option('--holdout', help='Keep N images out of training for the D generalisation diagnostics', type=click.IntRange(min=0), default=0, metavar='INT')
# Base config.
@click.option('--cfg', help='Base config [default: auto]', type=click.Choice(list(PRESETS)), default='auto')
@click.option('--gamma', help='Override R1 gamma', type=click.FloatRange(min=0), metavar='FLOAT')
@click.option('--kimg', help='Override training duration (fractions allowed)', type=click.FloatRange(min=0, min_open=True), metavar='KIMG')
@click.option('--batch', help='Override batch size', type=click.IntRange(min=1), metavar='INT')
@click.option('--batch-gpu', help='Images per device per round; the rest by gradient accumulation', type=click.IntRange(min=1), metavar='INT')
@click.option('--tick', help='Progress interval in kimg (fractions allowed) [default: 4]', type=click.FloatRange(min=0, min_open=True), default=4, metavar='KIMG')
@click.option('--cbase', help='Override capacity multiplier (channel base)', type=click.IntRange(min=1), metavar='INT')
@click.option('--cmax', help='Override max. feature maps', type=click.IntRange(min=1), metavar='INT')
@click.option('--map-depth', help='Override mapping network depth', type=click.IntRange(min=1), metavar='INT')
@click.option('--mbstd-group', help='Override minibatch-std group size', type=click.IntRange(min=1), metavar='INT')
@click.option('--glr', help='Override G learning rate', type=click.FloatRange(min=0, min_open=True), metavar='FLOAT')
@click.option('--dlr', help='Override D learning rate', type=click.FloatRange(min=0, min_open=True), metavar='FLOAT')
# Discriminator augmentation.
@click.option('--aug', help='Augmentation mode [default: preset (ada; diffaug for lowshot)]', type=click.Choice(['noaug', 'ada', 'fixed', 'diffaug']))
@click.option('--p', help='Augmentation probability for --aug=fixed', type=click.FloatRange(min=0, max=1), metavar='FLOAT')
@click.option('--target', help='ADA target value for --aug=ada [default: 0.6]', type=click.FloatRange(min=0, max=1), metavar='FLOAT')
@click.option('--augpipe', help='Augmentation pipeline [default: bgc]', type=click.Choice(['blit', 'geom', 'color', 'filter', 'noise', 'cutout', 'bg', 'bgc', 'bgcf', 'bgcfn', 'bgcfnc']))
@click.option('--diffaug', help=f'DiffAugment policy for --aug=diffaug [default: {DEFAULT_DIFFAUG_POLICY}]', metavar='POLICY')
# CHAIN (defaults in training.chain.CHAIN_DEFAULTS).
@click.option('--chain', help='CHAIN in D [default: none]', type=click.Choice(['none', 'batch', 'running']), default='none')
@click.option('--chain-tau', help='CHAIN target of r [default: 0.5]', type=float, metavar='FLOAT')
@click.option('--chain-lambda', help='CHAIN 0MR weight [default: 20]', type=float, metavar='FLOAT')
@click.option('--chain-lambda-p0', help='CHAIN constant added to p in the 0MR weight [default: 0]', type=float, metavar='FLOAT')
@click.option('--chain-dp', help='CHAIN change of p per D step [default: 0.001]', type=float, metavar='FLOAT')
@click.option('--chain-blocks', help='CHAIN D block resolutions, e.g. 64,128 [default: all]', metavar='LIST')
@click.option('--chain-start-kimg', help='CHAIN p stays 0 before this [default: 0]', type=float, metavar='KIMG')
# Transfer learning.
@click.option('--resume', help='Resume from a snapshot (ours: exact), a pickle/URL/name (transfer), or "latest"', metavar='PKL')
@click.option('--resume-kimg', help='kimg at which a transfer starts its schedule [default: 0]', type=click.FloatRange(min=0), default=0, metavar='KIMG')
@click.option('--freezed', help='Freeze-D [default: 0 layers]', type=click.IntRange(min=0), default=0, metavar='INT')
# Performance options.
@click.option('--fp32', help='Disable mixed-precision training', type=bool, default=False, metavar='BOOL')
@click.option('--nhwc', help='Use NHWC memory format with FP16', type=bool, default=False, metavar='BOOL')
@click.option('--allow-tf32', help='Allow PyTorch to use TF32 internally', type=bool, default=False, metavar='BOOL')
@click.option('--nobench', help='Disable cuDNN benchmarking', type=bool, default=False, metavar='BOOL')
@click.option('--workers', help='Override number of DataLoader workers [default: 3]', type=click.IntRange(min=0), default=3, metavar='INT')
def main(ctx, **kwargs):
    opts = dnnlib.EasyDict(kwargs)
    dry_run = opts.pop('dry_run')
    opts.device = _resolve_device(opts.device)
    torchrun = 'RANK' in os.environ and 'WORLD_SIZE' in os.environ
    if torchrun:
        world = int(os.environ['WORLD_SIZE'])
        if ctx.get_parameter_source('gpus') == click.core.ParameterSource.COMMANDLINE and opts.gpus != world:
            raise _bad('--gpus', f'--gpus={opts.gpus} but torchrun started WORLD_SIZE={world} processes; drop --gpus')
        opts.gpus = world

    c, desc = build_config(opts)
    if torchrun:
        _launch_torchrun(c, desc, opts.outdir)
        return
    c.run_dir = next_run_dir(opts.outdir, desc)
    _print_options(c, desc, opts.outdir)
    if dry_run:
        print('Dry run; exiting.')
        return
    print('Creating output directory...')
    _make_run_dir(c, desc, opts.outdir)
    from training.training_loop import NonFiniteLossError
    try:
        launch(c)
    except NonFiniteLossError as err:
        raise click.ClickException(str(err)) from None

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
