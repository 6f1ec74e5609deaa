"""Load BasicSR options files and ``--force_yml`` overrides without running code from them.

BasicSR 1.4.2 reads options with PyYAML's full loader (a ``!!python/object/apply:os.system [...]`` tag
runs when the file is read), ``eval``s ``--force_yml`` values that start with ``[`` and ``exec``s the
override's keys. Here options files are read with :class:`OptionsLoader` (PyYAML's safe loader: plain
YAML types only; BasicSR's ``!!float 1e-4`` tags work, mappings keep their order) which also refuses a
key given twice in one mapping, and override values are parsed as YAML scalars or lists
(:func:`override_value`).

A run's options are read once (:func:`read_run_options`): by the ``basicsr`` command, which hands them
to BasicSR's pipeline with :func:`prepared_options`, or else by :func:`parse_options` itself. BasicSR's
``parse_options`` (patched: ``safe-parse-options-*``, ``safe-ordered-yaml`` and, while it runs,
``basicsr-parser-argv`` in :mod:`esc_arch.compat.table`) then takes those options instead of parsing
the file, and an argument list without the ``--force_yml`` entries it would ``exec``.
"""
import argparse
import contextlib
import functools
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO

import yaml

from esc_arch.compat.table import patches_for, patches_named
from esc_arch.errors import OptionsError
from esc_arch.options.test_sets import drop_missing_test_sets
from esc_arch.patching import patched

__all__ = ['MAX_DEPTH', 'MAX_EXPANDED_VALUES', 'OptionsLoader', 'apply_overrides', 'argv_for_basicsr_parser',
           'basicsr_argv', 'load_options', 'load_pipeline_options', 'override_value', 'parse_options',
           'prepared_options', 'read_run_options', 'safe_ordered_yaml', 'safe_parse_options']

# A number PyYAML's YAML 1.1 resolver leaves as a string (``1e-4`` needs a dot there); BasicSR users write it.
NUMBER = re.compile(r'[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?')
# BasicSR's override parser reads these as None; YAML reads only ``~``/``null``.
NONE_WORDS = ('none', '~', 'null')
# Sections that BasicSR's pipelines read without checking for them.
COMMON_SECTIONS = ('name', 'model_type', 'num_gpu', 'datasets', 'path')
TRAIN_SECTIONS = COMMON_SECTIONS + ('train', 'logger')
TEST_SECTIONS = COMMON_SECTIONS + ('val', )
MAPPING_SECTIONS = ('datasets', 'path', 'train', 'logger', 'val')


MAX_DEPTH = 50
"""Deepest nesting of mappings and lists an options file may have (BasicSR's own go 4 deep)."""
MAX_EXPANDED_VALUES = 100_000
"""Most values an options file may hold once its aliases are expanded (BasicSR's own hold a few hundred)."""
_MERGE_TAG = 'tag:yaml.org,2002:merge'


class OptionsLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no Python objects) for options files that may come from others.

    It refuses a key given twice in one mapping, nesting deeper than :data:`MAX_DEPTH` (checked while
    composing, so a file of many ``[`` ends in one line rather than a RecursionError), and aliases whose
    expansion would hold more than :data:`MAX_EXPANDED_VALUES` values or contain themselves (an alias
    "bomb" of nested anchors is a small file whose printout, as BasicSR logs its options, never ends).
    Merge keys (``<<: *defaults``) work as in YAML 1.1: the mapping's own keys win.
    """

    def __init__(self, stream: str | TextIO) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise OptionsError(f'{mark.name}, line {mark.line + 1}: options nested more than {MAX_DEPTH} '
                                   'levels deep')
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: yaml.Node) -> object:
        _check_expansion(node)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # merged keys may be overridden by the mapping's own
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                continue  # the safe loader itself refuses keys that cannot be dictionary keys
            if key in seen:
                raise OptionsError(f'{key_node.start_mark.name}, line {key_node.start_mark.line + 1}: '
                                   f'option "{key}" is given twice in the same section')
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand beyond :data:`MAX_EXPANDED_VALUES` values or into themselves.

    Counted on the composed graph, where an alias is the anchored node itself: each node's expanded size
    is computed once, so the count costs as much as the file, not as its expansion.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def expanded(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise OptionsError(f'{node.start_mark.name}, line {node.start_mark.line + 1}: an alias refers to a '
                               'value that contains it')
        open_nodes.add(key)
        children = node.value if isinstance(node, yaml.SequenceNode) else (
            [child for pair in node.value for child in pair] if isinstance(node, yaml.MappingNode) else ())
        size = 1 + sum(expanded(child) for child in children)  # depth is bounded by MAX_DEPTH
        open_nodes.discard(key)
        sizes[key] = size
        if size > MAX_EXPANDED_VALUES:
            raise OptionsError(f'{node.start_mark.name}, line {node.start_mark.line + 1}: its aliases expand to '
                               f'more than {MAX_EXPANDED_VALUES:,} values')
        return size

    expanded(root)


def _read_yaml(source: str | TextIO) -> object:
    """One YAML document read by :class:`OptionsLoader` (a safe loader: no Python objects)."""
    loader = OptionsLoader(source)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_options(path: str) -> object:
    """The YAML document in ``path``, read safely (:class:`OptionsLoader`).

    Raises:
        OptionsError: ``path`` is not readable YAML, uses a tag that constructs Python objects, or
            repeats a key in a mapping; the message is one line naming the file (and line).
        OSError: ``path`` cannot be opened.
    """
    with open(path, encoding='utf-8') as stream:
        try:
            return _read_yaml(stream)
        except yaml.constructor.ConstructorError as error:
            where = f', line {error.problem_mark.line + 1}' if error.problem_mark else ''
            raise OptionsError(f'{path}{where}: {error.problem} (options files may hold plain YAML values only, '
                               'never Python objects)') from None
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise OptionsError(f'cannot read {path} as YAML: {" ".join(str(error).split())}') from None


def load_pipeline_options(path: str, sections: tuple[str, ...]) -> dict:
    """Load a BasicSR options file for one of BasicSR's pipelines, refusing what they would trip on.

    Args:
        path (str): The YAML file.
        sections (tuple[str]): Top-level keys the pipeline needs (``train``, ``val``, ...).

    Returns:
        dict: The options, read safely (:func:`load_options`).

    Raises:
        OptionsError: The file is missing, not a mapping, lacks one of ``sections``, or one of its
            ``datasets``, ``path``, ``train``, ``logger`` or ``val`` sections is not a mapping.
    """
    if not os.path.isfile(path):
        raise OptionsError(f'options file not found: {path}')
    options = load_options(path)
    if not isinstance(options, dict):
        raise OptionsError(f'{path} is not a BasicSR options file (expected a mapping of options)')
    missing = [name for name in sections if name not in options]
    if missing:
        raise OptionsError(f'{path} lacks required option(s): {", ".join(missing)}')
    for name in MAPPING_SECTIONS:
        if name in sections and not isinstance(options[name], dict):
            raise OptionsError(f'{path}: option "{name}" must be a mapping')
    return options


def override_value(text: str) -> object:
    """The value of a ``--force_yml KEY=VALUE`` entry: a YAML scalar, list or mapping, never evaluated.

    As BasicSR's parser: ``none``/``~`` is None, ``true``/``false`` booleans, ``!!float 1e-4`` and
    ``1e-4`` floats, ``[1, 2]`` a list; other words (``yes``, ``off``) and text that is not YAML
    (``{}x4``, tags of Python objects) stay strings.
    """
    text = text.strip()
    if text.lower() in NONE_WORDS:
        return None
    try:
        value = _read_yaml(text)
    except (yaml.YAMLError, OptionsError):
        return text  # not YAML (e.g. filename_tmpl={}x4): the words themselves, as BasicSR
    if isinstance(value, bool) and text.lower() not in ('true', 'false'):
        return text  # YAML 1.1 reads yes/no/on/off as booleans; BasicSR keeps them as words
    if isinstance(value, str) and NUMBER.fullmatch(text):
        return float(text)
    return value


def apply_overrides(options: dict, entries: Iterable[str] | None, path: str) -> None:
    """Apply ``--force_yml`` entries (``KEY:SUBKEY=VALUE``) to ``options`` in place.

    As BasicSR: the sections named before the last key must exist; the last key may be new.

    Raises:
        OptionsError: A malformed entry or a missing section.
    """
    for entry in entries or ():
        if entry.count('=') != 1:
            raise OptionsError(f'--force_yml entry "{entry}" is not of the form KEY:SUBKEY=VALUE')
        keys, text = (part.strip() for part in entry.split('='))
        keys = keys.split(':')
        if not all(keys):
            raise OptionsError(f'--force_yml entry "{entry}" names an empty option (KEY:SUBKEY=VALUE)')
        node = options
        for depth, key in enumerate(keys[:-1]):
            if not isinstance(node, dict) or key not in node:
                raise OptionsError(f'--force_yml entry "{entry}": {path} has no option {":".join(keys[:depth + 1])}')
            node = node[key]
        if not isinstance(node, dict):
            raise OptionsError(f'--force_yml entry "{entry}": {":".join(keys[:-1])} is not a mapping')
        node[keys[-1]] = override_value(text)


class _PreparedOptions:
    """Stands in for a PyYAML loader class: "loads" options prepared beforehand, whatever the stream."""

    def __init__(self, options: dict) -> None:
        self.options = options

    def __call__(self, stream: object) -> '_PreparedOptions':
        return self

    def get_single_data(self):
        return self.options

    def dispose(self):
        pass


def _basicsr_arguments(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """BasicSR's command-line options, declared as its ``parse_options`` declares them.

    Every option is declared (abbreviations such as ``--force`` then resolve here as they would there);
    the words no option takes are returned apart.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt', required=True)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    parser.add_argument('--auto_resume', action='store_true')
    parser.add_argument('--debug', action='store_true')
    parser.add_argument('--local_rank', type=int, default=0)
    parser.add_argument('--force_yml', nargs='+', default=None)
    return parser.parse_known_args(argv)


def basicsr_argv(args: argparse.Namespace) -> list[str]:
    """The argument list BasicSR's ``parse_options`` gets for ``args``: its options, no ``--force_yml``."""
    argv = ['-opt', args.opt, '--launcher', args.launcher, '--local_rank', str(args.local_rank)]
    if args.auto_resume:
        argv.append('--auto_resume')
    if args.debug:
        argv.append('--debug')
    return argv


def read_run_options(args: argparse.Namespace, is_train: bool) -> dict:
    """The options of one BasicSR run, read once: the file (:func:`load_pipeline_options`), ``--force_yml``
    and ``--debug`` (the name gets BasicSR's ``debug_`` prefix).

    Args:
        args (argparse.Namespace): BasicSR's arguments (``opt``, ``force_yml``, ``debug``).
        is_train (bool): Training (True) or testing options.

    Raises:
        OptionsError: As :func:`load_pipeline_options` and :func:`apply_overrides`.
    """
    options = load_pipeline_options(args.opt, TRAIN_SECTIONS if is_train else TEST_SECTIONS)
    apply_overrides(options, args.force_yml, args.opt)
    if args.debug and not str(options['name']).startswith('debug'):
        options['name'] = f'debug_{options["name"]}'  # as BasicSR's parse_options
    return options


# The run's options and arguments prepared by a command (prepared_options), and what BasicSR's
# parse_options gets while it runs (parse_options): the options and its argument list.
_prepared = {}
_parsing = {}


@contextlib.contextmanager
def prepared_options(options: dict, args: argparse.Namespace) -> Iterator[None]:
    """Within this block BasicSR's (patched) ``parse_options`` takes ``options`` and ``args`` as the run's."""
    _prepared.update(options=options, arguments=args)
    try:
        yield
    finally:
        _prepared.clear()


def safe_ordered_yaml(original: Callable) -> Callable:
    """Patch of ``basicsr.utils.options.ordered_yaml``: its loader is :class:`OptionsLoader`, or, while
    :func:`parse_options` runs, one that gives the options read already."""

    @functools.wraps(original)
    def ordered_yaml():
        loader = _PreparedOptions(_parsing['options']) if _parsing else OptionsLoader
        return loader, original()[1]

    return ordered_yaml


def argv_for_basicsr_parser(argv: list[str]) -> list[str]:
    """Patch of ``sys.argv`` while BasicSR's ``parse_options`` runs: the run's arguments, no ``--force_yml``."""
    return [argv[0], *_parsing['argv']]


def safe_parse_options(original: Callable) -> Callable:
    """Patch of BasicSR's ``parse_options``: :func:`parse_options` with ``original`` doing the rest."""

    @functools.wraps(original)
    def parse_options_safely(root_path: str, is_train: bool = True) -> tuple:
        return parse_options(root_path, is_train, basicsr_parse_options=original)

    return parse_options_safely


def parse_options(root_path: str, is_train: bool = True,
                  basicsr_parse_options: Callable | None = None) -> tuple[dict, argparse.Namespace]:
    """BasicSR's ``parse_options`` on options read once and safely, ``--force_yml`` applied safely.

    The options are those of :func:`prepared_options` or, outside it, read from ``sys.argv``'s
    arguments by :func:`read_run_options`. BasicSR's own function then does the rest (distributed
    setup, seed, paths) on those options: its loader gives them instead of parsing the file and its
    ``sys.argv`` has no ``--force_yml`` entries (so it ``exec``s none). The returned arguments keep
    ``force_yml``.

    Args:
        root_path (str): Where ``experiments/`` and ``results/`` go.
        is_train (bool): Training (True) or testing options.
        basicsr_parse_options (callable): BasicSR's original function. Default: ``basicsr.utils.options``'s.
    """
    from basicsr.utils import options as basicsr_options

    original = basicsr_parse_options or inspect.unwrap(basicsr_options.parse_options)
    if _prepared:
        options, arguments, unknown = _prepared['options'], _prepared['arguments'], []
    else:
        arguments, unknown = _basicsr_arguments(sys.argv[1:])
        options = read_run_options(arguments, is_train)
        if not is_train:
            try:  # as the basicsr command does (it prints notices)
                drop_missing_test_sets(options)
            except OptionsError:
                pass  # no set exists: BasicSR reports the first missing folder
    _parsing.update(options=options, argv=[*basicsr_argv(arguments), *unknown])
    try:  # the loader of the options read above, and an argument list without --force_yml
        with patched(*patches_named('safe-ordered-yaml'), *patches_for('within safe-parse-options')):
            opt, args = original(root_path, is_train=is_train)
    finally:
        _parsing.clear()
    args.force_yml = arguments.force_yml
    return opt, args
