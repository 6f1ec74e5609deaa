"""How the benchmarks measure: interleaved latencies and peak memory.

Latency: every workload is warmed up, then the workloads take turns, one call each per round,
so that a change in the machine's load (other processes on a shared CPU) hits them all alike.
On CUDA a call is timed with CUDA events. On CPU it is timed with ``time.perf_counter`` (wall
clock) and ``time.process_time`` (CPU time of all the process's threads): with one thread the
CPU time leaves out the time the process waited for a core, so it is the steadier figure on a
shared machine.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` during one call minus what was
allocated before it (weights and input excluded). On CPU, a fresh child process builds the
workload and makes one call; the figure is its peak resident set size (:func:`peak_rss_bytes`)
after the call minus the peak before it, i.e. over an otherwise idle process that has imported
torch and built the network and its input. Each CPU measurement starts a new process because
the peak RSS of a process never goes down.
"""
import multiprocessing
import resource
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor

import torch

from . import workloads

# ru_maxrss is in kilobytes on Linux and in bytes on macOS.
_RU_MAXRSS_BYTES = 1 if sys.platform == 'darwin' else 1024


def peak_rss_bytes():
    """Peak resident set size of this process so far.

    On Linux from ``VmHWM`` in ``/proc/self/status``: ``ru_maxrss`` survives ``exec``, so a child
    started by the ``spawn`` method would report its parent's peak whenever that is higher.
    """
    try:
        with open('/proc/self/status', encoding='ascii') as status:
            for line in status:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _RU_MAXRSS_BYTES


def build(kind, params):
    """The callable of workload ``kind`` (a key of :data:`workloads.BUILDERS`) built from ``params``."""
    return workloads.BUILDERS[kind](**params)


def _elapsed(fn, device):
    """Seconds taken by ``fn()`` on ``device``: ``(wall clock, CPU time)``, CPU time None on CUDA."""
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000, None
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _error(exception):
    return f'{type(exception).__name__}: {str(exception).splitlines()[0] if str(exception) else ""}'.rstrip(': ')


def time_interleaved(calls, device, repeats, warmup):
    """Time several callables in turn.

    Args:
        calls (dict): Name -> zero-argument callable.
        device (str): Where they run (selects the clock).
        repeats (int): Timed calls of each, made in rounds of one call per callable.
        warmup (int): Untimed calls of each first (at least one: its time is reported as ``first``,
            which includes one-off costs such as FlexAttention's compilation).

    Returns:
        dict: Name -> ``{'first': s, 'times': [s, ...], 'cpu_times': [s, ...]}`` (wall clock of the
        first call and of the timed calls, CPU time of the timed calls on CPU), or
        ``{'error': message}`` for a callable that raised (it is dropped from later rounds).
    """
    results = {}
    for name, fn in calls.items():
        try:
            results[name] = {'first': _elapsed(fn, device)[0], 'times': [], 'cpu_times': []}
            for _ in range(warmup - 1):
                fn()
        except Exception as exception:  # reported in the tables (e.g. out of memory), not fatal
            results[name] = {'error': _error(exception)}
    for _ in range(repeats):
        for name, fn in calls.items():
            if 'error' in results[name]:
                continue
            try:
                wall, cpu = _elapsed(fn, device)
            except Exception as exception:
                results[name] = {'error': _error(exception)}
                continue
            results[name]['times'].append(wall)
            if cpu is not None:
                results[name]['cpu_times'].append(cpu)
    return results


def time_by_module(network, inputs, groups, device):
    """Where one inference call of ``network`` on ``inputs`` spends its time, by groups of module types.

    A warm-up call comes first. On CPU the figures are CPU time (all threads), on CUDA wall
    clock with a synchronisation around every timed module.

    Args:
        network (nn.Module): The network, in eval mode.
        inputs (Tensor): Its input.
        groups (dict): Name -> module class or tuple of classes; modules of different groups
            must not contain each other.
        device (str): Where it runs.

    Returns:
        dict: Name -> seconds, plus ``other`` (the rest of the call) and ``total``.
    """
    on_cuda = torch.device(device).type == 'cuda'

    def clock():
        if on_cuda:
            torch.cuda.synchronize(device)
            return time.perf_counter()
        return time.process_time()

    spent, started = dict.fromkeys(groups, 0.0), {}
    hooks = []
    for module in network.modules():
        group = next((name for name, types in groups.items() if isinstance(module, types)), None)
        if group is None:
            continue

        def before(module, args):
            started[module] = clock()

        def after(module, args, output, group=group):
            spent[group] += clock() - started.pop(module)

        hooks += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    with torch.inference_mode():
        network(inputs)
        spent = dict.fromkeys(groups, 0.0)
        start = clock()
        network(inputs)
        total = clock() - start
    for hook in hooks:
        hook.remove()
    return {**spent, 'other': total - sum(spent.values()), 'total': total}


def top_operators(network, inputs, device, count=10):
    """The ``count`` torch operators with the most self time in one inference call.

    Call it on a warmed-up network (e.g. after :func:`time_by_module`): the first call of a
    network includes one-off costs.

    Returns:
        list: ``{'operator', 'shapes', 'calls', 'seconds', 'share'}`` dicts, most expensive first;
        ``shapes`` are the input shapes of those calls (operators are grouped by them), ``share`` the
        fraction of the self time of all operators in the profiled call.
    """
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.device(device).type == 'cuda':
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.inference_mode(), torch.profiler.profile(activities=activities, record_shapes=True) as profile:
        network(inputs)
        if torch.device(device).type == 'cuda':
            torch.cuda.synchronize(device)
    key = 'self_device_time_total' if torch.device(device).type == 'cuda' else 'self_cpu_time_total'
    events = sorted(profile.key_averages(group_by_input_shape=True), key=lambda e: getattr(e, key), reverse=True)
    total = sum(getattr(event, key) for event in events) or 1
    return [{'operator': event.key, 'shapes': str(event.input_shapes), 'calls': event.count,
             'seconds': getattr(event, key) / 1e6, 'share': getattr(event, key) / total} for event in events[:count]]


def _peak_rss_of_one_call(kind, params, threads):
    """Child-process side of :func:`peak_memory` on CPU."""
    try:
        torch.set_num_threads(threads)
        fn = build(kind, params)
        before = peak_rss_bytes()
        seconds = _elapsed(fn, 'cpu')[0]
        after = peak_rss_bytes()
    except Exception as exception:
        traceback.print_exc()
        return {'error': _error(exception)}
    return {'peak_bytes': after - before, 'process_peak_bytes': after, 'seconds': seconds}


def peak_memory(kind, params):
    """Peak memory of one call of a workload, on the device named in ``params['device']``.

    A CPU child process uses as many torch threads as this process.

    Returns:
        dict: ``peak_bytes`` (over the state before the call, see the module docstring),
        ``process_peak_bytes`` (whole process on CPU, all of CUDA's allocations on a GPU) and
        ``seconds`` (that single call, cold); or ``{'error': message}``.
    """
    if torch.device(params['device']).type == 'cpu':
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context('spawn')) as pool:
            return pool.submit(_peak_rss_of_one_call, kind, params, torch.get_num_threads()).result()
    device = torch.device(params['device'])
    try:
        fn = build(kind, params)
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        seconds = _elapsed(fn, device)[0]
        peak = torch.cuda.max_memory_allocated(device)
    except Exception as exception:
        return {'error': _error(exception)}
    return {'peak_bytes': peak - before, 'process_peak_bytes': peak, 'seconds': seconds}
