"""Reading the few-shot benchmark's runs and writing its report (issue 8).

A method's folder (`<workdir>/runs/<method>/`) holds train.py's numbered run directories:
one, or several when a killed benchmark was continued (`--resume latest` starts a new run
directory at the last snapshot). Their `stats.jsonl` lines (DESIGN.md section 3) are merged
into one history, dropping the lines a killed segment wrote after its last snapshot. The
FID of each scored snapshot is in `scores.jsonl` beside them, one JSON line per snapshot:
`{"snapshot": path, "kimg": float, "fid": float, "num_gen": int or null, ...}`.

The report is a Markdown file with the command at the top, a table per method (kimg, FID
at each point, best FID, wall time), a table of the CHAIN diagnostics read from
stats.jsonl (D weight-gradient norm; D's raw output on real-train, real-held-out and fake
images), a plot of FID against kimg, a plot of the diagnostics, and sample grids.
"""

import json
import math
import os
import re
import statistics
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

#----------------------------------------------------------------------------
# stats.jsonl names the report reads (written by training/training_loop.py).

KIMG = 'Progress/kimg'
TOTAL_SEC = 'Timing/total_sec'
DIAG_NAMES = {
    'grad_norm':    'Diag/D/grad_norm',
    'real_train':   'Diag/D/real_train',
    'real_holdout': 'Diag/D/real_holdout',
    'fake':         'Diag/D/fake',
    'chain_p':      'CHAIN/p',
    'augment_p':    'Progress/augment',
}

#----------------------------------------------------------------------------

def read_jsonl(path: str) -> List[dict]:
    """Every complete JSON line of a file ([] when absent); a torn last line is ignored."""
    if not os.path.isfile(path):
        return []
    entries = []
    with open(path, 'rt') as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # A process killed mid-write leaves a partial line.
    return entries

#----------------------------------------------------------------------------

def run_segments(method_dir: str) -> List[str]:
    """train.py run directories (`<id:05d>-<desc>`) in `method_dir`, oldest first."""
    if not os.path.isdir(method_dir):
        return []
    runs = [d for d in os.listdir(method_dir) if re.match(r'^\d+-', d) and os.path.isdir(os.path.join(method_dir, d))]
    return [os.path.join(method_dir, d) for d in sorted(runs, key=lambda d: int(d.split('-')[0]))]

#----------------------------------------------------------------------------

def _mean(entry: dict, name: str) -> Optional[float]:
    value = entry.get(name)
    if isinstance(value, dict):
        value = value.get('mean')
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def merged_stats(method_dir: str) -> Tuple[List[dict], float]:
    """(stats lines of all segments as one history, training wall seconds).

    A segment's lines at or beyond the next segment's first kimg are dropped: the killed
    run computed them after its last snapshot, and the resumed run redid that work. The
    wall time sums each segment's last kept `Timing/total_sec` (start-up included).
    """
    segments = [read_jsonl(os.path.join(run, 'stats.jsonl')) for run in run_segments(method_dir)]
    segments = [[e for e in seg if _mean(e, KIMG) is not None] for seg in segments]
    segments = [seg for seg in segments if seg]
    history: List[dict] = []
    wall = 0.0
    for i, seg in enumerate(segments):
        if i + 1 < len(segments):
            next_start = _mean(segments[i + 1][0], KIMG)
            seg = [e for e in seg if _mean(e, KIMG) < next_start]
        if not seg:
            continue
        history += seg
        wall += _mean(seg[-1], TOTAL_SEC) or 0.0
    return history, wall


def series(history: Sequence[dict], name: str) -> List[Tuple[float, float]]:
    """[(kimg, mean of `name`)] over the ticks that reported it."""
    points = []
    for entry in history:
        kimg, value = _mean(entry, KIMG), _mean(entry, name)
        if kimg is not None and value is not None:
            points.append((kimg, value))
    return points


def late_mean(points: Sequence[Tuple[float, float]], fraction: float = 0.5) -> Optional[float]:
    """Mean of the values whose kimg lies in the last `fraction` of the run (None if none).

    Per-tick D outputs are measured on only a few images, so one tick is noisy; the second
    half of training is where the methods' differences show.
    """
    if not points:
        return None
    end = max(k for k, _ in points)
    values = [v for k, v in points if k >= end * (1 - fraction)]
    return sum(values) / len(values)

#----------------------------------------------------------------------------

def _scores_by_seed(method_dir: str) -> Dict[int, Dict[float, float]]:
    """{fake seed: {kimg: fid}} from scores.jsonl (no 'seed' key: seed 0; a rescored snapshot: the last line wins)."""
    result: Dict[int, Dict[float, float]] = {}
    for entry in read_jsonl(os.path.join(method_dir, 'scores.jsonl')):
        if isinstance(entry.get('kimg'), (int, float)) and isinstance(entry.get('fid'), (int, float)):
            result.setdefault(int(entry.get('seed', 0)), {})[round(float(entry['kimg']), 3)] = float(entry['fid'])
    return result


def fid_points(method_dir: str) -> List[Tuple[float, float]]:
    """[(kimg, fid)] of the fake seed 0 (every point's), sorted by kimg."""
    return sorted(_scores_by_seed(method_dir).get(0, {}).items())


def final_fids(method_dir: str) -> List[float]:
    """The final point's FID under every fake seed it was scored with (seed 0 first)."""
    scores = _scores_by_seed(method_dir)
    if not scores.get(0):
        return []
    last = max(scores[0])
    return [scores[seed][last] for seed in sorted(scores) if last in scores[seed]]


def mean_sd(values: Sequence[float]) -> Tuple[Optional[float], Optional[float]]:
    """(mean, sample standard deviation with n - 1); None where undefined."""
    if not values:
        return None, None
    return statistics.mean(values), statistics.stdev(values) if len(values) >= 2 else None


def pooled_sd(groups: Sequence[Sequence[float]]) -> Tuple[Optional[float], int]:
    """(pooled sample sd of several groups, its degrees of freedom sum(n_i - 1)): the FID's
    sampling noise when each group is one snapshot scored with several fake seeds."""
    dof = sum(len(g) - 1 for g in groups if len(g) >= 2)
    if dof == 0:
        return None, 0
    squares = sum(sum((v - sum(g) / len(g)) ** 2 for v in g) for g in groups if len(g) >= 2)
    return math.sqrt(squares / dof), dof


def summarize_method(method_dir: str, name: str, label: str) -> Dict[str, Any]:
    """Everything the report says about one method, as plain JSON-able values."""
    history, wall = merged_stats(method_dir)
    fids = fid_points(method_dir)
    finals = final_fids(method_dir)
    final_mean, final_sd = mean_sd(finals)
    diag_series = {key: series(history, stat) for key, stat in DIAG_NAMES.items()}
    diag = {key: late_mean(points) for key, points in diag_series.items()}
    for key in ('real_train', 'real_holdout', 'fake'):
        points = diag_series[key]
        diag[f'{key}_last'] = points[-1][1] if points else None
    if diag['real_train'] is not None and diag['real_holdout'] is not None:
        diag['gap_train_holdout'] = diag['real_train'] - diag['real_holdout']
    if diag['real_train'] is not None and diag['fake'] is not None:
        diag['gap_train_fake'] = diag['real_train'] - diag['fake']
    best = min(fids, key=lambda p: p[1]) if fids else None
    return dict(
        name=name,
        label=label,
        kimg=_mean(history[-1], KIMG) if history else None,
        wall_sec=wall,
        fid=fids,
        best_fid=best[1] if best else None,
        best_kimg=best[0] if best else None,
        final_fids=finals,
        final_fid_mean=final_mean,
        final_fid_sd=final_sd,
        diag=diag,
        diag_series=diag_series,
    )

#----------------------------------------------------------------------------
# Markdown.

def _fmt(value: Optional[float], digits: int = 2) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def format_duration(seconds: Optional[float]) -> str:
    """1234 -> '20m 34s'; 5000 -> '1h 23m'."""
    if seconds is None:
        return '-'
    s = int(round(seconds))
    if s < 3600:
        return f'{s // 60}m {s % 60:02d}s'
    return f'{s // 3600}h {(s % 3600) // 60:02d}m'


def point_columns(summaries: Sequence[dict]) -> List[float]:
    """The FID points' kimg, shared by the methods (same batch and ticks give the same kimg)."""
    kimgs = sorted({k for s in summaries for k, _ in s['fid']})
    return kimgs


def fid_table(summaries: Sequence[dict]) -> List[str]:
    columns = point_columns(summaries)
    with_seeds = any(len(s.get('final_fids', [])) >= 2 for s in summaries)
    head = ['method', 'kimg'] + [f'FID @ {k:g} kimg' for k in columns] + ['best FID (kimg)']
    head += ['final FID over fake seeds: mean ± sd (n)'] if with_seeds else []
    head += ['wall time']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for s in summaries:
        by_kimg = dict(s['fid'])
        cells = [s['label'], _fmt(s['kimg'], 3)] + [_fmt(by_kimg.get(k)) for k in columns]
        cells.append('-' if s['best_fid'] is None else f"**{s['best_fid']:.2f}** ({s['best_kimg']:g})")
        if with_seeds:
            n = len(s.get('final_fids', []))
            cells.append('-' if n < 2 else f"{s['final_fid_mean']:.2f} ± {s['final_fid_sd']:.2f} ({n})")
        cells.append(format_duration(s['wall_sec']))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def noise_sentence(summaries: Sequence[dict]) -> Optional[str]:
    """What the fake-seed rescoring says about the resolution of the FID table, or None without it."""
    sd, dof = pooled_sd([s.get('final_fids', []) for s in summaries])
    if sd is None:
        return None
    return (f'Sampling noise of one FID value (the final snapshots rescored with other fake seeds): pooled sd '
            f'**{sd:.2f}** ({dof} degrees of freedom). Two single FIDs then differ by noise alone with sd '
            f'{math.sqrt(2) * sd:.2f}; a difference under about {2 * math.sqrt(2) * sd:.1f} is not resolved. This '
            'is the noise of the fakes only; how much a run varies with its training seed is not in it.')


def diag_table(summaries: Sequence[dict]) -> List[str]:
    head = ['method', 'D grad norm', 'D(real train)', 'D(real held-out)', 'D(fake)',
            'train - held-out', 'train - fake', 'CHAIN p (end)', 'ADA p (end)']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for s in summaries:
        d = s['diag']
        chain_p = s['diag_series']['chain_p'][-1][1] if s['diag_series']['chain_p'] else None
        aug_p = s['diag_series']['augment_p'][-1][1] if s['diag_series']['augment_p'] else None
        cells = [s['label'], _fmt(d.get('grad_norm'), 3), _fmt(d.get('real_train'), 3), _fmt(d.get('real_holdout'), 3),
                 _fmt(d.get('fake'), 3), _fmt(d.get('gap_train_holdout'), 3), _fmt(d.get('gap_train_fake'), 3),
                 _fmt(chain_p, 3), _fmt(aug_p, 3)]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def render_markdown(summaries: Sequence[dict], setup: Dict[str, Any], files: Dict[str, Any]) -> str:
    """The whole report. setup: title, command, smoke (bool), facts (list of 'key: value'
    lines); files: 'fid_plot', 'diag_plot' (basenames or None), 'samples' {method: basename}."""
    out = [f"# {setup['title']}", '', 'Command:', '', '```', setup['command'], '```', '']
    if setup.get('smoke'):
        out += ['> **Smoke run: NOT a benchmark result.** Tiny network, few kimg and/or an FID from fewer than '
                '5,000 fakes; it only shows that the pipeline produces the report.', '']
    out += ['## Setup', ''] + [f'- {line}' for line in setup.get('facts', [])] + ['']
    out += [f"## FID ({setup.get('fid_label', 'fid5k_full')}) against kimg", ''] + fid_table(summaries) + ['']
    noise = noise_sentence(summaries)
    if noise:
        out += [noise, '']
    if files.get('fid_plot'):
        out += [f"![FID against kimg]({files['fid_plot']})", '']
    out += ['## CHAIN diagnostics (stats.jsonl)', '',
            'Means over the second half of training of the per-tick values: D\'s weight-gradient norm '
            '(main D step, before the optimizer), and D\'s raw output (evaluation mode: no augmentation, '
            'CHAIN deterministic) on training reals, held-out reals and fakes of the same count. '
            'CHAIN claims smaller gradient norms and smaller gaps.', '']
    out += diag_table(summaries) + ['']
    if files.get('diag_plot'):
        out += [f"![Diagnostics against kimg]({files['diag_plot']})", '']
    if files.get('samples'):
        out += ['## Samples (final snapshot, G_ema, seeds shared by all methods)', '']
        for s in summaries:
            path = files['samples'].get(s['name'])
            if path:
                out += [f"### {s['label']}", '', f"![{s['label']}]({path})", '']
    return '\n'.join(out).rstrip() + '\n'

#----------------------------------------------------------------------------
# Plots (matplotlib is optional: without it the report has tables only).

def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig, path: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix='.tmp-', suffix='.png')
    os.close(fd)
    fig.savefig(tmp, dpi=90)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def plot_fid(summaries: Sequence[dict], path: str, fid_label: str = 'fid5k_full') -> bool:
    """FID against kimg, one line per method. Returns False when matplotlib is missing."""
    fig = _figure(6.5, 4.2)
    if fig is None:
        return False
    ax = fig.add_subplot(1, 1, 1)
    for s in summaries:
        if s['fid']:
            xs, ys = zip(*s['fid'])
            ax.plot(xs, ys, marker='o', label=s['label'])
    ax.set_xlabel('kimg')
    ax.set_ylabel(f'FID ({fid_label})')
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save_png(fig, path)
    return True


def plot_diagnostics(summaries: Sequence[dict], path: str) -> bool:
    """D grad norm, D(real train) - D(real held-out), D(real train) - D(fake) against kimg."""
    fig = _figure(13, 3.8)
    if fig is None:
        return False
    panels = [('D weight-gradient norm', lambda s: s['diag_series']['grad_norm']),
              ('D(real train) - D(real held-out)', lambda s: _difference(s['diag_series']['real_train'], s['diag_series']['real_holdout'])),
              ('D(real train) - D(fake)', lambda s: _difference(s['diag_series']['real_train'], s['diag_series']['fake']))]
    for i, (title, get) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for s in summaries:
            points = get(s)
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, label=s['label'], marker='.' if len(xs) < 30 else None)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel('kimg')
        ax.grid(alpha=0.3)
        if ax.lines and i == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    _save_png(fig, path)
    return True


def _difference(a: Sequence[Tuple[float, float]], b: Sequence[Tuple[float, float]]) -> List[Tuple[float, float]]:
    """Pointwise a - b at the kimg both have."""
    other = dict(b)
    return [(k, v - other[k]) for k, v in a if k in other]

#----------------------------------------------------------------------------

def write_text_atomic(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix='.tmp-')
    with os.fdopen(fd, 'wt') as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_report(summaries: Sequence[dict], setup: Dict[str, Any], md_path: str,
                 samples: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Write <stem>.md, <stem>.json, <stem>-fid.png and <stem>-diag.png beside each other.

    md_path: the Markdown file; samples: {method: PNG path} already in the same folder.
    Returns {kind: path} of the files written.
    """
    folder, stem = os.path.dirname(os.path.abspath(md_path)), os.path.splitext(os.path.basename(md_path))[0]
    os.makedirs(folder, exist_ok=True)
    written = {}
    fid_png, diag_png = os.path.join(folder, f'{stem}-fid.png'), os.path.join(folder, f'{stem}-diag.png')
    files = dict(fid_plot=None, diag_plot=None, samples={})
    if plot_fid(summaries, fid_png, setup.get('fid_label', 'fid5k_full')):
        files['fid_plot'] = os.path.basename(fid_png)
        written['fid_plot'] = fid_png
    if plot_diagnostics(summaries, diag_png):
        files['diag_plot'] = os.path.basename(diag_png)
        written['diag_plot'] = diag_png
    for name, path in (samples or {}).items():
        files['samples'][name] = os.path.relpath(path, folder)
    write_text_atomic(md_path, render_markdown(summaries, setup, files))
    written['md'] = md_path
    json_path = os.path.join(folder, f'{stem}.json')
    write_text_atomic(json_path, json.dumps(dict(setup=setup, methods=list(summaries), files=files), indent=2) + '\n')
    written['json'] = json_path
    return written

#----------------------------------------------------------------------------
