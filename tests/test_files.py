"""Writing files: the one atomic file writer (a finished file appears whole under its name, or nothing changes),
and full or read-only disks in the commands and the training pipeline are one-line errors that leave nothing."""
import errno
import os
import subprocess
from argparse import Namespace

import pytest
import torch
from helpers import (
    assert_nothing_written,
    image_folder,
    make_pairs,
    one_line_error,
    train_options,
    write_yaml,
    writing_command_arguments,
)

from esc_arch.cli import basicsr_pipeline
from esc_arch.errors import OutputError
from esc_arch.files import atomic_output, atomic_write_bytes
from esc_arch.models.esc_model import save_atomically


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


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (the test is skipped where it cannot be mounted)."""
    mount_point = tmp_path / 'disk'
    mount_point.mkdir()
    result = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', str(mount_point)],
                            capture_output=True)
    if result.returncode != 0:
        pytest.skip('cannot mount a tmpfs here (needs root)')
    yield mount_point
    subprocess.run(['umount', '-l', str(mount_point)], check=False)


def _fill(disk):
    with open(disk / 'filler', 'wb') as filler:
        try:
            filler.write(b'\0' * (4 * 2**20))
        except OSError:  # full, as wanted
            pass


@pytest.mark.parametrize('command', ['upscale', 'make-lr', 'extract-subimages', 'make-lmdb'])
@pytest.mark.parametrize('problem', ['full', 'read-only'])
def test_full_or_read_only_disk_is_one_line_and_leaves_nothing(tiny_checkpoint, tmp_path, small_disk, capsys,
                                                               command, problem):
    folder = image_folder(tmp_path / 'in', [(40, 40)] * 2)
    if problem == 'full':
        _fill(small_disk)
        message = 'No space left on device'
    else:
        subprocess.run(['mount', '-o', 'remount,ro', str(small_disk)], check=True)
        message = 'Read-only file system'
    output = small_disk / ('out.lmdb' if command == 'make-lmdb' else 'out')
    arguments = writing_command_arguments(command, tiny_checkpoint, folder, output)
    if command == 'make-lmdb' and problem == 'full':
        message = f'not enough free space for {output}'  # checked first: LMDB may crash (SIGBUS) on a full disk
    one_line_error(capsys, arguments, message)
    assert_nothing_written(small_disk, output, empty_folder_allowed=command == 'upscale')


def test_full_disk_while_saving_is_one_line(tmp_path, monkeypatch):
    def full_disk(obj, stream):
        raise OSError(errno.ENOSPC, 'No space left on device')

    target = tmp_path / 'net_g_latest.pth'
    target.write_bytes(b'previous')
    monkeypatch.setattr(torch, 'save', full_disk)
    with pytest.raises(OutputError, match=f'cannot write {target}: No space left on device'):
        save_atomically({}, str(target))
    assert target.read_bytes() == b'previous' and os.listdir(tmp_path) == ['net_g_latest.pth']


@pytest.mark.parametrize('error', [OSError(errno.ENOSPC, 'No space left on device'),
                                   OSError(errno.EROFS, 'Read-only file system')])
def test_disk_errors_inside_the_pipeline_are_one_line(tmp_path, monkeypatch, error):
    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / 'train.yml', train_options(make_pairs(tmp_path / 'pairs'), 2, model_type='ESCModel'))
    args = Namespace(opt='train.yml', launcher='none', auto_resume=False, debug=False, local_rank=0, force_yml=None)

    def pipeline(root):
        raise error

    with pytest.raises(OutputError, match=f'^{error.strerror} while writing under '):
        basicsr_pipeline.run(pipeline, args, 'train')
    assert not (tmp_path / 'experiments').exists()  # the lock was released and its folder removed
