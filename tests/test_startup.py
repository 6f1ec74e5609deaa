"""A command line that starts fast, and ``import esc_arch`` that stays light while registering with BasicSR.

Every test runs a fresh interpreter (what is imported is the point), so they are marked slow. Start-up
times themselves are measured by ``python -m benchmarks.startup`` (BENCHMARKS.md), not here.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from esc_arch.cli import COMMANDS

REPO_ROOT = Path(__file__).resolve().parents[1]
HEAVY_MODULES = ('torch', 'torchvision', 'basicsr', 'scipy', 'lmdb', 'onnx', 'spandrel')
REGISTERED = {'arch': ['ESC', 'ESCFP', 'ESCLTE', 'ESCReal', 'Bicubic'], 'model': ['ESCModel', 'ArbitraryScaleModel'],
              'dataset': ['ArbitraryScaleDataset', 'HROnlyBicubicDataset'], 'metric': ['calculate_pyiqa']}
# Prints, as JSON, the names of REGISTERED that BasicSR's registries hold after the statements given.
REGISTRY_PROBE = '''
import json, sys
exec(sys.argv[1])
from basicsr.utils import registry
wanted = json.loads(sys.argv[2])
found = {kind: [name for name in names if name in getattr(registry, kind.upper() + '_REGISTRY')]
         for kind, names in wanted.items()}
from esc_arch.compat import PATCHES, is_applied
print(json.dumps({'found': found, 'import_rows': [p.name for p in PATCHES if p.when == 'import' and is_applied(p)],
                  'functional_tensor': 'torchvision.transforms.functional_tensor' in sys.modules}))
'''


def run_python(*arguments, env=None):
    result = subprocess.run([sys.executable, *arguments], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                            env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def imported_modules(importtime_report: str) -> set[str]:
    """The module names of a ``python -X importtime`` report."""
    lines = importtime_report.splitlines()
    return {line.rsplit('|', 1)[-1].strip() for line in lines if line.startswith('import time:')}


@pytest.mark.slow
@pytest.mark.parametrize('arguments', [['-c', 'import esc_arch'], ['-m', 'esc_arch.cli', '--help'],
                                       *(['-m', 'esc_arch.cli', name, '--help'] for name in COMMANDS)],
                         ids=['import esc_arch', 'basicsr --help', *COMMANDS])
def test_help_and_import_need_no_heavy_module(arguments):
    modules = imported_modules(run_python('-X', 'importtime', *arguments).stderr)
    assert 'esc_arch' in modules
    heavy = sorted(name for name in modules if name.split('.')[0] in HEAVY_MODULES)
    assert not heavy, f'{" ".join(arguments)} imports {", ".join(heavy[:5])}'


BASICSR_FIRST = (  # basicsr made importable under a bare stand-in for the package, which is then forgotten
    'import sys, types; package = types.ModuleType("esc_arch"); package.__path__ = ["esc_arch"]; '
    'sys.modules["esc_arch"] = package; import esc_arch.compat; esc_arch.compat.apply_import_patches(); '
    '[sys.modules.pop(name) for name in list(sys.modules) if name.split(".")[0] == "esc_arch"]; '
    'import basicsr; import esc_arch')


@pytest.mark.slow
@pytest.mark.parametrize('statements', [
    'import esc_arch; from basicsr.train import train_pipeline',  # the documented use in a BasicSR train.py
    'from esc_arch import ESC',  # a lazy public name
    'import esc_arch.models.esc_model',  # basicsr imported by one of esc_arch's own modules, half-imported
    'import esc_arch.integrations.spandrel; import esc_arch.registration as r; r.register()',  # torchvision first
    'import register',
    BASICSR_FIRST,
], ids=['esc_arch then basicsr', 'lazy name', 'half-imported', 'spandrel', 'register.py', 'basicsr first'])
def test_registration_and_import_rows_whatever_the_import_order(statements):
    report = json.loads(run_python('-c', REGISTRY_PROBE, statements, json.dumps(REGISTERED)).stdout.splitlines()[-1])
    assert report['found'] == REGISTERED
    assert report['functional_tensor']
    # the patch records of the forgotten stand-in are gone with it
    assert report['import_rows'] or statements == BASICSR_FIRST


@pytest.mark.slow
def test_passive_openmp_waits_for_train():
    """The thread policy runs before torch is imported, so OpenMP's passive waiting applies to the run itself."""
    probe = ('import esc_arch.threads as threads\n'
             'policies = []\n'
             'apply = threads.apply_thread_policy\n'
             'threads.apply_thread_policy = lambda: policies.append(apply()) or policies[-1]\n'
             'from esc_arch.cli import main\n'
             "main(['train', '-opt', 'no_such_options.yml'])\n"
             'print(policies[0].waits_passively)\n')
    env = {name: value for name, value in os.environ.items() if name not in ('OMP_WAIT_POLICY', 'OMP_NUM_THREADS')}
    assert run_python('-c', probe, env=env).stdout.split()[-1] == 'True'
