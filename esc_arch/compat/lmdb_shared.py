"""Let several BasicSR datasets read the same LMDB in one process.

py-lmdb 2 and later refuse to open an environment that is already open in the process
(``lmdb.Error: The environment '...' is already open in this process``). BasicSR's
``LmdbBackend`` opens its own environment for every dataset, so a training set and a
validation set on one LMDB (or DataLoader workers forked from a process that already
opened it, since the open set is inherited) fail. BasicSR only ever reads its LMDBs, so
its backend now shares one read-only environment per database folder instead.
"""
import os

__all__ = ['backend_init', 'needs_fix', 'open_shared']

_shared_environments = {}


def open_shared(path: str, readonly: bool = True, **options: object) -> object:
    """Open the LMDB at ``path``, sharing read-only environments.

    Args:
        path (str): LMDB folder.
        readonly (bool): Read-only environments are shared; writable ones are opened
            afresh, as lmdb does.
        **options: Further ``lmdb.open`` arguments (``lock``, ``readahead``...); the first
            read-only open of a folder decides them.

    Returns:
        lmdb.Environment: For read-only opens, the same object for every caller that
        names the same folder.
    """
    import lmdb

    if not readonly:
        return lmdb.open(path, readonly=False, **options)
    key = os.path.realpath(path)
    environment = _shared_environments.get(key)
    if environment is None:
        environment = lmdb.open(path, readonly=True, **options)
        _shared_environments[key] = environment
    return environment


def backend_init(self: object, db_paths: str | list[str], client_keys: str | list[str] = 'default',
                 readonly: bool = True, lock: bool = False, readahead: bool = False, **kwargs: object) -> None:
    """BasicSR's ``LmdbBackend.__init__``, opening the databases with :func:`open_shared`."""
    if isinstance(client_keys, str):
        client_keys = [client_keys]
    self.db_paths = [str(path) for path in db_paths] if isinstance(db_paths, list) else [str(db_paths)]
    if len(client_keys) != len(self.db_paths):
        raise ValueError(f'client_keys and db_paths should have the same length, '
                         f'but received {len(client_keys)} and {len(self.db_paths)}.')
    self._client = {
        client: open_shared(path, readonly=readonly, lock=lock, readahead=readahead, **kwargs)
        for client, path in zip(client_keys, self.db_paths)
    }


def needs_fix(original: object = None) -> bool:
    """Whether the installed py-lmdb refuses a second open of one environment (version 2 and later)."""
    try:
        import lmdb
    except ImportError:
        return False
    return int(lmdb.__version__.split('.')[0]) >= 2

