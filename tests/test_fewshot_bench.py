"""Few-shot benchmark harness (benchmarks/fewshot): parsing of run directories, the
report's numbers and files, method and budget arithmetic. No training happens here: the
run directories are written by the test, in train.py's formats (DESIGN.md section 3)."""

import json
import math
import os

import click
import pytest

from benchmarks.fewshot import methods, report, run

#----------------------------------------------------------------------------

def _stats_line(kimg, total_sec, **means):
    """One stats.jsonl line as training_stats.Collector writes it: {name: {num, mean, std}}."""
    entry = {'Progress/kimg': {'num': 1, 'mean': kimg, 'std': 0}, 'Timing/total_sec': {'num': 1, 'mean': total_sec, 'std': 0}}
    for name, value in means.items():
        entry[name.replace('__', '/')] = {'num': 1, 'mean': value, 'std': 0}
    entry['timestamp'] = 1e9 + total_sec
    return entry


def _write_jsonl(path, entries, torn_tail=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wt') as f:
        for e in entries:
            f.write(json.dumps(e) + '\n')
        if torn_tail:
            f.write('{"Progress/kimg": {"num": 1, "me')  # A kill mid-write.


def _diag(kimg, sec, grad, train, holdout, fake, p):
    return _stats_line(kimg, sec, Diag__D__grad_norm=grad, Diag__D__real_train=train, Diag__D__real_holdout=holdout,
                       Diag__D__fake=fake, CHAIN__p=p, Progress__augment=0.0)


@pytest.fixture
def method_dir(tmp_path):
    """A method killed at 3.4 kimg after its 2-kimg snapshot, then resumed to 4 kimg."""
    d = tmp_path / 'runs' / 'da_chain_running'
    killed = [_diag(0.016, 10, 9.0, 1.0, 0.5, -1.0, 0.0), _diag(1.0, 110, 8.0, 2.0, 1.0, -2.0, 0.01),
              _diag(2.0, 210, 7.0, 3.0, 1.0, -3.0, 0.02), _diag(3.0, 310, 100.0, 100.0, 100.0, 100.0, 0.5),
              _diag(3.4, 350, 100.0, 100.0, 100.0, 100.0, 0.5)]  # The last two: after the last snapshot.
    resumed = [_diag(3.0, 120, 6.0, 4.0, 2.0, -4.0, 0.03), _diag(4.0, 220, 5.0, 5.0, 2.0, -5.0, 0.04)]
    _write_jsonl(str(d / '00000-obama-da' / 'stats.jsonl'), killed, torn_tail=True)
    _write_jsonl(str(d / '00001-obama-da' / 'stats.jsonl'), resumed)
    (d / '00000-obama-da' / 'training_options.json').write_text('{}')
    (d / 'not-a-run').mkdir()
    _write_jsonl(str(d / 'scores.jsonl'), [
        dict(snapshot='00000-obama-da/network-snapshot-000002.pkl', kimg=2.0, fid=80.0, num_gen=None),
        dict(snapshot='00001-obama-da/network-snapshot-000004.pkl', kimg=4.0, fid=60.0, num_gen=None),
        dict(snapshot='00000-obama-da/network-snapshot-000001.pkl', kimg=1.0, fid=120.0, num_gen=None),
        dict(snapshot='00001-obama-da/network-snapshot-000004.pkl', kimg=4.0, fid=55.0, num_gen=None),  # Rescored.
    ])
    return str(d)

#----------------------------------------------------------------------------

def test_segments_are_numbered_run_dirs_in_order(method_dir):
    names = [os.path.basename(p) for p in report.run_segments(method_dir)]
    assert names == ['00000-obama-da', '00001-obama-da']


def test_merged_stats_drop_a_killed_segments_lines_past_the_resume_point(method_dir):
    history, wall = report.merged_stats(method_dir)
    kimgs = [e['Progress/kimg']['mean'] for e in history]
    assert kimgs == [0.016, 1.0, 2.0, 3.0, 4.0]
    # Wall time: the killed segment up to its last kept line (210 s) plus the resumed one (220 s).
    assert wall == pytest.approx(210 + 220)


def test_fid_points_sorted_and_last_score_of_a_snapshot_wins(method_dir):
    assert report.fid_points(method_dir) == [(1.0, 120.0), (2.0, 80.0), (4.0, 55.0)]


def test_summary_numbers_match_a_hand_computation(method_dir):
    s = report.summarize_method(method_dir, 'da_chain_running', 'DA + CHAIN (running)')
    assert s['kimg'] == 4.0
    assert (s['best_fid'], s['best_kimg']) == (55.0, 4.0)
    # Second half of a 4-kimg run: the ticks at kimg >= 2 (2, 3, 4 after the merge).
    assert s['diag']['grad_norm'] == pytest.approx((7 + 6 + 5) / 3)
    assert s['diag']['real_train'] == pytest.approx((3 + 4 + 5) / 3)
    assert s['diag']['gap_train_holdout'] == pytest.approx((3 + 4 + 5) / 3 - (1 + 2 + 2) / 3)
    assert s['diag']['gap_train_fake'] == pytest.approx((3 + 4 + 5) / 3 + (3 + 4 + 5) / 3)
    assert s['diag']['fake_last'] == -5.0
    assert s['diag_series']['chain_p'][-1] == (4.0, 0.04)


def test_late_mean_of_nothing_is_none():
    assert report.late_mean([]) is None
    assert report.late_mean([(1.0, 3.0)]) == 3.0


def test_report_files_and_tables(method_dir, tmp_path):
    other = tmp_path / 'runs' / 'da'
    _write_jsonl(str(other / '00000-obama-da' / 'stats.jsonl'), [_diag(2.0, 50, 1.0, 1.0, 1.0, 1.0, 0.0)])
    _write_jsonl(str(other / 'scores.jsonl'), [dict(kimg=2.0, fid=90.5)])
    summaries = [report.summarize_method(method_dir, 'da_chain_running', 'DA + CHAIN (running)'),
                 report.summarize_method(str(other), 'da', 'DA')]
    grid = tmp_path / 'results' / 'fewshot-2000-01-01-da.png'
    grid.parent.mkdir()
    grid.write_bytes(b'\x89PNG fake')
    setup = dict(title='T', command='python3 benchmarks/fewshot/run.py --kimg 4', smoke=True, facts=['Data: x'])
    written = report.write_report(summaries, setup, str(tmp_path / 'results' / 'fewshot-2000-01-01.md'),
                                  samples={'da': str(grid)})
    md = open(written['md']).read()
    assert md.splitlines()[0] == '# T'
    assert '```\npython3 benchmarks/fewshot/run.py --kimg 4\n```' in md
    assert 'NOT a benchmark result' in md
    # One column per point kimg of any method; a method without that point shows '-'.
    assert '| method | kimg | FID @ 1 kimg | FID @ 2 kimg | FID @ 4 kimg | best FID (kimg) | wall time |' in md
    assert '| DA + CHAIN (running) | 4.000 | 120.00 | 80.00 | 55.00 | **55.00** (4) | 7m 10s |' in md
    assert '| DA | 2.000 | - | 90.50 | - | **90.50** (2) | 0m 50s |' in md
    assert '![DA](fewshot-2000-01-01-da.png)' in md
    data = json.load(open(written['json']))
    assert [m['best_fid'] for m in data['methods']] == [55.0, 90.5]
    pytest.importorskip('matplotlib')
    for key in ('fid_plot', 'diag_plot'):
        with open(written[key], 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'
        assert f'({os.path.basename(written[key])})' in md
    assert not [f for f in os.listdir(tmp_path / 'results') if f.startswith('.tmp')]


def test_report_names_a_reduced_fid_as_what_it_is():
    # An FID from fewer fakes than 5,000 is biased upwards: the report must not call it fid5k_full.
    label = run.fid_label(1000)
    assert '1,000 fakes' in label and label.endswith('not fid5k_full')
    assert run.fid_label(None) == 'fid5k_full'
    setup = dict(title='T', command='c', smoke=False, facts=[], fid_label=label)
    md = report.render_markdown([], setup, dict(samples={}))
    assert f'## FID ({label}) against kimg' in md
    assert 'NOT a benchmark result' not in md
    assert '## FID (fid5k_full)' in report.render_markdown([], dict(setup, fid_label='fid5k_full'), dict(samples={}))


def test_report_only_reports_a_killed_benchmark_without_training(method_dir, tmp_path):
    from click.testing import CliRunner
    workdir = tmp_path
    data_zip = workdir / 'data' / 'obama-32.zip'
    data_zip.parent.mkdir()
    import zipfile
    with zipfile.ZipFile(data_zip, 'w') as z:
        for i in range(3):
            z.writestr(f'00000/img{i:08d}.png', b'')
    args = ['--data', str(tmp_path / 'obama'), '--resolution', '32', '--methods', 'da_chain_running', '--kimg', '4',
            '--points', '2', '--num-gen', '100', '--detector', 'det.pt', '--workdir', str(workdir),
            '--results-dir', str(tmp_path / 'results'), '--date', '2000-01-01']
    (tmp_path / 'obama').mkdir()
    result = CliRunner().invoke(run.main, args + ['--report-only'])
    assert result.exit_code != 0 and 'holds no benchmark' in result.output  # Nothing to report: no calibration run either.
    config = dict(data=str(tmp_path / 'obama'), resolution=32, cbase=8192, cmax=128, map_depth=2, batch=16, seed=0,
                  holdout=10, kimg=4.0, points=2, num_gen=100, detector='det.pt')
    (workdir / 'benchmark.json').write_text(json.dumps(config))
    result = CliRunner().invoke(run.main, args + ['--report-only'])
    assert result.exit_code == 0, result.output
    md = (tmp_path / 'results' / 'fewshot-2000-01-01.md').read_text()
    assert '`--report-only`' in md and 'FID from 100 fakes vs all reals, not fid5k_full' in md
    assert '| DA + CHAIN (running) | 4.000 |' in md
    assert not (workdir / 'calibration').exists()


def test_scoring_takes_the_final_snapshot_first_and_skips_scored_ones(tmp_path, monkeypatch):
    method_dir = tmp_path / 'runs' / 'da'
    for run_name, kimgs in (('00000-obama-da', [0, 2]), ('00001-obama-da', [4, 6])):
        (method_dir / run_name).mkdir(parents=True)
        (method_dir / run_name / 'training_options.json').write_text('{}')
        for k in kimgs:
            (method_dir / run_name / f'network-snapshot-{k:06d}.pkl').write_bytes(str(k * 1000).encode())
    _write_jsonl(str(method_dir / 'scores.jsonl'), [dict(kimg=2.0, fid=50.0)])
    monkeypatch.setattr(run, 'snapshot_nimg', lambda path: int(open(path, 'rb').read()))
    order = []
    def fake_calc_metrics(cmd, log_path, env):
        order.append(os.path.basename(cmd[2]))
        return type('Completed', (), dict(stdout='{"results": {"fid5k_full": 1.0}}'))()
    monkeypatch.setattr(run, 'run_logged', fake_calc_metrics)
    cfg = run.dnnlib.EasyDict(workdir=str(tmp_path), batch=16, data_zip='d.zip', score_device='cpu', detector='x', num_gen=None)
    run.score_method(cfg, 'da', {})
    # 6 kimg (the end) first; 0 kimg (tick 0) and the already scored 2 kimg are skipped.
    assert order == ['network-snapshot-000006.pkl', 'network-snapshot-000004.pkl']
    assert [p[0] for p in report.fid_points(str(method_dir))] == [2.0, 4.0, 6.0]


def test_noise_seeds_rescore_only_the_final_snapshot_and_stay_out_of_the_curve(tmp_path, monkeypatch):
    method_dir = tmp_path / 'runs' / 'da'
    (method_dir / '00000-obama-da').mkdir(parents=True)
    for k in (1, 2):
        (method_dir / '00000-obama-da' / f'network-snapshot-{k:06d}.pkl').write_bytes(str(k * 1000).encode())
    _write_jsonl(str(method_dir / 'scores.jsonl'), [dict(kimg=2.0, fid=50.0), dict(kimg=1.0, fid=70.0)])
    monkeypatch.setattr(run, 'snapshot_nimg', lambda path: int(open(path, 'rb').read()))
    calls = []
    def fake_calc_metrics(cmd, log_path, env):
        seed = [int(a.split('=')[1]) for a in cmd if a.startswith('--seed=')]
        calls.append((os.path.basename(cmd[2]), seed))
        return type('Completed', (), dict(stdout='{"results": {"fid5k_full": %s}}' % (50.0 + 2 * seed[0])))()
    monkeypatch.setattr(run, 'run_logged', fake_calc_metrics)
    cfg = run.dnnlib.EasyDict(workdir=str(tmp_path), batch=16, data_zip='d.zip', score_device='cpu', detector='x',
                              num_gen=None, noise_seeds=2)
    run.score_method(cfg, 'da', {})
    run.score_method(cfg, 'da', {})  # Everything scored: a second pass (a --resume) runs nothing.
    assert calls == [('network-snapshot-000002.pkl', [1]), ('network-snapshot-000002.pkl', [2])]
    assert report.fid_points(str(method_dir)) == [(1.0, 70.0), (2.0, 50.0)]  # Seed 0 only.
    assert report.final_fids(str(method_dir)) == [50.0, 52.0, 54.0]
    s = report.summarize_method(str(method_dir), 'da', 'DA')
    assert s['final_fid_mean'] == pytest.approx(52.0) and s['final_fid_sd'] == pytest.approx(2.0)
    assert '| DA | - | 70.00 | 50.00 | **50.00** (2) | 52.00 ± 2.00 (3) | 0m 00s |' in report.fid_table([s])
    # Pooled over two groups: sum of squared deviations 8 + 2, over (3 - 1) + (2 - 1) dof.
    sd, dof = report.pooled_sd([[50.0, 52.0, 54.0], [10.0, 12.0], [7.0]])
    assert dof == 3 and sd == pytest.approx(math.sqrt(10 / 3))
    assert 'pooled sd **2.00** (2 degrees of freedom)' in report.noise_sentence([s])
    assert report.noise_sentence([dict(final_fids=[50.0])]) is None


def test_format_duration():
    assert report.format_duration(1234) == '20m 34s'
    assert report.format_duration(5000) == '1h 23m'
    assert report.format_duration(None) == '-'

#----------------------------------------------------------------------------

def test_parse_methods_order_all_and_errors():
    assert methods.parse_methods('da,noaug') == ['da', 'noaug']
    assert methods.parse_methods('all') == list(methods.METHODS)
    with pytest.raises(ValueError, match='unknown method.*chain; valid'):
        methods.parse_methods('da,chain')
    with pytest.raises(ValueError, match='twice'):
        methods.parse_methods('da,da')
    with pytest.raises(ValueError, match='empty'):
        methods.parse_methods(' , ')


def test_methods_differ_only_in_augmentation_and_chain():
    for name, spec in methods.METHODS.items():
        assert all(flag.split('=')[0] in ('--aug', '--diffaug', '--augpipe', '--chain') for flag in spec.flags), name
    assert methods.costliest(['noaug', 'da_chain_running', 'ada']) == 'ada'


def test_train_args_share_everything_but_the_method_flags():
    cfg = dict(data_zip='/d.zip', seed=3, batch=16, cbase=8192, cmax=128, map_depth=2)
    cfg = run.dnnlib.EasyDict(cfg)
    a = run.train_args(cfg, 'noaug', '/o', 8, 1, 2, 10)
    b = run.train_args(cfg, 'da_chain_batch', '/o', 8, 1, 2, 10)
    assert a[:-1] == b[:len(a) - 1]
    assert '--kimg=8' in a and '--holdout=10' in a and '--seed=3' in a and '--metrics=none' in a
    assert b[-3:] == methods.METHODS['da_chain_batch'].flags


def test_kimg_for_budget():
    calib = dict(sec_per_kimg=100.0, startup_sec=60.0)
    # (25 min * 60 - 60 s) / 100 s = 14.4 kimg -> a multiple of 4 points: 12.
    assert run.kimg_for_budget(25, calib, 4) == 12.0
    assert run.kimg_for_budget(2, calib, 4) == 0.6


def test_parse_metric_line_finds_the_result_among_other_output():
    out = 'Network: x\nprogress...\n{"results": {"fid5k_full": 42.5}, "metric": "fid5k_full", "num_gen": 64}\n'
    assert run.parse_metric_line(out)['results']['fid5k_full'] == 42.5
    with pytest.raises(click.ClickException, match='no fid5k_full result line'):
        run.parse_metric_line('Traceback: boom\n')

#----------------------------------------------------------------------------

def test_reference_ops_forces_the_pytorch_path_and_restores():
    import torch
    from benchmarks.fewshot import gpu_timing
    from torch_utils.ops import bias_act
    x = torch.randn([2, 3, 4, 4])
    original = bias_act.bias_act
    with pytest.raises(ValueError, match='impl'):
        bias_act.bias_act(x, impl='bogus')
    with gpu_timing.reference_ops():
        # Every call is rewritten to impl='ref', so even a bad impl reaches the PyTorch path.
        y = bias_act.bias_act(x, act='lrelu', impl='bogus')
    assert bias_act.bias_act is original
    torch.testing.assert_close(y, torch.nn.functional.leaky_relu(x, 0.2) * 2 ** 0.5)


def test_gpu_table_reads_timing_and_runs(method_dir, tmp_path):
    from click.testing import CliRunner
    from benchmarks.fewshot import gpu_timing
    timing = tmp_path / 'timing.json'
    timing.write_text(json.dumps(dict(res=256, batch=16, repeats=3, gpu='X', plugin=dict(g_forward_sec=0.01, train_step_sec=0.1),
                                      pytorch=dict(g_forward_sec=0.03, train_step_sec=0.15))))
    result = CliRunner().invoke(gpu_timing.cli, ['table', '--timing', str(timing), '--runs', str(tmp_path / 'runs')])
    assert result.exit_code == 0, result.output
    assert '| G forward              |    0.0100 |    0.0300 |    3.00x |' in result.output
    assert '| da_chain_running   |   4.00 |' in result.output


def test_gpu_check_script_parses_and_refuses_without_cuda():
    import subprocess
    import torch
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'benchmarks', 'gpu_check.sh')
    assert subprocess.run(['bash', '-n', script]).returncode == 0
    if torch.cuda.is_available():
        pytest.skip('a CUDA device is present: the refusal path cannot be exercised')
    proc = subprocess.run(['bash', script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert 'no CUDA device is visible to PyTorch' in proc.stderr

#----------------------------------------------------------------------------

def test_grad_split_parts_are_reproducible_and_sum_to_the_whole():
    import torch
    from benchmarks.fewshot import grad_split
    from training.diffaug import DiffAugment
    from training.networks import Discriminator, Generator
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=1),
                  synthesis_kwargs=dict(channel_base=128, channel_max=8)).eval()
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=128, channel_max=8,
                      chain_kwargs=dict(variant='running'), epilogue_kwargs=dict(mbstd_group_size=4))
    D.chain_controller.p.fill_(0.5)  # Half the planes normalised: the masks matter.
    reals, z = torch.rand([4, 3, 16, 16]) * 2 - 1, torch.randn([4, 8])
    args = (G, D, DiffAugment(), reals, z)
    total = grad_split.dmain_grad(*args, seed=7, zero_zmr=False)
    assert torch.equal(total, grad_split.dmain_grad(*args, seed=7, zero_zmr=False))  # Same masks and draws.
    assert not torch.equal(total, grad_split.dmain_grad(*args, seed=8, zero_zmr=False))
    adversarial = grad_split.dmain_grad(*args, seed=7, zero_zmr=True)
    assert float(D.chain_controller.lambda_0mr) == 20.0  # The caller's D is left as it was.
    # The loss is adversarial + lambda * p * 0MR on identical draws, so the part that
    # total - adversarial isolates must scale exactly with lambda.
    D.chain_controller.lambda_0mr = 60.0
    tripled = grad_split.dmain_grad(*args, seed=7, zero_zmr=False)
    assert float((total - adversarial).norm()) > 0
    torch.testing.assert_close(tripled - adversarial, 3 * (total - adversarial), rtol=1e-4, atol=1e-6)
