"""Compute quality metrics (FID, KID, precision/recall, IS, PPL) of a network pickle
against a dataset, as StyleGAN2-ADA's calc_metrics.py does, on one or more processes.

Results are printed as JSON lines and, when the pickle sits in a run directory (a folder
with training_options.json), appended to <run_dir>/metric-<name>.jsonl.

Examples:
    python calc_metrics.py --network=runs/00000-obama/network-snapshot-000300.pkl --metrics=fid5k_full
    python calc_metrics.py --network=net.pkl --data=~/datasets/obama --metrics=fid5k_full,kid50k_full --gpus=2
    python calc_metrics.py --network=net.pkl --metrics=fid5k_full --device=cpu --detector=/path/inception.pt
"""
import copy
import os
import pickle
import socket
from typing import Optional

import click
import torch

import dnnlib
from generate import resolve_device
from metrics import detectors, metric_main

DATASET_CLASS = 'training.dataset.ImageFolderDataset'

#----------------------------------------------------------------------------

def parse_metric_list(text: str) -> list:
    """'fid5k_full,kid50k_full' -> names, each checked against the registry."""
    names = [name.strip() for name in (text or '').split(',') if name.strip()]
    if not names:
        raise ValueError('no metric given; e.g. --metrics=fid50k_full')
    bad = [name for name in names if not metric_main.is_valid_metric(name)]
    if bad:
        raise ValueError(f'unknown metric{"s" if len(bad) > 1 else ""} {", ".join(bad)}; '
                         f'valid: {", ".join(metric_main.list_valid_metrics())}')
    return names

#----------------------------------------------------------------------------

def uses_vgg16(metric: str) -> bool:
    """Precision/recall and PPL use VGG16; the others Inception."""
    return metric.startswith('pr') or metric.startswith('ppl')

#----------------------------------------------------------------------------

def find_run_dir(network: str) -> Optional[str]:
    """The run directory holding a local pickle (a folder with training_options.json), else None."""
    if not os.path.isfile(network):
        return None
    folder = os.path.dirname(os.path.abspath(network))
    return folder if os.path.isfile(os.path.join(folder, 'training_options.json')) else None

#----------------------------------------------------------------------------

def dataset_kwargs_for(G: torch.nn.Module, data: Optional[str], training_set_kwargs: Optional[dict],
                       mirror: Optional[bool]) -> dnnlib.EasyDict:
    """Real-data kwargs: --data if given, else the snapshot's training set; resolution and
    labels follow G; --mirror sets xflip (the *_full metrics turn it off anyway)."""
    if data is not None:
        kwargs = dnnlib.EasyDict(class_name=DATASET_CLASS, path=data)
    elif training_set_kwargs:
        kwargs = dnnlib.EasyDict(copy.deepcopy(dict(training_set_kwargs)))
        kwargs.setdefault('class_name', DATASET_CLASS)
    else:
        raise ValueError('--data is needed: the network pickle does not record its training set '
                         '(training_set_kwargs); pass --data=PATH to the real images')
    kwargs.resolution = G.img_resolution
    kwargs.use_labels = G.c_dim != 0
    if mirror is not None:
        kwargs.xflip = mirror
    return kwargs

#----------------------------------------------------------------------------

def check_dataset(dataset_kwargs: dict, G: torch.nn.Module) -> None:
    """Open the dataset once up front, so that a bad --data fails before any work."""
    dataset = dnnlib.util.construct_class_by_name(**dataset_kwargs)
    if G.c_dim != 0 and getattr(dataset, 'label_dim', 0) != G.c_dim:
        raise ValueError(f'--data {dataset_kwargs.get("path")}: the network is conditional with c_dim={G.c_dim} '
                         f'but the dataset has label_dim={getattr(dataset, "label_dim", 0)}; use the labelled dataset it was trained on')

#----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

#----------------------------------------------------------------------------

def run_metrics(rank: int, args: dnnlib.EasyDict) -> list:
    """One process: load the network, compute every metric, report on rank 0. Returns the results."""
    if args.num_gpus > 1:
        from torch_utils import distributed
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(args.num_gpus), LOCAL_RANK=str(rank),
                          MASTER_ADDR='127.0.0.1', MASTER_PORT=str(args.port))
        distributed.init(backend='nccl' if args.device_type == 'cuda' else 'gloo',
                         rendezvous_timeout_s=args.rendezvous_timeout_s)
    device = torch.device(args.device_type, rank) if args.device_type == 'cuda' else torch.device(args.device_type)
    if args.num_gpus > 1 and device.type == 'cpu':
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.num_gpus)) # Share the cores, do not oversubscribe.
    from training.checkpoint import load_network_pkl
    data = load_network_pkl(args.network)
    G = data['G_ema'] if data.get('G_ema') is not None else data['G']
    G = G.eval().requires_grad_(False)
    results = []
    try:
        for metric in args.metrics:
            result = metric_main.calc_metric(metric, G=G, dataset_kwargs=args.dataset_kwargs, num_gpus=args.num_gpus,
                                             rank=rank, device=device, progress=args.verbose, detector=args.detector,
                                             vgg_detector=args.vgg_detector, num_gen=args.num_gen,
                                             seed=args.seed)
            if rank == 0:
                metric_main.report_metric(result, run_dir=args.run_dir, snapshot_pkl=args.network)
            results.append(result)
    finally:
        if args.num_gpus > 1:
            distributed.shutdown()
    return results

def _spawned(rank: int, args: dnnlib.EasyDict) -> None:
    run_metrics(rank, args)

#----------------------------------------------------------------------------

def calc_metrics(network: str, metrics: list, data: Optional[str] = None, mirror: Optional[bool] = None,
                 gpus: int = 1, device: str = 'auto', detector: str = 'auto', vgg_detector: str = 'auto',
                 verbose: bool = True, num_gen: Optional[int] = None, rendezvous_timeout_s: float = 120,
                 seed: int = 0) -> list:
    """Compute metrics of a network pickle; returns rank 0's result dicts (empty with gpus > 1,
    whose results are in the printed lines and the run dir's metric-*.jsonl). num_gen overrides
    the metrics' number of fakes (recorded in the result as num_gen); seed picks the fakes'
    latents (0, the default, gives every run the same fakes; recorded in the result when not 0),
    so that repeating a metric with other seeds measures its sampling noise.

    Example:
        >>> calc_metrics('net.pkl', ['fid5k_full'], data='datasets/obama')  # doctest: +SKIP
    """
    for name in metrics:
        if not metric_main.is_valid_metric(name):
            raise ValueError(f'unknown metric {name}; valid: {", ".join(metric_main.list_valid_metrics())}')
    dev = resolve_device(device)
    if gpus < 1:
        raise ValueError(f'--gpus must be at least 1, got {gpus}')
    if dev.type == 'cuda' and gpus > torch.cuda.device_count():
        raise ValueError(f'--gpus={gpus} but only {torch.cuda.device_count()} CUDA device(s) are visible')
    if dev.type == 'mps' and gpus > 1:
        raise ValueError('--gpus > 1 is not supported on MPS; use --gpus=1')

    # Load once here to check the pickle, the data and the detector before starting processes.
    from training.checkpoint import load_network_pkl
    snapshot = load_network_pkl(network)
    G = snapshot['G_ema'] if snapshot.get('G_ema') is not None else snapshot.get('G')
    if G is None:
        raise ValueError(f'--network {network}: the pickle holds no G_ema or G generator')
    dataset_kwargs = dataset_kwargs_for(G, data, snapshot.get('training_set_kwargs'), mirror)
    check_dataset(dataset_kwargs, G)
    detector_tags = []
    if any(not uses_vgg16(name) for name in metrics):
        detector_tags.append(detectors.resolve_detector(detector, 'inception')[0])
    if any(uses_vgg16(name) for name in metrics):
        detector_tags.append(detectors.resolve_detector(vgg_detector, 'vgg16')[0])

    args = dnnlib.EasyDict(network=network, metrics=list(metrics), dataset_kwargs=dataset_kwargs, num_gpus=gpus,
                           device_type=dev.type, detector=detector, vgg_detector=vgg_detector, verbose=verbose,
                           run_dir=find_run_dir(network), port=_free_port(), rendezvous_timeout_s=rendezvous_timeout_s,
                           num_gen=num_gen, seed=seed)
    if verbose:
        print(f'Network: {network}\nData: {dataset_kwargs.path}\nMetrics: {", ".join(metrics)}\n'
              f'Detectors: {", ".join(detector_tags)}\nProcesses: {gpus} on {dev.type}')
    if gpus == 1:
        return run_metrics(0, args)
    # spawn pickles only args: each child loads the network itself, safely.
    torch.multiprocessing.spawn(fn=_spawned, args=(args,), nprocs=gpus, join=True)
    return []

#----------------------------------------------------------------------------

@click.command()
@click.option('--network', 'network', help='Network pickle: path, URL or official short name', metavar='PATH', required=True)
@click.option('--metrics', help='Comma-separated list of metrics', metavar='LIST', default='fid50k_full', show_default=True)
@click.option('--data', help='Dataset folder or zip [default: the training set recorded in the pickle]', metavar='PATH')
@click.option('--mirror', help='Add x-flipped real images (ignored by the *_full metrics)', type=bool, metavar='BOOL')
@click.option('--gpus', help='Number of processes', type=click.IntRange(min=1), default=1, show_default=True)
@click.option('--device', type=click.Choice(['auto', 'cuda', 'cpu', 'mps']), default='auto', show_default=True)
@click.option('--detector', help='Inception: auto, a TorchScript path or a URL', default='auto', show_default=True)
@click.option('--vgg-detector', help='VGG16 (pr50k3*, ppl*): auto, a path or a URL', default='auto', show_default=True)
@click.option('--verbose/--quiet', help='Progress bars and details', default=True, show_default=True)
@click.option('--num-gen', help='Override the number of fakes (quick looks; the value is then not the named metric)',
              type=click.IntRange(min=2), metavar='INT')
@click.option('--seed', help='Seed of the fakes\' latents (other seeds: the metric\'s sampling noise)',
              type=click.IntRange(min=0), default=0, show_default=True)
def main(network, metrics, data, mirror, gpus, device, detector, vgg_detector, verbose, num_gen, seed):
    """Calculate quality metrics of a network pickle.

    \b
    Recommended: fid50k_full, kid50k_full, pr50k3_full, ppl2_wend, is50k.
    Few-shot:    fid5k_full (5k fakes against all reals).
    Legacy:      fid50k, kid50k, pr50k3, ppl_zfull, ppl_wfull, ppl_zend, ppl_wend.
    """
    try:
        metric_list = parse_metric_list(metrics)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint='--metrics') from None
    try:
        calc_metrics(network, metric_list, data, mirror, gpus, device, detector, vgg_detector, verbose, num_gen,
                     seed=seed)
    except (ValueError, detectors.DetectorNotFound, FileNotFoundError, pickle.UnpicklingError) as err:
        raise click.ClickException(str(err)) from None

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main() # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
