"""Test options run on the benchmark sets that exist: missing ones are skipped with a notice.

The generated test options list the five usual benchmarks; few people have all of them. A set whose
folders are missing is left out, one set can be left out on purpose with ``--force_yml
datasets:KEY=~`` (a null; KEY is the set's key, e.g. ``test_4``, or its ``name``, e.g. ``Urban100``), and
only options with no set left are an error.
"""
import os

from esc_arch.errors import OptionsError

__all__ = ['drop_missing_test_sets']


def drop_missing_test_sets(options: dict) -> list[str]:
    """Remove from ``options['datasets']`` (in place) the sets set to null and those whose folders are missing.

    Args:
        options (dict): BasicSR test options.

    Returns:
        list[str]: One notice per set skipped because a ``dataroot_*`` path does not exist.

    Raises:
        OptionsError: No test set is left (``options`` is then unchanged).
    """
    datasets = options.get('datasets')
    if not isinstance(datasets, dict) or not datasets:
        return []  # no sets listed at all: the options checks report it
    # --force_yml datasets:Urban100=~ adds a null key rather than replacing test_4: drop the set of that name too
    nulled = {key for key, dataset in datasets.items() if dataset is None}
    kept, notices, first_missing = {}, [], None
    for key, dataset in datasets.items():
        if dataset is None or (isinstance(dataset, dict) and dataset.get('name') in nulled):
            continue
        missing = None
        if isinstance(dataset, dict):  # anything else is left to the options checks
            missing = next((f'datasets:{key}:{option} not found: {path}' for option, path in dataset.items()
                            if option.startswith('dataroot') and isinstance(path, str) and not os.path.exists(path)),
                           None)
        if missing:
            notices.append(f'skipping {dataset.get("name", key)}: {missing}')
            first_missing = first_missing or missing
        else:
            kept[key] = dataset
    if not kept:
        reason = f' ({first_missing}, and likewise for every other set)' if first_missing else ''
        raise OptionsError(f'no test set is left to run{reason}')
    datasets.clear()
    datasets.update(kept)
    return notices
