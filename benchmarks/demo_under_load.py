"""``basicsr demo``'s wall and CPU time on an idle machine and beside busy processes.

Runs the demo (``python -m esc_arch.cli demo --iterations N``) in a fresh temporary folder, once per
entry of ``--busy``, with that many CPU-bound processes (``python -c "while True: pass"``) running
beside it, and records its wall time, its CPU time (user + system, its child processes included: the
training and test commands and their data-loader workers) and the load average before and after.
``--code DIR`` picks the checkout whose ``esc_arch`` runs, so that two checkouts compare with one
command each::

    python -m benchmarks.demo_under_load --code /path/to/main --label before --output before.json
    python -m benchmarks.demo_under_load --label after --output after.json

On a machine with more cores, ``taskset -c 0,1 python -m benchmarks.demo_under_load ...`` gives the
demo and the busy processes the same two CPUs. A run still going at ``--timeout`` is stopped (and marked
so; its CPU time is then sampled, see :func:`wait_sampling`). Prints a Markdown table; writes JSON only to
``--output``.
"""
import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BUSY_LOOP = 'while True: pass'


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def session_cpu(session: int) -> dict[int, float]:
    """CPU seconds (user + system) so far of each live process of ``session``, by process id."""
    ticks = os.sysconf('SC_CLK_TCK')
    cpu = {}
    for entry in filter(str.isdigit, os.listdir('/proc')):
        try:
            fields = Path('/proc', entry, 'stat').read_text().rsplit(')', 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[3]) == session:  # fields from the state on: state, ppid, pgrp, session, ..., utime, stime
            cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    return cpu


def wait_sampling(demo: subprocess.Popen, timeout: float) -> tuple[int, float, bool]:
    """Wait for the demo (stopping its session after ``timeout`` s); its exit status, CPU seconds, and whether cut.

    A finished demo's CPU time is exact (``wait4``: the processes it waited for are included). A demo cut
    short leaves its training process to stop on its own, outside ``wait4``'s count: its CPU time is then
    the sum of what each of the session's processes had used when last seen (sampled each second).
    """
    start, seen, cut = time.perf_counter(), {}, False
    while True:
        pid, status, usage = os.wait4(demo.pid, os.WNOHANG)
        if pid:
            break
        seen.update(session_cpu(demo.pid))
        if not cut and time.perf_counter() - start > timeout:
            os.killpg(demo.pid, signal.SIGTERM)
            cut = True
        time.sleep(1)
    if not cut:
        return status, usage.ru_utime + usage.ru_stime, False
    for _ in range(120):  # the training process saves its state on SIGTERM, then ends
        remaining = session_cpu(demo.pid)
        if not remaining:
            break
        seen.update(remaining)
        time.sleep(1)
    else:
        os.killpg(demo.pid, signal.SIGKILL)
    return status, sum(seen.values()), True


def run_demo(code: Path, iterations: int, busy: int, timeout: float) -> dict:
    """One demo run beside ``busy`` CPU-bound processes; its wall and CPU seconds and the load average."""
    with tempfile.TemporaryDirectory(prefix='demo-load-') as folder:
        shutil.copytree(code / 'options', Path(folder) / 'options',
                        ignore=lambda _, names: [name for name in names if not name.startswith('demo_')])
        environment = {**os.environ, 'PYTHONPATH': str(code), 'PYTHONUNBUFFERED': '1'}
        command = [sys.executable, '-m', 'esc_arch.cli', 'demo', '--iterations', str(iterations)]
        busy_processes = [subprocess.Popen(['timeout', str(int(timeout) + 180), sys.executable, '-c', BUSY_LOOP])
                          for _ in range(busy)]
        try:
            time.sleep(2 if busy else 0)  # let them take the CPUs first
            load_before = load_average()
            start = time.perf_counter()
            with open(Path(folder) / 'output.txt', 'w') as output:
                demo = subprocess.Popen(command, cwd=folder, env=environment, stdout=output, stderr=subprocess.STDOUT,
                                        start_new_session=True)
                status, cpu, cut = wait_sampling(demo, timeout)
            wall = time.perf_counter() - start
            load_after = load_average()
        finally:
            for process in busy_processes:
                process.terminate()
                process.wait()
        text = (Path(folder) / 'output.txt').read_text(errors='replace')
    lines = text.splitlines()
    done = re.findall(r'iter:\s*(\d+),', text)
    return {
        'busy_processes': busy, 'iterations': iterations, 'exit_code': os.waitstatus_to_exitcode(status),
        'cut_at_timeout': cut, 'iterations_logged': int(done[-1]) if done else 0,
        'wall_s': round(wall, 1), 'cpu_s': round(cpu, 1),
        'load_before': load_before, 'load_after': load_after,
        'notice': next((line for line in lines if line.startswith('The demo takes')), None),
        'mean_psnr': next((line for line in lines if line.startswith('mean')), None),
        'output_tail': lines[-5:] if os.waitstatus_to_exitcode(status) else [],
    }


def markdown(result: dict) -> str:
    rows = [f'Demo ({result["label"]}, {result["code"]}), {result["cpus_allowed"]} CPUs allowed, '
            f'{result["iterations"]} iterations:', '',
            '| busy | wall (s) | CPU (s) | CPU / idle CPU | load before | load after | exit | iterations logged |',
            '| --- | --- | --- | --- | --- | --- | --- | --- |']
    idle = next((run['cpu_s'] for run in result['runs'] if run['busy_processes'] == 0), None)
    for run in result['runs']:
        ratio = f'{run["cpu_s"] / idle:.2f}' if idle else '-'
        rows.append(f'| {run["busy_processes"]} | {run["wall_s"]} | {run["cpu_s"]} | {ratio} | '
                    f'{" ".join(map(str, run["load_before"]))} | {" ".join(map(str, run["load_after"]))} | '
                    f'{run["exit_code"]}{" (cut at --timeout)" * run["cut_at_timeout"]} | {run["iterations_logged"]} |')
    return '\n'.join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--iterations', type=int, default=400, help='training iterations (default: 400, the demo)')
    parser.add_argument('--busy', type=int, nargs='+', default=[0, 2], metavar='N',
                        help='one run per entry, beside N busy processes (default: 0 2)')
    parser.add_argument('--code', type=Path, default=REPO_ROOT,
                        help='checkout whose esc_arch and options/ to run (default: this one)')
    parser.add_argument('--label', default='this checkout', help='name for the results (e.g. before, after)')
    parser.add_argument('--timeout', type=float, default=3600, help='seconds allowed per demo run (default: 3600)')
    parser.add_argument('--output', type=Path, default=None, help='JSON file to write (default: none)')
    args = parser.parse_args()

    code = args.code.resolve()
    commit = subprocess.run(['git', '-C', str(code), 'rev-parse', '--short', 'HEAD'], capture_output=True,
                            text=True).stdout.strip() or None
    result = {'label': args.label, 'code': str(code), 'commit': commit, 'iterations': args.iterations,
              'cpus_allowed': len(os.sched_getaffinity(0)), 'cpu_count': os.cpu_count(),
              'processor': platform.processor() or platform.machine(), 'python': platform.python_version(),
              'started': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
              'environment': {name: os.environ[name] for name in ('OMP_NUM_THREADS', 'OMP_WAIT_POLICY')
                              if name in os.environ},
              'runs': []}
    for busy in args.busy:
        result['runs'].append(run_demo(code, args.iterations, busy, args.timeout))
        print(json.dumps(result['runs'][-1]), flush=True)
        if args.output:  # after each run: a run cut short keeps the ones before it
            args.output.write_text(json.dumps(result, indent=1) + '\n')
    print(markdown(result))


if __name__ == '__main__':
    main()
