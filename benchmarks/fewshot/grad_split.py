"""Split the few-shot benchmark's D weight-gradient norm into its adversarial and 0MR parts.

The benchmark's `Diag/D/grad_norm` is the norm of D's whole main-step gradient; with CHAIN
that includes the 0MR term (weight lambda * p). This script loads each method's final
snapshot from a benchmark workdir and, on the same batches (same reals, latents,
DiffAugment draws and CHAIN masks: the RNG is reseeded before each pass and D is a fresh
copy, so running statistics do not drift between passes), measures D's main-step gradient
norm three ways: the whole loss, the adversarial loss alone (0MR weight 0), and the 0MR
term alone (their difference). D runs in training mode at the snapshot's own p.

    python3 benchmarks/fewshot/grad_split.py --date 2026-12-04
"""

import copy
import json
import os
import pathlib
import shlex
import sys
from typing import Dict, List

import click
import numpy as np
import torch

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

import dnnlib                                   # noqa: E402
from benchmarks.fewshot import report           # noqa: E402
from benchmarks.fewshot.run import RESULTS_DIR, final_snapshot  # noqa: E402
from training.chain import d_weight_grads         # noqa: E402
from training.checkpoint import load_network_pkl  # noqa: E402
from training.dataset import ImageFolderDataset  # noqa: E402
from training.loss import StyleGAN2Loss         # noqa: E402

#----------------------------------------------------------------------------

def flat_grad(D: torch.nn.Module) -> torch.Tensor:
    """D's weight gradients (those d_weight_grad_norm sums over) as one vector."""
    return torch.cat([grad.flatten() for grad in d_weight_grads(D)])


def dmain_grad(G, D, augment_pipe, reals: torch.Tensor, z: torch.Tensor, seed: int, zero_zmr: bool) -> torch.Tensor:
    """D's main-step weight gradient on one batch; D is copied so its statistics are not touched."""
    D = copy.deepcopy(D).train().requires_grad_(True)
    controller = getattr(D, 'chain_controller', None)
    if controller is not None and zero_zmr:
        controller.lambda_0mr = 0.0
    loss = StyleGAN2Loss(torch.device('cpu'), G, D, augment_pipe=augment_pipe, r1_gamma=0, pl_weight=0)
    torch.manual_seed(seed)
    c = torch.zeros([reals.shape[0], 0])
    loss.accumulate_gradients(phase='Dmain', real_img=reals, real_c=c, gen_z=z, gen_c=c, gain=1, cur_nimg=0)
    return flat_grad(D)


def split_method(snapshot: str, images: torch.Tensor, batches: int, batch: int) -> Dict[str, object]:
    data = load_network_pkl(snapshot)
    G, D, augment_pipe = data['G'].eval(), data['D'], data.get('augment_pipe')
    if augment_pipe is None:  # DiffAugment is stateless: snapshots hold None, the run's options say which.
        with open(os.path.join(os.path.dirname(snapshot), 'training_options.json'), 'rt') as f:
            augment_kwargs = json.load(f).get('augment_kwargs')
        augment_pipe = None if augment_kwargs is None else dnnlib.util.construct_class_by_name(**augment_kwargs)
    controller = getattr(D, 'chain_controller', None)
    rows: Dict[str, List[float]] = dict(total=[], adversarial=[], zmr=[])
    rnd = np.random.RandomState(0)
    for i in range(batches):
        reals = images[rnd.choice(len(images), batch, replace=False)]
        z = torch.from_numpy(rnd.randn(batch, G.z_dim).astype(np.float32))
        total = dmain_grad(G, D, augment_pipe, reals, z, seed=1000 + i, zero_zmr=False)
        adversarial = dmain_grad(G, D, augment_pipe, reals, z, seed=1000 + i, zero_zmr=True)
        rows['total'].append(float(total.norm()))
        rows['adversarial'].append(float(adversarial.norm()))
        rows['zmr'].append(float((total - adversarial).norm()))
    result = dict(snapshot=snapshot, p=None if controller is None else float(controller.p), per_batch=rows)
    for key, values in rows.items():
        result[f'{key}_mean'], result[f'{key}_sd'] = report.mean_sd(values)
    return result

#----------------------------------------------------------------------------

@click.command()
@click.option('--workdir', help='Benchmark workdir [default: dnnlib cache dir/fewshot-bench/100-shot-obama-64]', metavar='DIR')
@click.option('--methods', help='Methods to split', default='noaug,da,ada,da_chain_running,da_chain_batch', show_default=True)
@click.option('--batches', help='Batches per method', type=click.IntRange(min=1), default=8, show_default=True)
@click.option('--batch', help='Batch size (the benchmark\'s)', type=click.IntRange(min=4), default=16, show_default=True)
@click.option('--date', 'date', help='Date in the result name (the benchmark\'s)', required=True, metavar='YYYY-MM-DD')
@click.option('--results-dir', help=f'Where the result goes [default: {RESULTS_DIR}]', metavar='DIR')
def main(workdir, methods, batches, batch, date, results_dir):
    """D's main-step weight-gradient norm of each final snapshot: whole, adversarial, 0MR."""
    torch.set_num_threads(1)
    workdir = workdir or dnnlib.util.make_cache_dir_path('fewshot-bench', '100-shot-obama-64')
    zips = sorted(pathlib.Path(workdir, 'data').glob('*.zip'))
    if not zips:
        raise click.ClickException(f'{workdir}/data holds no dataset zip: run benchmarks/fewshot/run.py first')
    dataset = ImageFolderDataset(path=str(zips[0]), use_labels=False)
    images = torch.from_numpy(np.stack([dataset[i][0] for i in range(len(dataset))])).float() / 127.5 - 1
    results = {}
    for method in methods.split(','):
        method_dir = os.path.join(workdir, 'runs', method)
        snapshot = final_snapshot(method_dir)
        if snapshot is None:
            raise click.ClickException(f'{method_dir}: no snapshot; is the --workdir that of a finished benchmark?')
        results[method] = split_method(snapshot, images, batches, batch)
        r = results[method]
        print(f"{method}: p {r['p']}, total {r['total_mean']:.3f}, adversarial {r['adversarial_mean']:.3f}, "
              f"0MR {r['zmr_mean']:.3f}", flush=True)

    command = 'python3 benchmarks/fewshot/grad_split.py ' + shlex.join(sys.argv[1:])
    lines = [f'# D weight-gradient norm split, few-shot benchmark {date}', '', 'Command:', '', '```', command, '```', '',
             f'Final snapshot of each method (`{workdir}`), {batches} batches of {batch} (all {len(images)} images, '
             f'each run\'s own augmentation, as trained), D in training mode at its own CHAIN p; mean ± sd over the batches. '
             f'torch {torch.__version__}, CPU.', '',
             '| method | CHAIN p | whole loss | adversarial only | 0MR only |', '|---|---|---|---|---|']
    for method, r in results.items():
        fmt = lambda k: f"{r[k + '_mean']:.3f} ± {r[k + '_sd']:.3f}" if r[k + '_sd'] is not None else f"{r[k + '_mean']:.3f}"
        p_text = '-' if r['p'] is None else f"{r['p']:.3f}"
        lines.append(f"| {method} | {p_text} | {fmt('total')} | {fmt('adversarial')} | {fmt('zmr')} |")
    folder = results_dir or RESULTS_DIR
    os.makedirs(folder, exist_ok=True)
    stem = os.path.join(folder, f'fewshot-{date}-gradsplit')
    report.write_text_atomic(stem + '.md', '\n'.join(lines) + '\n')
    report.write_text_atomic(stem + '.json', json.dumps(dict(command=command, results=results), indent=2) + '\n')
    print(f'Wrote {stem}.md, {stem}.json')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
