"""Start-up times of the ``basicsr`` command line: ``--help`` of every command, and ``import esc_arch``.

Each case runs in a fresh interpreter, several times; the minimum wall time is reported (the least
disturbed by other programs), with the machine's load average. Run from the repository root::

    python -m benchmarks.startup            # 5 runs of each case
    python -m benchmarks.startup --runs 3

The numbers in BENCHMARKS.md ("Start-up times") come from this script.
"""
import argparse
import os
import subprocess
import sys
import time

from esc_arch.cli import COMMANDS

CASES = {'import esc_arch': [sys.executable, '-c', 'import esc_arch'],
         'basicsr --help': [sys.executable, '-m', 'esc_arch.cli', '--help']}
CASES.update({f'basicsr {name} --help': [sys.executable, '-m', 'esc_arch.cli', name, '--help'] for name in COMMANDS})


def wall_time(command: list[str]) -> float:
    """Seconds from starting ``command`` to its exit (its output discarded)."""
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(prog='python -m benchmarks.startup', description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=5, help='runs of each case; the minimum is reported (default: 5)')
    args = parser.parse_args()
    print(f'load average before: {" ".join(f"{value:.2f}" for value in os.getloadavg())}')
    print('| case | min wall time (s) |\n|---|---|')
    for name, command in CASES.items():
        print(f'| `{name}` | {min(wall_time(command) for _ in range(args.runs)):.2f} |', flush=True)
    print(f'load average after: {" ".join(f"{value:.2f}" for value in os.getloadavg())}')


if __name__ == '__main__':
    main()
