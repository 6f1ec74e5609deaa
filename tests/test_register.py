"""``import register`` (repository root) and ``import esc_arch`` register the same names, once."""
import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter at the repository root: makes basicsr importable with the
# torchvision fix alone (loaded from its file, so that esc_arch itself is not imported),
# records basicsr's own registrations, then reports what each import step added.
PROBE = '''
import importlib, importlib.util, json, sys
spec = importlib.util.spec_from_file_location('torchvision_fixes', 'esc_arch/compat/torchvision_fixes.py')
fixes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fixes)
fixes.apply()
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


def test_register_and_esc_arch_register_the_same_names_once():
    through_register, then_package, after_reload = registrations('register', 'esc_arch', 'reload')
    (through_package, ) = registrations('esc_arch')
    assert through_register == then_package == after_reload == through_package
    assert {'ESC', 'ESCFP', 'ESCReal', 'Bicubic'} <= set(through_package['arch'])
