"""The one atomic file writer: a finished file appears whole under its name, or nothing changes."""
import os

import pytest

from esc_arch.errors import OutputError
from esc_arch.files import atomic_output, atomic_write_bytes


def test_writes_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / 'sub' / 'out.bin'
    atomic_write_bytes(target, b'abc')
    assert target.read_bytes() == b'abc'
    assert os.listdir(target.parent) == ['out.bin']


def test_failure_inside_block_keeps_previous_file(tmp_path):
    target = tmp_path / 'out.bin'
    target.write_bytes(b'old')
    with pytest.raises(RuntimeError):
        with atomic_output(target) as temporary:
            temporary.write_bytes(b'half')
            raise RuntimeError('interrupted')
    assert target.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['out.bin']


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes into read-only folders')
def test_read_only_folder_is_one_line_error(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(OutputError, match='cannot write'):
            atomic_write_bytes(tmp_path / 'out.bin', b'abc')
    finally:
        tmp_path.chmod(0o700)


def test_write_under_a_file_is_one_line_error(tmp_path):
    (tmp_path / 'file').write_bytes(b'')
    with pytest.raises(OutputError, match='cannot write'):
        atomic_write_bytes(tmp_path / 'file' / 'out.bin', b'abc')
