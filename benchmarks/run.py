"""Benchmark ESC's speed and memory by attention backend: ``python -m benchmarks.run [options]``.

Runs, on one device: inference of each variant with each backend and dtype; a training step
with each backend that has a backward pass; single layers (ConvAttn against window attention,
naive against fused attention); tiled inference of a large image. Then prints the issue's
targets with their verdicts, and writes a section of BENCHMARKS.md for the device, the raw
results as JSON and a PNG chart. The defaults reproduce the paper's setting (ESC x4, 1280x720
output).
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import sys

import torch
import yaml

from esc_arch.archs import preset_config
from esc_arch.archs.attention import flex_attention_available

from . import machine, measure, report, workloads

BACKENDS = ('naive', 'sdpa', 'flex', 'auto')
EXTRA_PARTS = ('machine', 'compiled', 'swinir', 'onnxruntime')


def _size(text):
    try:
        width, height = (int(part) for part in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected WIDTHxHEIGHT such as 1280x720, got {text!r}')
    return width, height


def _override(text):
    key, sep, value = text.partition('=')
    if not sep:
        raise argparse.ArgumentTypeError(f'expected KEY=VALUE such as n_blocks=1, got {text!r}')
    return key, yaml.safe_load(value)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.run', description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu',
                        help='cpu, cuda or cuda:N (default: cuda where available)')
    parser.add_argument('--variants', nargs='+', default=['ESC', 'ESC-light', 'ESC-FP'],
                        help='presets to run inference with (default: ESC ESC-light ESC-FP); the first one '
                        'also runs the training step and the tiled inference, and sets the layer sizes')
    parser.add_argument('--scale', type=int, default=4)
    parser.add_argument('--size', type=_size, default=(1280, 720), metavar='WxH',
                        help='output size of the inference (default: 1280x720, the paper\'s setting)')
    parser.add_argument('--backends', nargs='+', choices=BACKENDS, default=list(BACKENDS),
                        help='attention backends (flex is skipped where it cannot run)')
    parser.add_argument('--dtypes', nargs='+', choices=['fp32', 'bf16'], default=['fp32', 'bf16'])
    parser.add_argument('--threads', type=int,
                        help="torch threads (default: torch's choice); 1 gives steadier CPU figures on a shared "
                        'machine')
    parser.add_argument('--repeats', type=int, help='timed calls per measurement (default: 3 on CPU, 20 on GPU)')
    parser.add_argument('--warmup', type=int, help='untimed calls first, at least 1 (default: 1 on CPU, 3 on GPU)')
    parser.add_argument('--train-batch', type=int, default=4)
    parser.add_argument('--train-patch', type=int, default=64, help='LR patch side of the training step')
    parser.add_argument('--tiled-size', type=_size, default=(3840, 2160), metavar='WxH',
                        help='output size of the tiled inference (default: 3840x2160)')
    parser.add_argument('--tile', type=int, default=256, help='tile side in LR pixels (default: 256)')
    parser.add_argument('--tile-pad', type=int, default=32, help='context around tiles in LR pixels (default: 32)')
    parser.add_argument('--set', type=_override, action='append', default=[], metavar='KEY=VALUE',
                        dest='overrides', help='change a hyperparameter of every variant, e.g. --set n_blocks=1')
    parser.add_argument('--skip', nargs='+', default=[], choices=['forward', 'breakdown', 'train', 'layers', 'tiled'],
                        help='parts not to run')
    parser.add_argument('--extra', nargs='+', default=[], choices=EXTRA_PARTS,
                        help='parts run only when named: machine (CPU: the flags, the fp32 matmul peak and the first '
                        'variant naive eager, auto eager and auto compiled against its FLOP limit at that peak), '
                        'compiled (eager against torch.compile, each variant, fp32, '
                        'auto backend; minutes of compilation per variant on a CPU), swinir (ESC-light against '
                        "BasicSR's SwinIR-light), onnxruntime (the first variant exported to ONNX, in onnxruntime "
                        'against PyTorch)')
    parser.add_argument('--name', help='name of this run\'s section in the markdown file, which a later run of the '
                        'same name replaces, and of its default JSON and chart files (default: the device type, '
                        'e.g. cpu)')
    parser.add_argument('--output', metavar='PATH', help='markdown file to write this run\'s section into, e.g. '
                        'BENCHMARKS.md (the section of the same --name is replaced, the rest kept). Without it no '
                        'file is written unless --json or --chart names one: the section is printed only')
    parser.add_argument('--json', help='raw results (default with --output: benchmarks/results_<name>.json)')
    parser.add_argument('--chart', help='PNG chart (default with --output: benchmarks/chart_<name>.png)')
    parser.add_argument('--from-json', metavar='PATH', help='measure nothing: write the markdown section and the '
                        'chart again from the raw results of an earlier run (its JSON file)')
    args = parser.parse_args(argv)
    args.results = None
    if args.from_json:
        try:
            with open(args.from_json, encoding='utf-8') as file:
                args.results = json.load(file)
            args.name = args.name or args.results['settings']['name']
        except (OSError, ValueError, KeyError, TypeError) as error:
            parser.error(f'--from-json {args.from_json}: cannot read the results of a run from it ({error})')
    if args.size[0] % args.scale or args.size[1] % args.scale:
        parser.error(f'--size {args.size[0]}x{args.size[1]} is not a multiple of --scale {args.scale}')
    if args.tiled_size[0] % args.scale or args.tiled_size[1] % args.scale:
        parser.error(f'--tiled-size {args.tiled_size[0]}x{args.tiled_size[1]} is not a multiple of '
                     f'--scale {args.scale}')
    device_type = torch.device(args.device).type
    if device_type == 'cuda' and not torch.cuda.is_available():
        parser.error(f'--device {args.device}: CUDA is not available in this torch build or machine')
    args.repeats = args.repeats or (20 if device_type == 'cuda' else 3)
    args.warmup = max(1, args.warmup or (3 if device_type == 'cuda' else 1))
    if args.threads is not None and args.threads < 1:
        parser.error(f'--threads must be at least 1, got {args.threads}')
    args.name = args.name or device_type
    if args.output:
        args.json = args.json or f'benchmarks/results_{args.name}.json'
        args.chart = args.chart or f'benchmarks/chart_{args.name}.png'
    return args


def environment(device):
    """Machine, software and how memory is measured, for the report."""
    device = torch.device(device)
    cpu = platform.processor() or platform.machine()
    if os.path.exists('/proc/cpuinfo'):
        names = [line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo') if line.startswith('model name')]
        cpu = names[0] if names else cpu
    memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') if hasattr(os, 'sysconf') else 0
    machine = f'{cpu}, {os.cpu_count()} logical CPUs, {memory / 2 ** 30:.1f} GiB RAM, {platform.system()}'
    if device.type == 'cuda':
        props = torch.cuda.get_device_properties(device)
        name = props.name
        machine += f'; {name} ({props.total_memory / 2 ** 30:.0f} GiB), CUDA {torch.version.cuda}'
        memory_method = ('`torch.cuda.max_memory_allocated` during one call minus the memory allocated before it '
                         '(weights and input excluded); the GPU target counts all allocations')
    else:
        name = f'{cpu}, {os.cpu_count()} cores'
        memory_method = ('peak resident set size (`VmHWM` on Linux) of a fresh child process per measurement, over '
                         'its peak before the call (an idle process that imported torch and built the network '
                         'and its input); one cold call')
    return {
        'device_type': device.type, 'device_name': name, 'machine': machine, 'memory_method': memory_method,
        'python': platform.python_version(), 'torch': torch.__version__, 'threads': torch.get_num_threads(),
        'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        'command': shlex.join(['python', '-m', 'benchmarks.run'] + sys.argv[1:]),
        'load_start': _load_average(),
    }


def _load_average():
    return f'{os.getloadavg()[0]:.1f}' if hasattr(os, 'getloadavg') else None


def _progress(message):
    print(f'[benchmarks] {message}', file=sys.stderr, flush=True)


def run_forward(args, backends):
    rows = []
    lr_size = (args.size[1] // args.scale, args.size[0] // args.scale)
    for variant in args.variants:
        for dtype in args.dtypes:
            _progress(f'inference: {variant} {dtype}, backends {", ".join(backends)}')
            params = {backend: dict(variant=variant, scale=args.scale, overrides=args.overrides, attn_type=backend,
                                    dtype=dtype, device=args.device, lr_size=lr_size) for backend in backends}
            calls = {backend: measure.build('forward', params[backend]) for backend in backends}
            timings = measure.time_interleaved(calls, args.device, args.repeats, args.warmup)
            del calls
            for backend in backends:
                memory = measure.peak_memory('forward', params[backend]) if 'error' not in timings[backend] else {}
                rows.append({'variant': variant, 'dtype': dtype, 'backend': backend, **timings[backend],
                             **{k: v for k, v in memory.items() if k != 'seconds'}})
    return rows


def run_train(args, backends):
    variant = args.variants[0]
    _progress(f'training step: {variant}, backends {", ".join(backends)}')
    calls = {backend: measure.build('train_step', dict(
        variant=variant, scale=args.scale, overrides=args.overrides, attn_type=backend, dtype='fp32',
        device=args.device, batch=args.train_batch, patch=args.train_patch)) for backend in backends}
    timings = measure.time_interleaved(calls, args.device, args.repeats, args.warmup)
    return [{'variant': variant, 'backend': backend, **timings[backend]} for backend in backends]


def run_breakdown(args):
    variant = args.variants[0]
    lr_size = (args.size[1] // args.scale, args.size[0] // args.scale)
    times, operators = {}, {}
    for backend in ('naive', 'auto'):
        _progress(f'time breakdown and profile: {variant} fp32, {backend}')
        network = workloads.build_network(variant, args.scale, args.overrides, backend, 'fp32', args.device)
        lr = torch.rand(1, 3, *lr_size, device=args.device)
        times[backend] = measure.time_by_module(network, lr, workloads.MODULE_GROUPS, args.device)
        operators[backend] = measure.top_operators(network, lr, args.device)
    return {'variant': variant, 'seconds': times, 'operators': operators}


def run_layers(args, backends, backward_backends):
    config = preset_config(args.variants[0], args.scale, **dict(args.overrides))
    size = (args.size[1] // args.scale, args.size[0] // args.scale)
    dims = {key: config[key] for key in ('dim', 'pdim', 'kernel_size', 'window_size', 'num_heads')}
    shape = f'1x{dims["dim"]}x{size[0]}x{size[1]}'
    rows = []
    for backward, window_backends in ((False, backends), (True, backward_backends)):
        layers = {'ConvAttn': ('convattn', 'naive')}
        layers.update({f'window attention, {backend}': ('window', backend) for backend in window_backends
                       if backend != 'auto'})
        _progress(f'layers ({"forward and backward" if backward else "forward"}): {", ".join(layers)}')
        params = {name: dict(kind=kind, attn_type=backend, dtype='fp32', device=args.device, size=size,
                             backward=backward, **dims) for name, (kind, backend) in layers.items()}
        calls = {name: measure.build('layer', params[name]) for name in layers}
        timings = measure.time_interleaved(calls, args.device, args.repeats, args.warmup)
        del calls
        for name in layers:
            # Memory of the forward pass only: each measurement costs a child process.
            measured = not backward and 'error' not in timings[name]
            memory = measure.peak_memory('layer', params[name]) if measured else {}
            rows.append({'layer': name, 'pass': 'forward + backward' if backward else 'forward', 'shape': shape,
                         **timings[name], **{k: v for k, v in memory.items() if k != 'seconds'}})
    return rows


def run_tiled(args):
    variant = args.variants[0]
    width, height = args.tiled_size
    _progress(f'tiled inference: {variant}, {width}x{height} output, tiles of {args.tile}')
    params = dict(variant=variant, scale=args.scale, overrides=args.overrides, attn_type='auto', dtype='fp32',
                  device=args.device, lr_size=(height // args.scale, width // args.scale), tile_size=args.tile,
                  tile_pad=args.tile_pad)
    return {'variant': variant, 'backend': 'auto', 'output_size': args.tiled_size, 'tile_size': args.tile,
            'tile_pad': args.tile_pad, **measure.peak_memory('tiled', params)}


def _largest_difference(first, second):
    first, second = (torch.as_tensor(value).float().cpu() for value in (first, second))
    return float((first - second).abs().max())


def run_compiled(args):
    """Each variant eager and through ``torch.compile`` (fp32, auto backend), timed in turns."""
    lr_size = (args.size[1] // args.scale, args.size[0] // args.scale)
    rows = []
    for variant in args.variants:
        _progress(f'torch.compile: {variant} fp32, eager and compiled (the compiled first call compiles)')
        params = dict(variant=variant, scale=args.scale, overrides=args.overrides, attn_type='auto', dtype='fp32',
                      device=args.device, lr_size=lr_size)
        calls = {'eager': measure.build('forward', params),
                 'compiled': measure.build('forward', {**params, 'compile': True})}
        timings = measure.time_interleaved(calls, args.device, args.repeats, args.warmup)
        compiled = calls['compiled']
        row = {'variant': variant, 'compiled_network': bool(compiled.compiled and compiled.network.compiled),
               **{f'{name}_{key}': value for name, timing in timings.items() for key, value in timing.items()}}
        if not any(name.endswith('error') for name in row):
            row['max_abs_difference'] = _largest_difference(calls['eager'](), calls['compiled']())
        rows.append(row)
        del calls
    return rows


def run_swinir(args):
    """ESC-light against BasicSR's SwinIR-light: latency, peak memory, parameters and FLOPs."""
    from esc_arch.profiling import profile_network

    lr_size = (args.size[1] // args.scale, args.size[0] // args.scale)
    names = ('ESC-light', 'SwinIR-light')
    _progress(f'ESC-light against SwinIR-light x{args.scale}, fp32')
    params = {name: dict(name=name, scale=args.scale, device=args.device, lr_size=lr_size) for name in names}
    calls = {name: measure.build('alternative', params[name]) for name in names}
    timings = measure.time_interleaved(calls, args.device, args.repeats, args.warmup)
    del calls
    rows = []
    for name in names:
        memory = measure.peak_memory('alternative', params[name]) if 'error' not in timings[name] else {}
        profile = profile_network(workloads.build_alternative(name, args.scale, 'cpu'), args.scale, args.size)
        rows.append({'network': name, **timings[name], **{k: v for k, v in memory.items() if k != 'seconds'},
                     'params': profile.params, 'flops': profile.flops})
    return rows


def run_onnxruntime(args):
    """The first variant exported to ONNX (``esc_arch.export``) in onnxruntime against PyTorch eager, on CPU."""
    import tempfile

    from esc_arch.export import check_onnx, export_onnx

    variant = args.variants[0]
    lr_size = (args.size[1] // args.scale, args.size[0] // args.scale)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, f'{variant}.onnx')
        _progress(f'onnxruntime: exporting {variant} x{args.scale}')
        network = workloads.build_network(variant, args.scale, args.overrides, 'auto', 'fp32', 'cpu')
        export_onnx(network, path)
        differences = check_onnx(path, network)
        torch_params = dict(variant=variant, scale=args.scale, overrides=args.overrides, attn_type='auto',
                            dtype='fp32', device='cpu', lr_size=lr_size)
        params = {'PyTorch eager': ('forward', torch_params),
                  'onnxruntime': ('onnxruntime', dict(path=path, threads=threads, lr_size=lr_size, device='cpu'))}
        _progress(f'onnxruntime against PyTorch eager: {variant}')
        calls = {name: measure.build(kind, value) for name, (kind, value) in params.items()}
        timings = measure.time_interleaved(calls, 'cpu', args.repeats, args.warmup)
        del calls
        rows = []
        for name, (kind, value) in params.items():
            memory = measure.peak_memory(kind, value) if 'error' not in timings[name] else {}
            rows.append({'runtime': name, **timings[name], **{k: v for k, v in memory.items() if k != 'seconds'}})
        return {'variant': variant, 'file_bytes': os.path.getsize(path),
                'max_abs_difference': max(differences.values()), 'rows': rows}


def measure_all(args):
    """Run every part not skipped; the results as written to the JSON file."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device_type = torch.device(args.device).type
    backends = [b for b in args.backends if b != 'flex' or flex_attention_available(args.device)]
    # FlexAttention has no backward pass on CPU.
    backward_backends = [b for b in backends if b != 'flex' or device_type == 'cuda']
    results = {
        'environment': environment(args.device),
        'settings': {'name': args.name, 'scale': args.scale, 'output_size': args.size,
                     'overrides': dict(args.overrides), 'repeats': args.repeats, 'warmup': args.warmup,
                     'train_batch': args.train_batch, 'train_patch': args.train_patch},
        'forward': run_forward(args, backends) if 'forward' not in args.skip else [],
        'breakdown': run_breakdown(args) if 'breakdown' not in args.skip else None,
        'train': run_train(args, backward_backends) if 'train' not in args.skip else [],
        'layers': run_layers(args, backends, backward_backends) if 'layers' not in args.skip else [],
        'tiled': run_tiled(args) if 'tiled' not in args.skip else None,
        'machine': machine.run(args, _progress) if 'machine' in args.extra else None,
        'compiled': run_compiled(args) if 'compiled' in args.extra else [],
        'swinir': run_swinir(args) if 'swinir' in args.extra else [],
        'onnxruntime': run_onnxruntime(args) if 'onnxruntime' in args.extra else None,
    }
    results['environment']['load_end'] = _load_average()
    return results


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    for path in (args.json, args.chart, args.output):
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if args.results is not None:
        results = args.results
        results['settings']['name'] = args.name
    else:
        results = measure_all(args)
        if args.json:
            with open(args.json, 'w', encoding='utf-8') as file:
                json.dump(results, file, indent=1)
    chart_link = None
    if results['forward'] and args.chart:
        report.write_chart(results, args.chart)
        chart_link = os.path.relpath(args.chart, os.path.dirname(os.path.abspath(args.output or args.chart)))
    section = report.markdown_section(results, chart_link)
    if args.output:
        report.write_section(args.output, section, args.name)
    else:
        _progress('no --output: the section below is printed only (give --output BENCHMARKS.md to record it)')
    print(section)
    print('\nTargets:')
    for target, measured, verdict in report.check_targets(results):
        print(f'- {target}: {measured} -> {verdict}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
