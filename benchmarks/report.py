"""Benchmark results as markdown tables, target checks and a PNG chart."""
import os
import statistics

from . import machine

MIB = 2 ** 20
PAPER_GPU_MS, PAPER_GPU_BYTES = 21.9, 215e6  # ESC x4 at 1280x720 output, the paper's (unnamed) GPU
CPU_TARGET_MS = 2250  # ESC x4 at 1280x720 output on the 2-core CPU: 1.4x its fp32 FLOP limit (1.6 s)
SECTION_START, SECTION_END = '<!-- benchmark results: {name} (written by benchmarks.run) -->', \
    '<!-- end of benchmark results: {name} -->'


def median_ms(row, key='times'):
    """Median of a result row's timings in milliseconds (``key``: ``times`` for wall clock,
    ``cpu_times`` for CPU time), or None if it has none."""
    return statistics.median(row[key]) * 1000 if row.get(key) else None


def cpu_ms(row):
    """Median CPU time of a result row in milliseconds (CPU runs), or None."""
    return median_ms(row, 'cpu_times')


def _ms(value):
    return '-' if value is None else f'{value:,.1f}'


def _mib(value):
    return '-' if value is None else f'{value / MIB:,.1f}'


def _spread(row):
    times = row.get('times')
    return f'{min(times) * 1000:,.1f} - {max(times) * 1000:,.1f}' if times else '-'


def _ratio(value, reference):
    return f'{value / reference:.2f}x' if value and reference else '-'


def _first_ms(row):
    return _ms(row['first'] * 1000) if 'first' in row else '-'


def _error_or(row, text):
    return f'failed: {row["error"]}' if row.get('error') else text


def _table(header, rows):
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(cell) for cell in row) + ' |' for row in rows]
    return '\n'.join(lines)


def _find(rows, **keys):
    return next((row for row in rows if all(row.get(k) == v for k, v in keys.items())), None)


def _is_paper_setting(results):
    settings = results['settings']
    return not settings['overrides'] and settings['scale'] == 4 and tuple(settings['output_size']) == (1280, 720)


def check_targets(results):
    """The issue's targets that this run can decide, as ``(target, measured, verdict)`` triples.

    A target whose setting was not measured (another device, variant or size) is listed with the
    verdict ``not measured``.
    """
    settings, device = results['settings'], results['environment']['device_type']
    checks = []
    forward_naive = _find(results['forward'], variant='ESC', dtype='fp32', backend='naive')
    forward_auto = _find(results['forward'], variant='ESC', dtype='fp32', backend='auto')
    target = 'CPU, ESC x4, 1280x720 output, eval: auto <= 0.3x the time and 0.3x the peak memory of naive'
    if device == 'cpu' and _is_paper_setting(results) and forward_naive and forward_auto \
            and median_ms(forward_naive) and median_ms(forward_auto) \
            and forward_naive.get('peak_bytes') and forward_auto.get('peak_bytes'):
        time_ratio = median_ms(forward_auto) / median_ms(forward_naive)
        cpu_ratio = cpu_ms(forward_auto) / cpu_ms(forward_naive)
        memory_ratio = forward_auto['peak_bytes'] / forward_naive['peak_bytes']
        met = max(time_ratio, cpu_ratio) <= 0.3 and memory_ratio <= 0.3
        checks.append((target, f'time {time_ratio:.2f}x (CPU time {cpu_ratio:.2f}x), memory {memory_ratio:.3f}x',
                       'met' if met else 'not met'))
    else:
        checks.append((target, '-', 'not measured'))

    train_naive = _find(results['train'], variant='ESC', backend='naive')
    train_auto = _find(results['train'], variant='ESC', backend='auto')
    target = 'CPU training step (batch 4, LR 64x64): auto >= 1.3x faster than naive'
    if device == 'cpu' and not settings['overrides'] and settings['train_batch'] == 4 \
            and settings['train_patch'] == 64 and train_naive and train_auto \
            and median_ms(train_naive) and median_ms(train_auto):
        speedup = median_ms(train_naive) / median_ms(train_auto)
        cpu_speedup = cpu_ms(train_naive) / cpu_ms(train_auto)
        checks.append((target, f'{speedup:.2f}x (CPU time {cpu_speedup:.2f}x)',
                       'met' if min(speedup, cpu_speedup) >= 1.3 else 'not met'))
    else:
        checks.append((target, '-', 'not measured'))

    tiled = results.get('tiled')
    target = 'CPU, tiled inference of a 3840x2160 output (ESC x4): peak memory < 2 GB'
    if device == 'cpu' and tiled and not settings['overrides'] and settings['scale'] == 4 \
            and tiled.get('variant') == 'ESC' and tuple(tiled['output_size']) == (3840, 2160) \
            and tiled.get('process_peak_bytes'):
        peak = tiled['process_peak_bytes']
        checks.append((target, f'{peak / 1e9:.2f} GB (whole process)', 'met' if peak < 2e9 else 'not met'))
    else:
        checks.append((target, '-', 'not measured'))

    target = f'CPU, ESC x4, 1280x720 output, fp32, fastest path (eager or compiled): <= {CPU_TARGET_MS / 1000:g} s'
    compiled = _find(results.get('compiled') or [], variant='ESC')
    if device == 'cpu' and _is_paper_setting(results) and compiled and compiled.get('eager_times') \
            and compiled.get('compiled_times'):
        eager_ms, compiled_ms = median_ms(compiled, 'eager_times'), median_ms(compiled, 'compiled_times')
        checks.append((target, f'eager {eager_ms / 1000:.2f} s, compiled {compiled_ms / 1000:.2f} s',
                       'met' if min(eager_ms, compiled_ms) <= CPU_TARGET_MS else 'not met'))
    else:
        checks.append((target, '-', 'not measured'))

    target = (f'GPU, ESC x4, 1280x720 output, fp32, auto: within 1.5x of the paper\'s {PAPER_GPU_MS} ms '
              f'and {PAPER_GPU_BYTES / 1e6:.0f} MB')
    gpu_auto = forward_auto if device == 'cuda' and _is_paper_setting(results) else None
    if gpu_auto and median_ms(gpu_auto) and gpu_auto.get('process_peak_bytes'):
        ms, peak = median_ms(gpu_auto), gpu_auto['process_peak_bytes']
        met = ms <= 1.5 * PAPER_GPU_MS and peak <= 1.5 * PAPER_GPU_BYTES
        checks.append((target, f'{ms:.1f} ms, {peak / 1e6:.0f} MB (all allocations)', 'met' if met else 'not met'))
    else:
        checks.append((target, '-', 'not measured'))
    if results.get('machine'):
        checks += machine.target_checks(results['machine'])
    return checks


def markdown_section(results, chart_link):
    """The markdown of one run: machine, command, targets and result tables."""
    env, settings = results['environment'], results['settings']
    on_cpu = env['device_type'] == 'cpu'
    width, height = settings['output_size']
    scale = settings['scale']
    lines = [
        SECTION_START.format(name=settings['name']),
        f'## Run `{settings["name"]}`: {env["device_type"].upper()}, {env["device_name"]}, '
        f'{env["threads"]} torch thread(s)',
        '',
        f'Measured {env["date"]} with:',
        '',
        '```bash',
        env['command'],
        '```',
        '',
        f'- machine: {env["machine"]}',
        f'- software: Python {env["python"]}, torch {env["torch"]}; {env["threads"]} torch thread(s)',
        f'- load average (1 min) at the start and end of the run: {env["load_start"]} and {env["load_end"]}'
        if env.get('load_start') else '- load average: not available',
        f'- inference on one {width}x{height} output image (LR {width // scale}x{height // scale}, '
        f'x{scale}), untrained (random) weights'
        + (f'; hyperparameters changed: {settings["overrides"]}' if settings['overrides'] else ''),
        f'- latency: median of {settings["repeats"]} timed calls after {settings["warmup"]} warm-up call(s); '
        'the backends take turns call by call, so a change of load hits them alike; "first call" includes '
        'one-off costs (FlexAttention compiles on its first call)'
        + ('; "CPU ms" is the CPU time of the process (all threads), which leaves out time spent waiting '
           'for a core' if on_cpu else ''),
        f'- peak memory: {env["memory_method"]}',
        '',
        '### Targets',
        '',
        _table(['target', 'measured', 'verdict'], check_targets(results)),
        '',
    ]
    cpu_header = ['median CPU ms'] if on_cpu else []
    if results['forward']:
        lines += [f'### Inference, batch 1, {width}x{height} output', '']
        rows = []
        for row in results['forward']:
            naive = _find(results['forward'], variant=row['variant'], dtype=row['dtype'], backend='naive') or {}
            cpu = [_ms(cpu_ms(row))] if on_cpu else []
            cpu_ratio = [_ratio(cpu_ms(row), cpu_ms(naive))] if on_cpu else []
            rows.append([row['variant'], row['dtype'], row['backend'], _error_or(row, _ms(median_ms(row))),
                         _spread(row), *cpu, _first_ms(row), _mib(row.get('peak_bytes')),
                         _ratio(median_ms(row), median_ms(naive)), *cpu_ratio,
                         _ratio(row.get('peak_bytes'), naive.get('peak_bytes'))])
        lines += [_table(['variant', 'dtype', 'backend', 'median ms', 'min - max ms', *cpu_header, 'first call ms',
                          'peak MiB', 'time vs naive', *(['CPU time vs naive'] if on_cpu else []),
                          'memory vs naive'], rows), '']
    breakdown = results.get('breakdown')
    if breakdown:
        clock = 'CPU time' if on_cpu else 'wall clock, synchronised around each module'
        lines += [f'### Where the time of one inference goes: {breakdown["variant"]}, fp32 ({clock})', '',
                  'Measured with hooks around the modules of each part; "other" is the rest (the convolutions '
                  'outside these parts, residual additions, upsampling).', '']
        seconds = breakdown['seconds']
        rows = [[part, *[cell for backend in ('naive', 'auto') for cell in (
                    _ms(seconds[backend][part] * 1000),
                    f'{100 * seconds[backend][part] / seconds[backend]["total"]:.0f}%')]]
                for part in seconds['naive']]
        lines += [_table(['part', 'naive ms', 'naive share', 'auto ms', 'auto share'], rows), '']
        for backend, operators in breakdown.get('operators', {}).items():
            lines += [f'Operators with the most self time in one inference, {backend} (torch.profiler, '
                      'which slows every call a little; grouped by input shapes):', '',
                      _table(['operator', 'input shapes', 'calls', 'self ms', 'share of all operators'],
                             [[op['operator'], f'`{op["shapes"]}`', op['calls'], _ms(op['seconds'] * 1000),
                               f'{100 * op["share"]:.0f}%'] for op in operators]), '']
    if results['train']:
        lines += [f'### Training step: batch {settings["train_batch"]}, LR {settings["train_patch"]}x'
                  f'{settings["train_patch"]}, fp32, L1 loss, backward, Adam', '']
        rows = []
        for row in results['train']:
            naive = _find(results['train'], variant=row['variant'], backend='naive') or {}
            cpu = [_ms(cpu_ms(row))] if on_cpu else []
            cpu_speedup = [_ratio(cpu_ms(naive), cpu_ms(row))] if on_cpu else []
            rows.append([row['variant'], row['backend'], _error_or(row, _ms(median_ms(row))), _spread(row), *cpu,
                         _ratio(median_ms(naive), median_ms(row)), *cpu_speedup])
        lines += [_table(['variant', 'backend', 'median ms', 'min - max ms', *cpu_header, 'speed-up over naive',
                          *(['CPU-time speed-up'] if on_cpu else [])], rows), '']
    if results['layers']:
        shape = results['layers'][0]['shape']
        lines += [f'### Single layers on a {shape} feature map, fp32', '',
                  'ConvAttn: the dynamic-kernel MLP, the shared large-kernel convolution and the 1x1 convolution '
                  'after it. Window attention: qkv projection, attention in windows, output projection.', '']
        rows = [[row['layer'], row['pass'], _error_or(row, _ms(median_ms(row))), _spread(row),
                 *([_ms(cpu_ms(row))] if on_cpu else []), _mib(row.get('peak_bytes'))] for row in results['layers']]
        lines += [_table(['layer', 'pass', 'median ms', 'min - max ms', *cpu_header, 'peak MiB'], rows), '']
    tiled = results.get('tiled')
    if tiled:
        out_w, out_h = tiled['output_size']
        lines += [f'### Tiled inference: {out_w}x{out_h} output, fp32', '',
                  f'{tiled["variant"]} x{scale}, backend {tiled["backend"]}, tiles of {tiled["tile_size"]} LR pixels '
                  f'with {tiled["tile_pad"]} pixels of context (`esc_arch.inference.tiled_forward`), one cold call.',
                  '',
                  _table(['time s', 'peak MiB (over baseline)', 'peak MiB (whole process)'],
                         [[_error_or(tiled, f'{tiled.get("seconds", 0):,.1f}'), _mib(tiled.get('peak_bytes')),
                           _mib(tiled.get('process_peak_bytes'))]]), '']
    lines += _extra_sections(results, on_cpu)
    if chart_link:
        lines += [f'![Latency and peak memory by backend and variant]({chart_link})', '']
    lines.append(SECTION_END.format(name=settings['name']))
    return '\n'.join(lines)


def _extra_sections(results, on_cpu):
    """The tables of the parts run only when asked for (``--extra``): compiled, swinir, onnxruntime."""
    settings = results['settings']
    width, height = settings['output_size']
    setting = f'{width}x{height} output, x{settings["scale"]}, batch 1, fp32'
    cpu_header = ['median CPU ms'] if on_cpu else []
    lines = machine.markdown(results['machine'], results['environment']['threads']) if results.get('machine') else []
    if results.get('compiled'):
        lines += [f'### torch.compile against eager: {setting}, auto backend', '',
                  '`esc_arch.inference.compilation.compile_network` (inductor, default mode). The compiled network\'s '
                  'first call compiles it: its time is the compilation cost, reported apart from the median.', '']
        rows = []
        for row in results['compiled']:
            eager = {'times': row.get('eager_times'), 'cpu_times': row.get('eager_cpu_times')}
            compiled = {'times': row.get('compiled_times'), 'cpu_times': row.get('compiled_cpu_times')}
            error = row.get('compiled_error') or row.get('eager_error')
            rows.append([row['variant'], _ms(median_ms(eager)), *([_ms(cpu_ms(eager))] if on_cpu else []),
                         f'failed: {error}' if error else _ms(median_ms(compiled)),
                         *([_ms(cpu_ms(compiled))] if on_cpu else []),
                         _ratio(median_ms(eager), median_ms(compiled)),
                         f'{row["compiled_first"]:,.1f}' if 'compiled_first' in row else '-',
                         'yes' if row.get('compiled_network') else 'no (eager fallback)',
                         f'{row["max_abs_difference"]:.1e}' if 'max_abs_difference' in row else '-'])
        lines += [_table(['variant', 'eager median ms', *(['eager CPU ms'] if on_cpu else []), 'compiled median ms',
                          *(['compiled CPU ms'] if on_cpu else []), 'speed-up', 'first compiled call s',
                          'compiled', 'max abs difference'], rows), '']
    if results.get('swinir'):
        lines += [f'### ESC-light against SwinIR-light (BasicSR\'s `SwinIR`): {setting}', '',
                  'SwinIR-light as in the SwinIR and ESC papers: embed_dim 60, depths and heads [6, 6, 6, 6], '
                  'window 8, mlp_ratio 2, `pixelshuffledirect`. Both eager PyTorch, random weights. FLOPs counted as '
                  'in `basicsr profile` (one multiply-add = one FLOP, naive attention).', '']
        rows = [[row['network'], _error_or(row, _ms(median_ms(row))), _spread(row),
                 *([_ms(cpu_ms(row))] if on_cpu else []), _mib(row.get('peak_bytes')), f'{row["params"] / 1e3:,.0f}',
                 f'{row["flops"] / 1e9:,.1f}'] for row in results['swinir']]
        lines += [_table(['network', 'median ms', 'min - max ms', *cpu_header, 'peak MiB', 'params K', 'FLOPs G'],
                         rows), '']
    deployed = results.get('onnxruntime')
    if deployed:
        lines += [f'### onnxruntime against PyTorch: {deployed["variant"]}, {setting}, CPU', '',
                  f'Exported with `esc_arch.export.export_onnx` ({deployed["file_bytes"] / MIB:,.1f} MiB file); '
                  f'onnxruntime\'s CPU provider with as many threads as torch; largest difference from PyTorch on '
                  f'`check_onnx`\'s inputs: {deployed["max_abs_difference"]:.1e}.', '']
        rows = [[row['runtime'], _error_or(row, _ms(median_ms(row))), _spread(row),
                 *([_ms(cpu_ms(row))] if on_cpu else []), _first_ms(row), _mib(row.get('peak_bytes'))]
                for row in deployed['rows']]
        lines += [_table(['runtime', 'median ms', 'min - max ms', *cpu_header, 'first call ms', 'peak MiB'], rows), '']
    return lines


def write_section(path, section, name):
    """Put ``section`` into the markdown file ``path``, replacing the earlier section called ``name``.

    Text outside that section's markers (prose, other runs' results) is kept; a missing file
    is created.
    """
    start, end = SECTION_START.format(name=name), SECTION_END.format(name=name)
    text = open(path, encoding='utf-8').read() if os.path.exists(path) else '# Benchmarks\n'
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip('\n') + '\n\n' + section + '\n'
    with open(path, 'w', encoding='utf-8') as file:
        file.write(text)


def write_chart(results, path):
    """Bar charts of median latency and peak memory of the inference rows, by variant/dtype and backend."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rows = [row for row in results['forward'] if not row.get('error')]
    groups = list(dict.fromkeys(f'{row["variant"]} {row["dtype"]}' for row in rows))
    backends = list(dict.fromkeys(row['backend'] for row in rows))
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    bar_width = 0.8 / max(len(backends), 1)
    panels = ((axes[0], 'median latency (ms)', median_ms),
              (axes[1], 'peak memory (MiB, log scale)', lambda row: (row.get('peak_bytes') or 0) / MIB or None))
    for axis, label, value in panels:
        for index, backend in enumerate(backends):
            heights = []
            for group in groups:
                row = next((r for r in rows if f'{r["variant"]} {r["dtype"]}' == group and r['backend'] == backend),
                           None)
                heights.append((row and value(row)) or 0)
            positions = [g + (index - (len(backends) - 1) / 2) * bar_width for g in range(len(groups))]
            bars = axis.bar(positions, heights, bar_width, label=backend)
            axis.bar_label(bars, fmt='%.0f', fontsize=7)
        axis.set_xticks(range(len(groups)), groups)
        axis.set_ylabel(label)
    axes[1].set_yscale('log')
    axes[0].legend(title='attention backend')
    env, settings = results['environment'], results['settings']
    width, height = settings['output_size']
    figure.suptitle(f'ESC x{settings["scale"]}, {width}x{height} output, batch 1: '
                    f'{env["device_name"]}, torch {env["torch"]}')
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
