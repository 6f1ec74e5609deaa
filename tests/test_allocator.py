"""The inference commands' allocator policy: applied on glibc, and the user's own malloc settings win."""
import os
import platform
import subprocess
import sys

import pytest

REPORT = 'from esc_arch.allocator import keep_freed_memory; print(keep_freed_memory())'


def _report(**environ):
    env = {key: value for key, value in os.environ.items() if not key.startswith(('MALLOC_', 'GLIBC_TUNABLES'))}
    result = subprocess.run([sys.executable, '-c', REPORT], env={**env, **environ}, capture_output=True, text=True,
                            check=True)
    return result.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='mallopt is glibc only')
def test_applied_on_glibc_unless_the_user_set_malloc():
    assert _report() == 'applied'
    assert _report(MALLOC_TRIM_THRESHOLD_='0') == 'not applied: MALLOC_TRIM_THRESHOLD_ is set in the environment'
