"""Check a BasicSR LMDB before a dataset reads it: complete files, a whole ``data.mdb``, listed keys present.

BasicSR maps ``data.mdb`` into memory and trusts it. A copy cut short crashes the process with SIGBUS
(no message) at the first read of a page past the end; a file of 0 bytes or of other content is an
``lmdb`` traceback; a ``meta_info.txt`` line whose key is not in the database (or LR and HR databases
whose keys differ) is a ``ValueError`` or an unreadable image later. :func:`check_lmdb` finds each
at open, reading the file size and LMDB's two meta pages with ordinary reads (never through the map),
so that a damaged database is one line before anything is created.

Not detected: pages damaged inside a ``data.mdb`` of the right length (that needs reading every page);
an image that then fails to decode is named by the dataset when it is read.
"""
import os
import struct

from esc_arch.errors import DatasetError

__all__ = ['LMDB_REQUIRED_FILES', 'check_lmdb', 'lmdb_keys_listed']

LMDB_REQUIRED_FILES = ('data.mdb', 'meta_info.txt')
# LMDB's meta page on 64-bit builds (lmdb's mdb.c): a 16-byte page header, then MDB_meta: magic and version
# (uint32 each), address and map size, two 48-byte MDB_db records (the first one's leading uint32 holds the
# page size), the last used page number and the transaction id (8 bytes each). The two meta pages are pages 0
# and 1; the one with the larger transaction id is current.
_MAGIC = 0xBEEFC0DE
_META = struct.Struct('<16xII16x I44x 48x QQ')


def _meta_pages(data_file):
    """``(page size, last used page)`` of the current meta page of ``data_file``, or None if it has none."""
    with open(data_file, 'rb') as stream:
        first = stream.read(_META.size)
        if len(first) < _META.size:
            return None
        magic, _, page_size, last_page, txnid = _META.unpack(first)
        if magic != _MAGIC or page_size < _META.size or page_size & (page_size - 1):
            return None
        stream.seek(page_size)
        second = stream.read(_META.size)
    metas = [(txnid, page_size, last_page)]
    if len(second) == _META.size and _META.unpack(second)[0] == _MAGIC:
        magic, _, _, second_last_page, second_txnid = _META.unpack(second)
        metas.append((second_txnid, page_size, second_last_page))
    _, page_size, last_page = max(metas)
    return page_size, last_page


def lmdb_keys_listed(meta_info: str) -> list[str]:
    """The keys BasicSR reads from an LMDB's ``meta_info.txt``: each line up to its first ``.``, as
    :func:`basicsr.data.data_util.paths_from_lmdb` takes them."""
    with open(meta_info, encoding='utf-8') as stream:
        return [line.split('.')[0] for line in stream.read().splitlines()]


def check_lmdb(folder: str, where: str) -> set[str]:
    """Check the BasicSR LMDB ``folder`` and return the keys its ``meta_info.txt`` lists.

    Checked, without reading through LMDB's memory map until the file is known to be whole: both files
    exist; ``data.mdb`` is an LMDB whose length covers every page its meta page says is used (a copy cut
    short would crash the reader with SIGBUS); it opens; ``meta_info.txt`` is UTF-8 and every key it
    lists is in the database.

    Args:
        folder (str): The ``*.lmdb`` folder.
        where (str): The option that names it, for messages (``datasets:train:dataroot_gt``).

    Raises:
        DatasetError: The first problem found, in one line.
    """
    import lmdb

    for name in LMDB_REQUIRED_FILES:
        if not os.path.isfile(os.path.join(folder, name)):
            raise DatasetError(f'{where}: {folder} is not a complete BasicSR LMDB (no {name}); '
                               'make it with basicsr make-lmdb')
    data_file = os.path.join(folder, 'data.mdb')
    size = os.path.getsize(data_file)
    meta = _meta_pages(data_file)
    if meta is None:
        raise DatasetError(f'{where}: {data_file} ({size:,} bytes) is not an LMDB database (no LMDB header); '
                           'copy it again or rebuild it with basicsr make-lmdb')
    page_size, last_page = meta
    _check_length(data_file, size, page_size, last_page, where)
    environment, shared = _open(folder, where)
    try:
        info, stat = environment.info(), environment.stat()
        _check_length(data_file, size, stat['psize'], info['last_pgno'], where)  # lmdb's own reading of the meta
        listed = _listed_keys(folder, where)
        with environment.begin(buffers=True) as transaction:
            stored = {bytes(key).decode('utf-8', 'replace') for key in transaction.cursor().iternext(values=False)}
    except lmdb.Error as error:
        raise DatasetError(f'{where}: the LMDB {folder} is damaged: {error}') from None
    finally:
        if not shared:
            environment.close()
    missing = [key for key in listed if key not in stored]
    if missing:
        raise DatasetError(f'{where}: {len(missing)} key(s) listed in {folder}/meta_info.txt are not in its data.mdb '
                           f'(first: {missing[0]!r}); rebuild the LMDB with basicsr make-lmdb')
    return set(listed)


def _open(folder, where):
    """A read-only environment of ``folder`` and whether it is the one the process's datasets share.

    py-lmdb 2 refuses a second open of a database in one process: where a dataset of this process (an earlier
    run of ``basicsr`` in-process) has it open, its shared environment (:mod:`esc_arch.compat.lmdb_shared`)
    is read, and left open.
    """
    import lmdb

    from esc_arch.compat.lmdb_shared import open_shared

    try:
        return lmdb.open(folder, readonly=True, lock=False, readahead=False), False
    except lmdb.Error as error:
        if 'already open' not in str(error):
            raise DatasetError(f'{where}: cannot open the LMDB {folder}: {error}') from None
    try:
        return open_shared(folder, readonly=True, lock=False, readahead=False), True
    except lmdb.Error as error:
        raise DatasetError(f'{where}: cannot open the LMDB {folder}: {error}') from None


def _check_length(data_file, size, page_size, last_page, where):
    needed = (last_page + 1) * page_size
    if size < needed:
        raise DatasetError(f'{where}: {data_file} is {size:,} bytes but its database uses {needed:,} (pages 0 to '
                           f'{last_page} of {page_size} bytes): the file is cut short; copy it again or rebuild '
                           'it with basicsr make-lmdb')


def _listed_keys(folder, where):
    meta_info = os.path.join(folder, 'meta_info.txt')
    try:
        listed = lmdb_keys_listed(meta_info)
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f'{where}: cannot read {meta_info}: {error}') from None
    if not listed:
        raise DatasetError(f'{where}: {meta_info} lists no image')
    blank = next((number for number, key in enumerate(listed, 1) if not key.strip()), None)
    if blank is not None:
        raise DatasetError(f'{where}: {meta_info} line {blank} names no key (BasicSR reads the key up to the '
                           'first "." of each line)')
    return listed
