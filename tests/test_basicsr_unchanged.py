"""BasicSR behaves the same for its own users with every patch applied as without.

PyPI's basicsr 1.4.2 ships no test suite (no ``tests/`` in its sdist, no wheel): when a checkout of
BasicSR's tests is named by ``BASICSR_TESTS`` it is run twice, plainly and with ``apply_all()`` first;
otherwise (and anyway) tests/basicsr_probes.py calls the BasicSR functions the patches touch, twice,
and the results must be equal but for the differences the patches are for.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
# Meant to differ: the two dataset names build ESC's checked classes (same samples: paired_dataset and
# real_esrgan_dataset_with_meta_info are compared), and 'applied' lists the patches.
INTENDED_DIFFERENCES = {'applied', 'registry_lookups'}


def run(*arguments):
    return subprocess.run([sys.executable, *arguments], cwd=TESTS_DIR.parent, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_basicsr_probes_give_the_same_results_with_every_patch_applied():
    plain, patched = (run(str(TESTS_DIR / 'basicsr_probes.py'), *flag) for flag in ((), ('--patched', )))
    assert plain.returncode == 0 and patched.returncode == 0, plain.stderr[-2000:] + patched.stderr[-2000:]
    plain, patched = (json.loads(result.stdout.strip().splitlines()[-1]) for result in (plain, patched))
    assert plain.keys() == patched.keys()
    differing = {name for name in plain if plain[name] != patched[name]}
    assert differing == INTENDED_DIFFERENCES, {name: (plain[name], patched[name]) for name in differing}
    assert not any(str(result).startswith('raised') for result in plain.values()), plain
    assert patched['registry_lookups'] == {'PairedImageDataset': 'esc_arch.data.paired_image_dataset',
                                           'RealESRGANDataset': 'esc_arch.data.real_world_dataset'}


@pytest.mark.slow
def test_basicsr_own_test_suite_passes_the_same_with_every_patch_applied(tmp_path):
    tests = os.environ.get('BASICSR_TESTS')
    if not tests or not Path(tests).is_dir():
        pytest.skip("BasicSR's own tests are absent (PyPI's basicsr ships none): set BASICSR_TESTS to a "
                    "checkout's tests/")
    # basicsr cannot be imported next to torchvision >= 0.17 without the 'import' rows: both runs have them.
    (tmp_path / 'esc_import.py').write_text('import esc_arch  # noqa: F401\n')
    (tmp_path / 'esc_apply_all.py').write_text('import esc_arch.compat\n\nesc_arch.compat.apply_all()\n')
    outcomes = []
    for plugin in ('esc_import', 'esc_apply_all'):
        report = tmp_path / f'report{len(outcomes)}.txt'
        env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(tmp_path), os.environ.get('PYTHONPATH', '')])}
        subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-rA', '-p', plugin, tests],
                       cwd=tmp_path, env=env, stdout=report.open('w'), stderr=subprocess.STDOUT, timeout=1800)
        outcomes.append(sorted(line for line in report.read_text().splitlines()
                               if line.startswith(('PASSED', 'FAILED', 'ERROR', 'SKIPPED'))))
    assert outcomes[0] == outcomes[1]
