"""Damaged LMDBs are one line at open, before anything is created (issue 21, item 11).

The LMDBs are made by the project's own ``basicsr make-lmdb`` and then damaged. A ``data.mdb`` cut short would
crash a reader with SIGBUS: here only the check reads it in-process (it never reads through LMDB's memory map
before the length is known to be whole); the end-to-end run is a subprocess.
"""
import os
import shutil

import lmdb
import pytest
from helpers import make_pairs, run_basicsr, train_options, write_yaml  # noqa: E402

from esc_arch.cli import main
from esc_arch.data.lmdb_checks import _meta_pages, check_lmdb
from esc_arch.errors import DatasetError, OptionsError
from esc_arch.options import check_options


@pytest.fixture(scope='module')
def lmdbs(tmp_path_factory):
    """``gt.lmdb`` and ``lq.lmdb`` of 6 pairs under the same keys, as BasicSR's paired LMDB datasets want them."""
    root = make_pairs(tmp_path_factory.mktemp('lmdb') / 'pairs', count=6)
    for path in (root / 'LR').iterdir():
        path.rename(path.with_name(path.name.replace('x4', '')))
    for folder, output in (('HR', 'gt.lmdb'), ('LR', 'lq.lmdb')):
        assert main(['make-lmdb', '-i', str(root / folder), '-o', str(root / output)]) == 0
    return root


@pytest.fixture
def copies(lmdbs, tmp_path):
    for name in ('gt.lmdb', 'lq.lmdb', 'HR', 'LR'):
        shutil.copytree(lmdbs / name, tmp_path / name)
    return tmp_path


def lmdb_options(root):
    options = train_options(root, total_iter=2)
    options['datasets']['train'].update(dataroot_gt=str(root / 'gt.lmdb'), dataroot_lq=str(root / 'lq.lmdb'),
                                        io_backend={'type': 'lmdb'}, filename_tmpl='{}')
    return options


def _truncate(fraction):
    def damage(root):
        data = root / 'gt.lmdb' / 'data.mdb'
        os.truncate(data, int(data.stat().st_size * fraction))
    return damage


def _garbage(root):
    (root / 'gt.lmdb' / 'data.mdb').write_bytes(os.urandom(3 * 4096))


def _extra_meta_line(root):
    with open(root / 'gt.lmdb' / 'meta_info.txt', 'a') as stream:
        stream.write('img9.png (24,24,3) 1\n')


def _keys_differ(root):
    """An LR LMDB of other images: its keys are not the HR LMDB's."""
    shutil.rmtree(root / 'lq.lmdb')
    (root / 'LR' / 'img0.png').rename(root / 'LR' / 'other.png')
    assert main(['make-lmdb', '-i', str(root / 'LR'), '-o', str(root / 'lq.lmdb')]) == 0


def _no_meta_info(root):
    (root / 'gt.lmdb' / 'meta_info.txt').unlink()


def _meta_info_not_utf8(root):
    (root / 'gt.lmdb' / 'meta_info.txt').write_bytes(b'\xff\xfe img0.png\n')


def _blank_meta_line(root):
    with open(root / 'gt.lmdb' / 'meta_info.txt', 'a') as stream:
        stream.write('\n')


DAMAGES = [
    (_truncate(0.5), DatasetError, r'gt.lmdb/data.mdb is [\d,]+ bytes but its database uses [\d,]+ .*: the file is cut '
     'short; copy it again or rebuild it with basicsr make-lmdb'),
    (_truncate(0), DatasetError, r'gt.lmdb/data.mdb \(0 bytes\) is not an LMDB database \(no LMDB header\)'),
    (lambda root: os.truncate(root / 'gt.lmdb' / 'data.mdb', 100), DatasetError, 'is not an LMDB database'),
    (lambda root: os.truncate(root / 'gt.lmdb' / 'data.mdb', 4096 + 100), DatasetError, 'the file is cut short'),
    (_garbage, DatasetError, r'gt.lmdb/data.mdb \(12,288 bytes\) is not an LMDB database'),
    (_extra_meta_line, DatasetError, r"1 key\(s\) listed in .*gt.lmdb/meta_info.txt are not in its data.mdb "
     r"\(first: 'img9'\)"),
    (_keys_differ, OptionsError, r'^datasets:train: the LMDBs of dataroot_lq and dataroot_gt list different keys '
     r'\(1 only in dataroot_lq, 1 only in dataroot_gt; e.g. "other" only in dataroot_lq\)'),
    (_no_meta_info, DatasetError, r'gt.lmdb is not a complete BasicSR LMDB \(no meta_info.txt\)'),
    (_meta_info_not_utf8, DatasetError, r'cannot read .*gt.lmdb/meta_info.txt: .*codec'),
    (_blank_meta_line, DatasetError, r'gt.lmdb/meta_info.txt line 7 names no key'),
]
IDS = ['half', 'zero-bytes', 'below-one-page', 'one-page-of-two', 'garbage', 'extra-meta-line', 'keys-differ',
       'no-meta-info', 'meta-info-not-utf8', 'blank-meta-line']


@pytest.mark.parametrize('damage, error_class, message', DAMAGES, ids=IDS)
def test_damaged_lmdb_is_one_line_from_the_options_check(copies, damage, error_class, message):
    options = lmdb_options(copies)
    check_options(options)  # whole LMDBs pass
    damage(copies)
    with pytest.raises(error_class, match=message) as error:
        check_options(options)
    assert '\n' not in str(error.value)
    if error_class is DatasetError:
        assert str(error.value).startswith('datasets:train:dataroot_gt: ')


def test_whole_lmdb_gives_its_listed_keys(lmdbs):
    assert check_lmdb(str(lmdbs / 'gt.lmdb'), 'x') == {f'img{index}' for index in range(6)}


def test_meta_page_reading_agrees_with_lmdb_after_later_transactions(lmdbs, tmp_path):
    """The check reads LMDB's meta pages itself (before mapping the file); after further commits the current meta
    page alternates between pages 0 and 1, and the page size and last page must still be lmdb's own."""
    folder = tmp_path / 'grown.lmdb'
    shutil.copytree(lmdbs / 'gt.lmdb', folder)
    for commit in range(3):
        environment = lmdb.open(str(folder), map_size=2**24)
        with environment.begin(write=True) as transaction:
            transaction.put(f'extra{commit}'.encode(), os.urandom(20000))
        environment.close()
        environment = lmdb.open(str(folder), readonly=True, lock=False)
        expected = environment.stat()['psize'], environment.info()['last_pgno']
        environment.close()
        assert _meta_pages(str(folder / 'data.mdb')) == expected
        assert os.path.getsize(folder / 'data.mdb') >= (expected[1] + 1) * expected[0]
    check_lmdb(str(folder), 'x')


def test_lmdb_stays_readable_after_the_check_and_checkable_while_read(lmdbs):
    """The check closes its environment, so BasicSR's reader opens the database again in the same process; and
    while the reader holds it open (py-lmdb 2 refuses a second open), a second check reads the shared one."""
    from basicsr.data import build_dataset

    options = lmdb_options(lmdbs)
    check_options(options)
    dataset = build_dataset(dict(options['datasets']['train'], phase='train', scale=4))
    assert dataset[0]['gt'].shape[-1] == 16
    check_options(options)
    assert dataset[1]['gt'].shape[-1] == 16


@pytest.mark.slow
def test_basicsr_train_on_a_truncated_lmdb_is_one_line_not_sigbus(copies):
    """The crash the issue found (exit 135, no message, at the first iteration) is now one line before anything
    is created; a subprocess, so that a SIGBUS could not take the test process with it."""
    work = copies / 'work'
    work.mkdir()
    write_yaml(work / 'train.yml', lmdb_options(copies))
    _truncate(0.5)(copies)

    result = run_basicsr(work, 'train', '-opt', 'train.yml')

    assert result.returncode == 2, (result.returncode, result.stdout[-2000:])
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line.startswith('basicsr train: error: datasets:train:dataroot_gt: ') and 'cut short' in last_line
    assert 'Traceback' not in result.stdout
    assert os.listdir(work) == ['train.yml']
