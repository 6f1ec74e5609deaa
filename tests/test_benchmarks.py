"""The benchmark script (benchmarks/): it runs end to end on CPU, writes its tables, JSON and chart.

No timing is asserted: the numbers depend on the machine.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # benchmarks/ runs from the checkout; it is not part of the installed package
    sys.path.insert(0, str(REPO_ROOT))

from helpers import TINY  # noqa: E402

from benchmarks import report, run  # noqa: E402

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
TINY_ARGS = [argument for key, value in TINY.items() for argument in ('--set', f'{key}={value}')]


def run_benchmark(*args, cwd=REPO_ROOT):
    return subprocess.run([sys.executable, '-m', 'benchmarks.run', *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_tiny_cpu_run_writes_tables_json_and_chart(tmp_path):
    markdown, results_file, chart = tmp_path / 'BENCHMARKS.md', tmp_path / 'results.json', tmp_path / 'chart.png'
    markdown.write_text('# Benchmarks\n\nProse written by hand.\n')
    done = run_benchmark('--device', 'cpu', '--threads', '1', '--variants', 'ESC', '--size', '48x32',
                         '--backends', 'naive', 'sdpa', '--dtypes', 'fp32', '--repeats', '2', '--train-batch', '2',
                         '--train-patch', '16', '--tiled-size', '96x64', '--tile', '8', '--tile-pad', '4', *TINY_ARGS,
                         '--output', str(markdown), '--json', str(results_file), '--chart', str(chart))
    assert done.returncode == 0, done.stderr[-3000:]

    results = json.loads(results_file.read_text())
    assert [(row['backend'], row['dtype']) for row in results['forward']] == [('naive', 'fp32'), ('sdpa', 'fp32')]
    for row in results['forward'] + results['train'] + results['layers']:
        assert 'error' not in row, row
        assert len(row['times']) == 2 and all(t > 0 for t in row['times'])
    for row in results['forward']:
        assert row['peak_bytes'] >= 0 and row['process_peak_bytes'] > row['peak_bytes']
    assert {row['layer'] for row in results['layers']} == {'ConvAttn', 'window attention, naive',
                                                          'window attention, sdpa'}
    assert results['tiled']['process_peak_bytes'] > 0 and results['tiled']['seconds'] > 0
    for seconds in results['breakdown']['seconds'].values():
        assert seconds['total'] > 0 and seconds['window attention (qkv and output projections included)'] > 0
    for operators in results['breakdown']['operators'].values():
        assert operators and operators[0]['operator'].startswith('aten::') and 0 < operators[0]['share'] <= 1

    text = markdown.read_text()
    assert text.startswith('# Benchmarks\n\nProse written by hand.\n')
    assert '| variant | dtype | backend | median ms |' in text and '| ESC | fp32 | sdpa |' in text
    assert '### Where the time of one inference goes: ESC, fp32 (CPU time)' in text
    assert 'Operators with the most self time in one inference, auto' in text
    assert '### Training step: batch 2, LR 16x16' in text and '### Tiled inference: 96x64 output' in text
    assert 'python -m benchmarks.run --device cpu --threads 1' in text
    assert text.count('| not measured |') == 5  # a tiny configuration decides none of the targets
    assert '](chart.png)' in text

    image = chart.read_bytes()
    assert image.startswith(PNG_SIGNATURE) and len(image) > 1000

    # The raw results alone give the same section again, without measuring.
    again = tmp_path / 'again.md'
    done = run_benchmark('--from-json', str(results_file), '--output', str(again), '--chart', str(chart))
    assert done.returncode == 0, done.stderr[-3000:]
    section = lambda text: text[text.index(report.SECTION_START.format(name='cpu')):].rstrip('\n')  # noqa: E731
    assert section(again.read_text()) == section(text)
    from matplotlib.image import imread
    height, width, _ = imread(chart).shape
    assert height > 100 and width > 100


def test_invalid_arguments_are_refused_in_one_line(capsys):
    for args, message in ((['--size', '1281x720'], '--size 1281x720 is not a multiple of --scale 4'),
                          (['--size', '1280'], 'expected WIDTHxHEIGHT'),
                          (['--set', 'n_blocks'], 'expected KEY=VALUE'),
                          (['--from-json', 'no/such/results.json'], '--from-json no/such/results.json: cannot read')):
        with pytest.raises(SystemExit) as exit_info:
            run.parse_args(args)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_cpu_peak_memory_is_the_childs_own():
    """A child's figure neither inherits this process's higher peak nor misses what the call allocates."""
    from benchmarks import measure
    ballast = bytearray(1536 * 2 ** 20)  # pages touched: this process's peak is now above 1.5 GiB
    del ballast
    assert measure.peak_rss_bytes() > 1536 * 2 ** 20
    # Naive attention in four 32x32 windows holds 4 heads x 4 windows x 1024 x 1024 fp32 scores (64 MiB) at least.
    memory = measure.peak_memory('layer', dict(kind='window', attn_type='naive', dtype='fp32', device='cpu',
                                               size=(64, 64)))
    assert memory['peak_bytes'] >= 64 * 2 ** 20
    assert memory['process_peak_bytes'] < 1536 * 2 ** 20


def _results(device='cpu', **settings):
    """Results as the script records them, with made-up numbers, for checking the report logic."""
    return {
        'environment': {'device_type': device},
        'settings': {'name': device, 'scale': 4, 'output_size': [1280, 720], 'overrides': {}, 'train_batch': 4,
                     'train_patch': 64, **settings},
        'forward': [
            {'variant': 'ESC', 'dtype': 'fp32', 'backend': 'naive', 'times': [10.0] * 3, 'cpu_times': [10.0] * 3,
             'peak_bytes': 2e9, 'process_peak_bytes': 3e9},
            {'variant': 'ESC', 'dtype': 'fp32', 'backend': 'auto', 'times': [2.0, 9.0, 2.5], 'cpu_times': [2.5] * 3,
             'peak_bytes': 1e8, 'process_peak_bytes': 2e8},
        ],
        'train': [{'variant': 'ESC', 'backend': 'naive', 'times': [1.0], 'cpu_times': [1.0]},
                  {'variant': 'ESC', 'backend': 'auto', 'times': [0.9], 'cpu_times': [0.7]}],
        'layers': [],
        'tiled': {'variant': 'ESC', 'output_size': [3840, 2160], 'process_peak_bytes': 1.5e9},
    }


def test_target_verdicts_follow_the_measurements():
    verdicts = [verdict for _, _, verdict in report.check_targets(_results())]
    # auto: median 2.5 of 10 (0.25x) and 0.05x memory; training 1.11x (wall) and 1.43x (CPU time): not met.
    assert verdicts == ['met', 'not met', 'met', 'not measured', 'not measured']
    assert [v for _, _, v in report.check_targets(_results(overrides={'n_blocks': 1}))] == ['not measured'] * 5
    gpu = _results('cuda')
    gpu['forward'][1].update(times=[0.02], process_peak_bytes=2e8)
    assert [v for _, _, v in report.check_targets(gpu)] == ['not measured'] * 4 + ['met']
    # The CPU time target: the faster of eager and compiled within 2.25 s.
    compiled = _results(compiled=None)
    compiled['compiled'] = [{'variant': 'ESC', 'eager_times': [3.0, 3.1], 'compiled_times': [2.2, 2.3]}]
    assert report.check_targets(compiled)[3][1:] == ('eager 3.05 s, compiled 2.25 s', 'met')
    compiled['compiled'][0]['compiled_times'] = [2.4]
    assert report.check_targets(compiled)[3][2] == 'not met'


@pytest.mark.slow
def test_extra_parts_compiled_swinir_and_onnxruntime(tmp_path, monkeypatch):
    from esc_arch.inference import compilation

    # Compilation itself is tested in test_compile.py (and takes a minute): here it falls back to eager.
    monkeypatch.setattr(compilation, 'compile_unavailable_reason', lambda device: 'no C++ compiler was found')
    markdown, results_file = tmp_path / 'BENCHMARKS.md', tmp_path / 'results.json'
    assert run.main(['--device', 'cpu', '--threads', '1', '--variants', 'ESC', '--size', '48x32', '--repeats', '1',
                     '--skip', 'forward', 'breakdown', 'train', 'layers', 'tiled',
                     '--extra', 'compiled', 'swinir', 'onnxruntime', *TINY_ARGS,
                     '--output', str(markdown), '--json', str(results_file)]) == 0
    results = json.loads(results_file.read_text())
    compiled, = results['compiled']
    assert not compiled['compiled_network'] and compiled['max_abs_difference'] == 0
    assert [row['network'] for row in results['swinir']] == ['ESC-light', 'SwinIR-light']
    assert [round(row['params'], -3) for row in results['swinir']] == [624_000, 930_000]  # the papers' 624K and 930K
    assert all(row['times'] and row['peak_bytes'] > 0 and row['flops'] > 0 for row in results['swinir'])
    deployed = results['onnxruntime']
    assert deployed['max_abs_difference'] < 1e-4 and deployed['file_bytes'] > 0
    assert [row['runtime'] for row in deployed['rows']] == ['PyTorch eager', 'onnxruntime']
    text = markdown.read_text()
    assert '### torch.compile against eager: 48x32 output' in text and '| no (eager fallback) |' in text
    assert '### ESC-light against SwinIR-light' in text and '### onnxruntime against PyTorch: ESC' in text


def test_write_section_replaces_only_its_own_section(tmp_path):
    path = tmp_path / 'BENCHMARKS.md'
    cpu = lambda body: '\n'.join([report.SECTION_START.format(name='cpu'), body,  # noqa: E731
                                  report.SECTION_END.format(name='cpu')])
    gpu = '\n'.join([report.SECTION_START.format(name='cuda'), 'GPU table', report.SECTION_END.format(name='cuda')])
    report.write_section(path, cpu('first CPU table'), 'cpu')
    report.write_section(path, gpu, 'cuda')
    path.write_text(path.read_text() + '\nNotes written by hand.\n')
    report.write_section(path, cpu('second CPU table'), 'cpu')
    text = path.read_text()
    assert text.startswith('# Benchmarks\n')
    assert 'second CPU table' in text and 'first CPU table' not in text
    assert 'GPU table' in text and text.endswith('Notes written by hand.\n')


def test_no_file_is_written_without_output(capsys):
    """The committed BENCHMARKS.md and results files are written only when named."""
    args = run.parse_args(['--device', 'cpu'])
    assert args.output is None and args.json is None and args.chart is None
    args = run.parse_args(['--device', 'cpu', '--output', 'BENCHMARKS.md', '--name', 'cpu-x'])
    assert (args.json, args.chart) == ('benchmarks/results_cpu-x.json', 'benchmarks/chart_cpu-x.png')
    with pytest.raises(SystemExit):
        run.parse_args(['--help'])
    assert '--output PATH' in capsys.readouterr().out


def test_machine_part_against_the_flop_limit():
    from benchmarks import machine
    assert set(machine.cpu_flags()) <= set(machine.CPU_FLAGS)

    def rows(naive, eager, compiled):
        return [{'run': 'naive', 'times': naive, 'cpu_times': [2 * t for t in naive], 'faults': [900, 1000, 5]},
                {'run': 'eager', 'times': eager, 'cpu_times': [2 * t for t in eager], 'faults': [3000]},
                {'run': 'compiled', 'times': compiled, 'cpu_times': [2 * t for t in compiled]}]

    # 149.2 G multiply-adds at 100 G/s (the faster library): a 1.492 s limit.
    record = {'setting': 'ESC x4, 1280x720 output, fp32', 'flags': ['avx2'],
              'gemm': {'MKL (torch.mm)': 50e9, 'oneDNN (1x1 convolution)': 100e9}, 'multiply_adds': 149.2e9,
              'settings': {'default': {'allocator': 'default', 'rows': rows([12.0, 11.0], [2.5, 2.3, 9.0], [2.0])},
                           'freed memory kept': {'allocator': 'applied', 'rows': rows([6.0], [2.0], [1.9])}}}
    checks = machine.target_checks(record)
    # default: eager 2.3 / 1.492 = 1.54x (met), compiled 2.0 / 1.492 = 1.34x (not met), eager / naive 0.21x (met);
    # kept: 1.34x (met), 1.27x (met), 2.0 / 6.0 = 0.33x (not met); kept eager / default naive 2.0 / 11 = 0.18x (met).
    assert [verdict for _, _, verdict in checks] == ['met', 'not met', 'met', 'met', 'met', 'not met', 'met']
    assert checks[0][1] == '2.30 s = 1.54x of 1.49 s' and checks[2][1] == '0.209x' and checks[6][1] == '0.182x'
    text = '\n'.join(machine.markdown(record, threads=2))
    assert 'with 2 torch thread(s)' in text and 'MKL (torch.mm) 50.0; oneDNN (1x1 convolution) 100.0' in text
    assert '| default | eager | 2,300.0 | 2,500.0 | 4,600.0 | 3,000 | 1.54x | 0.21x |' in text
    assert '| freed memory kept | naive | 6,000.0 | 6,000.0 | 12,000.0 | 900 | 4.02x | 1.00x |' in text
    record['settings']['default']['rows'][2] = {'run': 'compiled', 'error': 'RuntimeError: no compiler'}
    assert machine.target_checks(record)[1][2] == 'failed'
    text = '\n'.join(machine.markdown(record, threads=2))
    assert '| default | compiled | failed: RuntimeError: no compiler |' in text
    record['settings']['freed memory kept']['allocator'] = 'not applied: the C library is not glibc'
    text = '\n'.join(machine.markdown(record, threads=2))
    assert '| freed memory kept (not applied: the C library is not glibc) | naive |' in text
