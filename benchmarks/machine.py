"""The ``machine`` part of a CPU run (``--extra machine``): the network against this machine's FLOP limit.

One run records the CPU's instruction-set flags, its measured fp32 matrix-product peak with the
torch threads of the run (a large GEMM, by MKL through ``torch.mm`` and by oneDNN as a 1x1
convolution; the faster is the peak), and ESC x4 inference three ways, timed in turns: the authors'
code path (naive attention, eager), ours eager and ours compiled (auto backend). The three run
twice, each time in a fresh child process: with glibc's default ``malloc`` (what a Python process
gets) and with freed memory kept for reuse (:func:`esc_arch.allocator.keep_freed_memory`, what
``basicsr upscale`` and ``basicsr test`` set), with the page faults of each call counted. Each is
compared with the FLOP limit: the network's multiply-adds (as ``basicsr profile`` counts them,
149.2 G for ESC x4 at 1280x720 output) divided by the measured peak, i.e. the time the network
would take if every multiply-add ran at matrix-product speed and nothing else cost anything.
"""
import multiprocessing
import resource
import time
import traceback
from concurrent.futures import ProcessPoolExecutor

import torch

from esc_arch.allocator import keep_freed_memory
from esc_arch.profiling import profile_network

from . import measure, workloads

# The flags that decide which kernels torch and oneDNN can use (fp32 width, bf16 and int8 arithmetic).
CPU_FLAGS = ('avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'avx_vnni', 'amx_tile', 'amx_bf16', 'amx_int8')
GEMM_SIDE = 4096
# Targets of issue 23 for ESC x4, 1280x720 output, fp32.
EAGER_LIMIT_RATIO, COMPILED_LIMIT_RATIO, EAGER_NAIVE_RATIO = 1.6, 1.3, 0.25
MALLOC_SETTINGS = {'default': False, 'freed memory kept': True}
"""Name -> whether the child process calls :func:`keep_freed_memory` first."""
RUNS = ("naive, eager (the authors' code path)", 'auto, eager', 'auto, compiled')


def cpu_flags():
    """Which of :data:`CPU_FLAGS` the CPU reports (``/proc/cpuinfo``; an empty list elsewhere)."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as file:
            line = next((line for line in file if line.startswith('flags')), '')
    except OSError:
        return []
    present = set(line.partition(':')[2].split())
    return [flag for flag in CPU_FLAGS if flag in present]


def _fastest(fn, repeats):
    fn()  # warm-up: the library picks its kernel, pages get touched
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def gemm_rates(repeats=5, side=GEMM_SIDE):
    """Multiply-adds per second of the fastest of ``repeats`` fp32 ``side``-cubed matrix products, per library.

    torch sends ``torch.mm`` to MKL and its convolutions to oneDNN; on an AMD EPYC with AVX-512, MKL
    reached about half oneDNN's rate (BENCHMARKS.md). oneDNN's product is timed as a 1x1 convolution of
    a ``side``-channel, ``side``-pixel image (the same multiply-adds).
    """
    a, b = torch.rand(side, side), torch.rand(side, side)
    out = torch.empty(side, side)
    rates = {'MKL (torch.mm)': side ** 3 / _fastest(lambda: torch.mm(a, b, out=out), repeats)}
    if torch.backends.mkldnn.is_available():
        image = torch.rand(1, side, 64, side // 64).contiguous(memory_format=torch.channels_last)
        weight = torch.rand(side, side, 1, 1)
        seconds = _fastest(lambda: torch.mkldnn_convolution(image, weight, None, (0, 0), (1, 1), (1, 1), 1), repeats)
        rates['oneDNN (1x1 convolution)'] = side ** 3 / seconds
    return rates


def _counting_faults(fn, faults):
    """``fn`` that appends the minor page faults of each of its calls to ``faults``."""
    def call():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        fn()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return call


def _time_forwards(params, keep_memory, threads, repeats, warmup):
    """Child-process side of :func:`run`: the three forwards of :data:`RUNS` in turns, under one malloc setting."""
    try:
        torch.set_num_threads(threads)
        allocator = keep_freed_memory() if keep_memory else 'default'
        variants = dict(zip(RUNS, ({'attn_type': 'naive'}, {'attn_type': 'auto'},
                                   {'attn_type': 'auto', 'compile': True})))
        faults = {name: [] for name in RUNS}
        calls = {name: _counting_faults(measure.build('forward', {**params, **extra}), faults[name])
                 for name, extra in variants.items()}
        timings = measure.time_interleaved(calls, 'cpu', repeats, warmup)
    except Exception as exception:
        traceback.print_exc()
        return {'allocator': 'failed', 'rows': [{'run': name, 'error': str(exception)} for name in RUNS]}
    # Faults of the timed calls only (the warm-up calls come first).
    rows = [{'run': name, **timing, 'faults': faults[name][-len(timing.get('times', [])):]}
            for name, timing in timings.items()]
    return {'allocator': allocator, 'rows': rows}


def run(args, progress):
    """Flags, matmul peak, FLOPs and the three timed forwards of ``args.variants[0]`` under both malloc settings."""
    variant = args.variants[0]
    lr_size = (args.size[1] // args.scale, args.size[0] // args.scale)
    progress(f'machine: fp32 matrix-product peak ({GEMM_SIDE}x{GEMM_SIDE}), {torch.get_num_threads()} threads')
    gemm = gemm_rates()
    network = workloads.build_network(variant, args.scale, args.overrides, 'naive', 'fp32', 'cpu')
    multiply_adds = profile_network(network, args.scale, tuple(args.size)).flops
    del network
    params = dict(variant=variant, scale=args.scale, overrides=args.overrides, dtype='fp32', device='cpu',
                  lr_size=lr_size)
    settings = {}
    for name, keep_memory in MALLOC_SETTINGS.items():
        progress(f'machine: {variant} naive eager, auto eager and auto compiled, in turns; malloc: {name}')
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context('spawn')) as pool:
            settings[name] = pool.submit(_time_forwards, params, keep_memory, torch.get_num_threads(),
                                         args.repeats, args.warmup).result()
    setting = f'{variant} x{args.scale}, {args.size[0]}x{args.size[1]} output, fp32'
    return {'variant': variant, 'setting': setting, 'flags': cpu_flags(), 'gemm': gemm,
            'multiply_adds': multiply_adds, 'settings': settings}


def best_seconds(row):
    """The fastest timed call of a row (a shared machine only ever slows a call down), or None."""
    return min(row['times']) if row.get('times') else None


def _median(values):
    return sorted(values)[len(values) // 2]


def flop_limit(machine):
    """``(peak, limit)``: the faster library's matrix-product rate and the network's multiply-adds at that rate."""
    peak = max(machine['gemm'].values())
    return peak, machine['multiply_adds'] / peak


def _label(malloc, result):
    """The malloc setting's name, with the reason where :func:`keep_freed_memory` did not apply it."""
    return malloc if result['allocator'] in ('default', 'applied') else f'{malloc} ({result["allocator"]})'


def _verdict(ratio, bound):
    return 'met' if ratio <= bound else 'not met'


def target_checks(machine):
    """``(target, measured, verdict)`` triples: per malloc setting, eager and compiled against the FLOP
    limit and eager against naive; then eager with freed memory kept against naive with the default."""
    limit = flop_limit(machine)[1]
    checks, best = [], {}
    for malloc, result in machine['settings'].items():
        naive, eager, compiled = best[malloc] = [best_seconds(row) for row in result['rows']]
        malloc = _label(malloc, result)
        for name, seconds, bound in (('eager', eager, EAGER_LIMIT_RATIO), ('compiled', compiled, COMPILED_LIMIT_RATIO)):
            target = (f'CPU, {machine["setting"]}, malloc {malloc}, {name}: within {bound}x of the FLOP limit '
                      'at the measured matmul peak')
            measured = f'{seconds:.2f} s = {seconds / limit:.2f}x of {limit:.2f} s' if seconds else '-'
            checks.append((target, measured, _verdict(seconds / limit, bound) if seconds else 'failed'))
        target = f'CPU, {machine["setting"]}, malloc {malloc}: eager auto <= {EAGER_NAIVE_RATIO}x the naive time'
        checks.append((target, f'{eager / naive:.3f}x', _verdict(eager / naive, EAGER_NAIVE_RATIO))
                      if naive and eager else (target, '-', 'failed'))
    kept, default = best.get('freed memory kept'), best.get('default')
    if kept and default:
        target = (f'CPU, {machine["setting"]}: eager auto with freed memory kept (as basicsr upscale runs) <= '
                  f'{EAGER_NAIVE_RATIO}x naive with the default malloc (as the authors\' code runs)')
        checks.append((target, f'{kept[1] / default[0]:.3f}x', _verdict(kept[1] / default[0], EAGER_NAIVE_RATIO))
                      if kept[1] and default[0] else (target, '-', 'failed'))
    return checks


def markdown(machine, threads):
    """The machine section's lines: flags, peaks, and the three forwards per malloc setting against the FLOP limit."""
    peak, limit = flop_limit(machine)
    rates = '; '.join(f'{name} {rate / 1e9:.1f}' for name, rate in machine['gemm'].items())
    lines = [f'### This machine against its FLOP limit: {machine["setting"]}', '',
             f'- CPU flags (of {", ".join(CPU_FLAGS)}): {", ".join(machine["flags"]) or "none"}',
             f'- fp32 matrix-product rate with {threads} torch thread(s) ({GEMM_SIDE}x{GEMM_SIDE}x{GEMM_SIDE}, '
             f'fastest of 5), G multiply-adds/s: {rates}; the peak is the faster, '
             f'{peak / 1e9:.1f}',
             f'- FLOP limit: {machine["multiply_adds"] / 1e9:.1f} G multiply-adds at that peak = '
             f'{limit * 1000:,.1f} ms',
             '- each malloc setting in its own fresh process; "best" is the fastest timed call (on a shared machine '
             'load only adds time), "median" the median; the three take turns call by call; faults: minor page '
             'faults per timed call (median)', '',
             '| malloc | run | best ms | median ms | best CPU ms | page faults | vs FLOP limit | vs naive |',
             '|---|---|---|---|---|---|---|---|']
    for malloc, result in machine['settings'].items():
        naive, malloc = best_seconds(result['rows'][0]), _label(malloc, result)
        for row in result['rows']:
            best = best_seconds(row)
            if best is None:
                error = row.get('error', 'no timing')
                lines.append(f'| {malloc} | {row["run"]} | failed: {error} | - | - | - | - | - |')
                continue
            faults, median = _median(row.get('faults') or [0]), _median(row['times'])
            cells = [malloc, row['run'], f'{best * 1000:,.1f}', f'{median * 1000:,.1f}',
                     f'{min(row["cpu_times"]) * 1000:,.1f}', f'{faults:,}', f'{best / limit:.2f}x',
                     f'{best / naive:.2f}x' if naive else '-']
            lines.append('| ' + ' | '.join(cells) + ' |')
    return lines + ['']
