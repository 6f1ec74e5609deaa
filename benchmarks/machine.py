"""The ``machine`` part of a CPU run (``--extra machine``): the network against this machine's FLOP limit.

One run records the CPU's instruction-set flags, its measured fp32 matrix-product peak with the
torch threads of the run (a large GEMM), and ESC x4 inference three ways, timed in turns: the
authors' code path (naive attention, eager), ours eager and ours compiled (auto backend). Each is
compared with the FLOP limit: the network's multiply-adds (as ``basicsr profile`` counts them,
149.2 G for ESC x4 at 1280x720 output) divided by the measured peak, i.e. the time the network
would take if every multiply-add ran at matrix-product speed and nothing else cost anything.
"""
import time

import torch

from esc_arch.profiling import profile_network

from . import measure, workloads

# The flags that decide which kernels torch and oneDNN can use (fp32 width, bf16 and int8 arithmetic).
CPU_FLAGS = ('avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'avx_vnni', 'amx_tile', 'amx_bf16', 'amx_int8')
GEMM_SIDE = 4096
# Targets of issue 23 for ESC x4, 1280x720 output, fp32.
EAGER_LIMIT_RATIO, COMPILED_LIMIT_RATIO, EAGER_NAIVE_RATIO = 1.6, 1.3, 0.25


def cpu_flags():
    """Which of :data:`CPU_FLAGS` the CPU reports (``/proc/cpuinfo``; an empty list elsewhere)."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as file:
            line = next((line for line in file if line.startswith('flags')), '')
    except OSError:
        return []
    present = set(line.partition(':')[2].split())
    return [flag for flag in CPU_FLAGS if flag in present]


def matmul_peak(repeats=5, side=GEMM_SIDE):
    """Multiply-adds per second of the fastest of ``repeats`` fp32 ``side x side`` matrix products."""
    a, b = torch.rand(side, side), torch.rand(side, side)
    out = torch.empty(side, side)
    torch.mm(a, b, out=out)  # warm-up: oneDNN/BLAS picks its kernel, pages get touched
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return side ** 3 / best


def run(args, progress):
    """Flags, matmul peak, FLOPs and the three timed forwards of ``args.variants[0]``."""
    variant = args.variants[0]
    lr_size = (args.size[1] // args.scale, args.size[0] // args.scale)
    progress(f'machine: fp32 matrix-product peak ({GEMM_SIDE}x{GEMM_SIDE}), {torch.get_num_threads()} threads')
    peak = matmul_peak()
    network = workloads.build_network(variant, args.scale, args.overrides, 'naive', 'fp32', 'cpu')
    multiply_adds = profile_network(network, args.scale, tuple(args.size)).flops
    del network
    params = dict(variant=variant, scale=args.scale, overrides=args.overrides, dtype='fp32', device='cpu',
                  lr_size=lr_size)
    progress(f'machine: {variant} naive eager, auto eager and auto compiled, in turns')
    calls = {'naive, eager (the authors\' code path)': measure.build('forward', {**params, 'attn_type': 'naive'}),
             'auto, eager': measure.build('forward', {**params, 'attn_type': 'auto'}),
             'auto, compiled': measure.build('forward', {**params, 'attn_type': 'auto', 'compile': True})}
    timings = measure.time_interleaved(calls, 'cpu', args.repeats, args.warmup)
    setting = f'{variant} x{args.scale}, {args.size[0]}x{args.size[1]} output, fp32'
    return {'variant': variant, 'setting': setting, 'flags': cpu_flags(), 'matmul_peak': peak,
            'multiply_adds': multiply_adds, 'rows': [{'run': name, **timing} for name, timing in timings.items()]}


def best_seconds(row):
    """The fastest timed call of a row (a shared machine only ever slows a call down), or None."""
    return min(row['times']) if row.get('times') else None


def target_checks(machine):
    """``(target, measured, verdict)`` triples of the three targets against the FLOP limit and naive."""
    limit = machine['multiply_adds'] / machine['matmul_peak']
    naive, eager, compiled = (best_seconds(row) for row in machine['rows'])
    checks = []
    for name, seconds, bound in (('eager', eager, EAGER_LIMIT_RATIO), ('compiled', compiled, COMPILED_LIMIT_RATIO)):
        target = f'CPU, {machine["setting"]}, {name}: within {bound}x of the FLOP limit at the measured matmul peak'
        measured = f'{seconds:.2f} s = {seconds / limit:.2f}x of {limit:.2f} s' if seconds else '-'
        checks.append((target, measured, ('met' if seconds / limit <= bound else 'not met') if seconds else 'failed'))
    target = f'CPU, {machine["setting"]}: eager auto <= {EAGER_NAIVE_RATIO}x the naive time (same run)'
    if naive and eager:
        checks.append((target, f'{eager / naive:.2f}x', 'met' if eager / naive <= EAGER_NAIVE_RATIO else 'not met'))
    else:
        checks.append((target, '-', 'failed'))
    return checks


def markdown(machine, threads):
    """The machine section's lines: flags, peak, and the three forwards against the FLOP limit."""
    limit = machine['multiply_adds'] / machine['matmul_peak']
    naive = best_seconds(machine['rows'][0])
    lines = [f'### This machine against its FLOP limit: {machine["setting"]}', '',
             f'- CPU flags (of {", ".join(CPU_FLAGS)}): {", ".join(machine["flags"]) or "none"}',
             f'- fp32 matrix-product peak with {threads} torch thread(s) ({GEMM_SIDE}x{GEMM_SIDE}, fastest of 5): '
             f'{machine["matmul_peak"] / 1e9:.1f} G multiply-adds/s',
             f'- FLOP limit: {machine["multiply_adds"] / 1e9:.1f} G multiply-adds at that peak = '
             f'{limit * 1000:,.1f} ms',
             '- "best" is the fastest timed call (on a shared machine load only adds time), "median" the median; '
             'the three take turns call by call', '']
    rows = []
    for row in machine['rows']:
        best = best_seconds(row)
        if best is None:
            rows.append([row['run'], f'failed: {row.get("error", "no timing")}', '-', '-', '-', '-'])
            continue
        rows.append([row['run'], f'{best * 1000:,.1f}', f'{sorted(row["times"])[len(row["times"]) // 2] * 1000:,.1f}',
                     f'{min(row["cpu_times"]) * 1000:,.1f}', f'{best / limit:.2f}x',
                     f'{best / naive:.2f}x' if naive else '-'])
    lines += ['| run | best ms | median ms | best CPU ms | vs FLOP limit | vs naive |', '|---|---|---|---|---|---|']
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return lines + ['']
