"""Wall time of fid5k_full on this machine, split into generation and Inception feature
extraction, at several resolutions (StyleGAN2 config-F generator, lowshot mapping depth).

By default a sample of fakes is timed and the 5,000-image cost extrapolated linearly (the
work is a fixed cost per batch); --num-gen 5000 times the whole thing. The real-image
statistics are timed on the 100-shot-obama folder (resized to each resolution in a temp
folder outside the repo), as a first, uncached run would compute them.

    python benchmarks/fid_speed.py --resolutions 64,256 --sample 64
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import PIL.Image
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from metrics import detectors, metric_utils  # noqa: E402
from training.networks import Generator  # noqa: E402

NUM_GEN = 5000

#----------------------------------------------------------------------------

def make_generator(res: int) -> Generator:
    """Config F channels (base 32768, max 512), 2 mapping layers (the lowshot preset)."""
    torch.manual_seed(0)
    return Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3,
                     mapping_kwargs=dict(num_layers=2),
                     synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=None)).eval()

#----------------------------------------------------------------------------

def resized_copy(src: str, dst: str, res: int) -> None:
    """The reals resized to res x res (Lanczos) as PNGs, outside the repo."""
    os.makedirs(dst, exist_ok=True)
    for name in sorted(os.listdir(src)):
        if name.lower().endswith(('.jpg', '.jpeg', '.png')):
            img = PIL.Image.open(os.path.join(src, name)).convert('RGB').resize((res, res), PIL.Image.LANCZOS)
            img.save(os.path.join(dst, os.path.splitext(name)[0] + '.png'))

#----------------------------------------------------------------------------

class Clock:
    """Wall seconds and this process's CPU seconds (all threads) since creation. On a shared
    machine the CPU time is the steadier number: wall time on an idle machine is about
    CPU time / threads."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> np.ndarray:
        return np.array([time.perf_counter() - self.wall, time.process_time() - self.cpu])

#----------------------------------------------------------------------------

def time_fakes(G: Generator, detector, num: int, batch: int) -> tuple:
    """([wall, cpu] seconds generating, [wall, cpu] seconds in the detector) for num fakes."""
    t_gen, t_det = np.zeros(2), np.zeros(2)
    done = 0
    with torch.no_grad():
        while done < num:
            n = min(batch, num - done)
            clock = Clock()
            img = metric_utils.to_uint8(G(torch.randn([n, G.z_dim]), None, noise_mode='random', force_fp32=True))
            t_gen += clock.read()
            clock = Clock()
            detector(img, return_features=True)
            t_det += clock.read()
            done += n
    return t_gen, t_det

#----------------------------------------------------------------------------

def time_reals(data: str, detector_spec: str) -> np.ndarray:
    """[wall, cpu] seconds for the real-image statistics of a folder (uncached)."""
    opts = metric_utils.MetricOptions(dataset_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path=data),
                                      cache=False, detector=detector_spec)
    clock = Clock()
    metric_utils.compute_feature_stats_for_dataset(opts, 'inception', dict(return_features=True), capture_mean_cov=True)
    return clock.read()

#----------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--resolutions', default='64,256')
    parser.add_argument('--sample', type=int, default=64, help='fakes actually timed per resolution')
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--data', default=os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'datasets', '100-shot-obama'))
    parser.add_argument('--detector', default='auto')
    parser.add_argument('--out', default=os.path.join(os.path.dirname(__file__), 'results', 'fid_speed'))
    args = parser.parse_args()
    if not os.path.isdir(args.data):
        sys.exit(f'--data {args.data}: folder not found (the 100-shot-obama set lives in ../shared/datasets)')

    tag, detector = detectors.get_detector(args.detector, 'inception', 'cpu')
    load_before = os.getloadavg()
    rows = []
    for res in [int(r) for r in args.resolutions.split(',')]:
        G = make_generator(res)
        time_fakes(G, detector, 2, 2) # Warm-up: first calls pay one-time costs.
        t_gen, t_det = time_fakes(G, detector, args.sample, args.batch)
        with tempfile.TemporaryDirectory() as tmp:
            resized_copy(args.data, tmp, res)
            t_real = time_reals(tmp, args.detector)
        scale = NUM_GEN / args.sample
        total = t_gen * scale + t_det * scale + t_real
        row = dict(resolution=res, timed_fakes=args.sample, extrapolated=args.sample != NUM_GEN)
        for i, kind in enumerate(['wall', 'cpu']):
            row.update({f'{kind}_gen_s_per_img': t_gen[i] / args.sample, f'{kind}_detector_s_per_img': t_det[i] / args.sample,
                        f'{kind}_reals_100_s': t_real[i], f'{kind}_fid5k_full_gen_s': t_gen[i] * scale,
                        f'{kind}_fid5k_full_detector_s': t_det[i] * scale, f'{kind}_fid5k_full_total_s': total[i]})
        print(json.dumps(row), flush=True)
        rows.append(row)

    result = dict(command='python3 benchmarks/fid_speed.py ' + ' '.join(sys.argv[1:]), detector=tag,
                  machine=dict(platform=platform.platform(), cpus=os.cpu_count(), torch=torch.__version__,
                               torch_threads=torch.get_num_threads(), loadavg_before=load_before,
                               loadavg_after=os.getloadavg(),
                               note='2 cores shared with 7 other workers: times are upper bounds'),
                  timestamp=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), rows=rows)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    write_atomic(args.out + '.json', json.dumps(result, indent=2) + '\n')
    write_atomic(args.out + '.md', to_markdown(result))

#----------------------------------------------------------------------------

def to_markdown(result: dict) -> str:
    lines = ['# fid5k_full wall time on CPU', '', f'Command: `{result["command"]}`  ',
             f'Detector: {result["detector"]}; machine: {result["machine"]["platform"]}, {result["machine"]["cpus"]} CPUs, '
             f'torch {result["machine"]["torch"]} ({result["machine"]["torch_threads"]} threads); load average '
             f'{result["machine"]["loadavg_before"][0]:.1f} before, {result["machine"]["loadavg_after"][0]:.1f} after. '
             f'{result["machine"]["note"]}.', '',
             'Wall = elapsed time on the shared machine; CPU = this process\'s CPU time over all threads '
             '(on an idle machine wall is about CPU / threads).', '',
             '| res | clock | gen s/img | Inception s/img | 100 reals s | 5k gen s | 5k Inception s | fid5k_full total | extrapolated from |',
             '|---|---|---|---|---|---|---|---|---|']
    for r in result['rows']:
        for kind in ['wall', 'cpu']:
            lines.append(f'| {r["resolution"]} | {kind} | {r[kind + "_gen_s_per_img"]:.3f} | {r[kind + "_detector_s_per_img"]:.3f} | '
                         f'{r[kind + "_reals_100_s"]:.1f} | {r[kind + "_fid5k_full_gen_s"]:.0f} | '
                         f'{r[kind + "_fid5k_full_detector_s"]:.0f} | {r[kind + "_fid5k_full_total_s"] / 60:.1f} min | '
                         f'{r["timed_fakes"]} fakes |')
    return '\n'.join(lines) + '\n'

def write_atomic(path: str, text: str) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
