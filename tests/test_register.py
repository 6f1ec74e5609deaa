"""``import register`` (repository root) and ``import esc_arch`` register the same names, once."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter at the repository root: makes basicsr importable with esc_arch.compat
# alone (under a bare stand-in for the esc_arch package, whose __init__ would register everything;
# both are forgotten afterwards), records basicsr's own registrations, then reports what each import
# step added.
PROBE = '''
import importlib, json, sys, types
package = types.ModuleType('esc_arch')
package.__path__ = ['esc_arch']
sys.modules['esc_arch'] = package
import esc_arch.compat
esc_arch.compat.apply_import_patches()
for name in [name for name in sys.modules if name == 'esc_arch' or name.startswith('esc_arch.')]:
    del sys.modules[name]
from basicsr.utils import registry

def names():
    return {r._name: sorted(r._obj_map) for r in (registry.ARCH_REGISTRY, registry.MODEL_REGISTRY,
            registry.DATASET_REGISTRY, registry.LOSS_REGISTRY, registry.METRIC_REGISTRY)}

before = names()
added = []
for step in sys.argv[1:]:
    if step == 'reload':
        importlib.reload(sys.modules['register'])
    else:
        importlib.import_module(step)
    added.append({kind: sorted(set(found) - set(before[kind])) for kind, found in names().items()})
print(json.dumps(added))
'''


def registrations(*steps):
    result = subprocess.run([sys.executable, '-c', PROBE, *steps], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_register_and_esc_arch_register_the_same_names_once():
    through_register, then_package, after_reload = registrations('register', 'esc_arch', 'reload')
    (through_package, ) = registrations('esc_arch')
    assert through_register == then_package == after_reload
    # register.py also applies the patches (apply_all): the folder-real-esrgan-dataset row adds BasicSR's
    # plain name for ESC's class; import esc_arch alone registers ESC's names only.
    with_patch = sorted([*through_package['dataset'], 'RealESRGANDataset'])
    assert through_register == {**through_package, 'dataset': with_patch}
    assert {'ESC', 'ESCFP', 'ESCReal', 'Bicubic'} <= set(through_package['arch'])
