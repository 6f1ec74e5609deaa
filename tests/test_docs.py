"""README.md and docs/*.md: every command, snippet, link and file they name still works or exists.

Shell blocks are parsed by the ``basicsr`` command's own argument parser and their files, release names,
``--force_yml`` keys and extras checked; Python blocks run (a line ``EXPRESSION  # VALUE`` must give
VALUE); YAML blocks build their network and name registered datasets; command synopses name only
options the command has; links and #anchors resolve; every weights file an options file names is in
the weights guide; the docs sections the generated options cite exist. The docs' tables of declared things
match their declarations: the ESCModel keys (``MODEL_OPTIONS``), the registered names, the patch table
(``PATCHES``) and the layers of docs/ARCHITECTURE.md (the import graph of esc_arch, benchmarks/ and register.py).
"""
import argparse
import ast
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import esc_arch
from esc_arch.cli import COMMANDS, _parser
from esc_arch.zoo import RELEASES, find_release, find_third_party

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / 'README.md'
DOCS = [README, *sorted((REPO_ROOT / 'docs').glob('*.md'))]
PAGES = ['inference', 'weights', 'training', 'data', 'reproducing', 'basicsr-integration', 'troubleshooting',
         'security', 'options']
WEIGHTS_GUIDE = REPO_ROOT / 'docs' / 'weights.md'
ARCHITECTURE = REPO_ROOT / 'docs' / 'ARCHITECTURE.md'
OPTIONS_FILES = sorted(REPO_ROOT.glob('options/**/*.yml'))
# Shell words the docs use around the commands; anything else in a shell block must be checked here.
SHELL_WORDS = {'mkdir', 'ln', 'export', '.', 'cd', 'time'}
BASICSR_PREFIXES = (['basicsr'], ['python', '-m', 'esc_arch.cli'])
# Pages whose Python blocks are templates with placeholder names (a patch of 'basicsr.some.module'), not runnable.
TEMPLATE_PAGES = {'docs/ARCHITECTURE.md'}


def page_id(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def fenced_blocks(path: Path) -> list[tuple[str, str]]:
    """(language, body) of each fenced code block of a Markdown file."""
    return [(match.group(1), match.group(2))
            for match in re.finditer(r'^```(\w*)\n(.*?)^```', path.read_text(), re.MULTILINE | re.DOTALL)]


def without_code_blocks(text: str) -> str:
    return re.sub(r'^```.*?^```', '', text, flags=re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[tuple[str, str]]:
    return [(page_id(path), body) for path in DOCS for lang, body in fenced_blocks(path) if lang == language]


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def headings(path: Path) -> list[str]:
    text = without_code_blocks(path.read_text())
    return [match.group(1).strip() for match in re.finditer(r'^#+ (.+)$', text, re.MULTILINE)]


def brace_expansions(text: str) -> list[str]:
    """``a_{2,3}.yml`` -> ``['a_2.yml', 'a_3.yml']`` (shell brace expansion, nested left to right)."""
    match = re.search(r'\{([^{}]*,[^{}]*)\}', text)
    if not match:
        return [text]
    return [expanded for choice in match.group(1).split(',')
            for expanded in brace_expansions(text[:match.start()] + choice + text[match.end():])]


def shell_commands(body: str) -> list[list[str]]:
    """The commands of a shell block as word lists: continuations joined, comments dropped, ``for`` loops
    run once with their first value, ``&&`` and ``;`` split."""
    commands, variables = [], {'PWD': str(REPO_ROOT)}
    for line in body.replace('\\\n', ' ').splitlines():
        for part in re.split(r'&&|;', re.sub(r'(^|\s)#.*', '', line)):
            words = shlex.split(part)
            if words[:1] == ['do']:
                words = words[1:]
            if not words or words == ['done']:
                continue
            if words[0] == 'for' and words[2] == 'in':
                variables[words[1]] = words[3]
                continue
            commands.append([re.sub(r'\$\{?(\w+)\}?', lambda m: variables.get(m.group(1), m.group(0)), word)
                             for word in words])
    return commands


def basicsr_arguments(words: list[str]) -> list[str] | None:
    """The ``basicsr`` arguments of a command line that runs ``basicsr`` (also through python -m or torchrun)."""
    if words[0] == 'torchrun':
        words = words[words.index('-m') - 1:]
        words[0] = 'python'
    for prefix in BASICSR_PREFIXES:
        if words[:len(prefix)] == prefix:
            return words[len(prefix):]
    return None


def option_exists(options: dict, keys: list[str]) -> bool:
    node = options
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def check_basicsr_command(arguments: list[str], where: str) -> None:
    command = arguments[0]
    assert command in COMMANDS, f'{where}: no command "basicsr {command}"'
    try:
        args = _parser(command).parse_args(arguments)
    except SystemExit:
        pytest.fail(f'{where}: basicsr refuses the arguments {arguments}')
    for word in arguments:
        if word.startswith('options/'):
            assert (REPO_ROOT / word).is_file(), f'{where}: {word} does not exist'
        for weights in re.findall(r'experiments/pretrained_models/([\w.-]+)', word):
            assert weights in WEIGHTS_GUIDE.read_text(), \
                f'{where}: docs/weights.md does not say where {weights} comes from'
    if command == 'download':
        for name in args.names:
            assert find_release(name) or find_third_party(name), \
                f'{where}: {name} is not a file basicsr download offers (basicsr download --list)'
    if command in ('train', 'test'):
        options = yaml.safe_load((REPO_ROOT / args.opt).read_text())
        for entry in args.force_yml or ():
            keys = entry.split('=')[0].split(':')
            assert option_exists(options, keys), f'{where}: {args.opt} has no option {":".join(keys)}'


def extras() -> set[str]:
    setup = (REPO_ROOT / 'setup.py').read_text()
    section = setup[setup.index('extras_require'):setup.index('}', setup.index('extras_require'))]
    return set(re.findall(r"'([\w-]+)':", section))


def check_other_command(words: list[str], where: str) -> None:
    if words[0] == 'make':
        for target in words[1:]:
            assert re.search(rf'^{re.escape(target)}:', (REPO_ROOT / 'Makefile').read_text(), re.MULTILINE), \
                f'{where}: the Makefile has no target {target}'
    elif words[0] == 'pip':
        for word in words:
            for extra in re.findall(r'^\.\[([\w,-]+)\]$', word):
                assert set(extra.split(',')) <= extras(), f'{where}: setup.py has no extra {extra}'
    elif words[0] in ('python', 'python3') and words[1] == '-m':
        in_checkout = (REPO_ROOT / (words[2].replace('.', '/') + '.py')).is_file()
        assert in_checkout or importlib.util.find_spec(words[2]) is not None, f'{where}: no module {words[2]}'
    elif words[0] == 'python':
        assert (REPO_ROOT / words[1]).is_file(), f'{where}: no script {words[1]}'
    else:
        assert words[0] in SHELL_WORDS, f'{where}: tests/test_docs.py does not know how to check {words}'


def test_readme_is_short_and_the_manual_has_its_pages():
    assert len(README.read_text().splitlines()) < 200
    assert {path.stem for path in DOCS} >= set(PAGES)
    for page in PAGES:
        assert f'docs/{page}.md' in README.read_text(), f'README.md does not point to docs/{page}.md'


@pytest.mark.parametrize('page', DOCS, ids=page_id)
def test_links_and_anchors_resolve(page):
    text = without_code_blocks(page.read_text())
    for target in re.findall(r'\]\(([^)\s]+)\)', text):
        if re.match(r'[a-z]+:', target):
            continue
        file_part, _, anchor = target.partition('#')
        linked = (page.parent / file_part).resolve() if file_part else page
        assert linked.exists(), f'{page_id(page)}: link to missing {target}'
        if anchor:
            assert anchor in [slug(heading) for heading in headings(linked)], f'{page_id(page)}: no anchor {target}'


def test_shell_blocks_run_real_commands_with_real_files():
    checked = 0
    for where, body in blocks('bash'):
        for words in shell_commands(body):
            arguments = basicsr_arguments(words)
            if arguments is None:
                check_other_command(words, where)
            else:
                check_basicsr_command(arguments, where)
                checked += 1
    assert checked > 30


@pytest.mark.parametrize('arguments', [['download', 'ESC_x4.pth'], ['upscale', '-i', 'a', '-o', 'b', '--wieghts', 'w'],
                                       ['test', '-opt', 'options/test/test_ESC_x4.yml', '--force_yml', 'path:model=x'],
                                       ['train', '-opt', 'options/train/train_ESC_x5.yml']])
def test_a_wrong_command_would_be_caught(arguments):
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        check_basicsr_command(arguments, 'example')


def test_synopses_name_only_real_options_and_each_command_once():
    synopses = {}
    for where, body in blocks('text'):
        for line in re.sub(r'\n\s+(?=[\[-])', ' ', body).splitlines():
            words = line.split()
            if words[:1] != ['basicsr'] or len(words) < 2 or words[1] not in COMMANDS:
                continue
            synopses.setdefault(words[1], []).append(where)
            subparsers = next(action for action in _parser(words[1])._actions
                              if isinstance(action, argparse._SubParsersAction))
            parser = subparsers.choices[words[1]]
            known = {option for action in parser._actions for option in action.option_strings}
            for option in re.findall(r'(?<![\w-])(--?[a-z][\w-]*)', line):
                assert option in known, f'{where}: basicsr {words[1]} has no option {option}'
    assert set(synopses) == set(COMMANDS)
    assert all(len(pages) == 1 for pages in synopses.values()), synopses


def release_weights_file(name: str, folder: Path) -> None:
    """A file named as a release, holding random weights of its network, for snippets that load one."""
    release = find_release(name)
    network = esc_arch.build_preset(release.preset, scale=release.scale)
    torch.save({'params_ema': network.state_dict()}, folder / name)


@pytest.mark.parametrize('snippet', [snippet for snippet in blocks('python') if snippet[0] not in TEMPLATE_PAGES],
                         ids=lambda snippet: snippet[0])
def test_python_snippets_run_and_give_the_values_they_show(snippet, tmp_path, monkeypatch):
    where, body = snippet
    if 'spandrel' in body and importlib.util.find_spec('spandrel') is None:
        pytest.skip('spandrel is not installed (pip install -e ".[spandrel]")')
    monkeypatch.chdir(tmp_path)
    for name in re.findall(r"'([\w.-]+\.pth)'", body):
        release_weights_file(name, tmp_path)
    namespace = {'image': torch.rand(1, 3, 24, 20)}
    lines = body.splitlines()
    for statement in ast.parse(body).body:
        comment = lines[statement.end_lineno - 1].partition('#')[2].strip()
        try:
            expected = ast.literal_eval(comment)
        except (ValueError, SyntaxError):
            expected = None
        if isinstance(statement, ast.Expr) and comment and expected is not None:
            value = eval(compile(ast.Expression(statement.value), where, 'eval'), namespace)
            assert value == expected, f'{where}: {ast.unparse(statement)} gives {value!r}, the docs say {expected!r}'
        else:
            exec(compile(ast.Module([statement], []), where, 'exec'), namespace)
    if 'image' in body:
        assert namespace['sr'].shape == (1, 3, 24 * 4, 20 * 4)


@pytest.mark.parametrize('snippet', blocks('yaml'), ids=lambda snippet: snippet[0])
def test_yaml_snippets_build_their_network_and_name_registered_datasets(snippet):
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY

    where, body = snippet
    options = yaml.safe_load(body)
    assert 'network_g' in options or 'datasets' in options, where
    if 'network_g' in options:
        network_options = dict(options['network_g'])
        network = ARCH_REGISTRY.get(network_options.pop('type'))(**network_options)
        assert network(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)
    for dataset in options.get('datasets', {}).values():
        assert dataset['type'] in DATASET_REGISTRY, f'{where}: no dataset type {dataset["type"]}'


def test_registered_names_in_the_options_reference_exist():
    from basicsr.utils.registry import DATASET_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

    registries = {'dataset': [DATASET_REGISTRY], 'model': [MODEL_REGISTRY], 'dataset, model':
                  [DATASET_REGISTRY, MODEL_REGISTRY], 'metric': [METRIC_REGISTRY]}
    reference = (REPO_ROOT / 'docs' / 'options.md').read_text()
    rows = re.findall(r'^\| (.*?) \| (dataset|model|dataset, model|metric) \|', reference, re.MULTILINE)
    assert len(rows) >= 8 and {kind for _, kind in rows} >= {'dataset', 'model', 'metric'}
    for names, kind in rows:
        for name in re.findall(r'`(\w+)`', names):
            assert any(name in registry for registry in registries[kind]), \
                f'docs/options.md: {name} is not a registered {kind}'


def markdown_section(path: Path, heading: str) -> str:
    """The text of a Markdown section, from its heading to the next heading of the same or a higher level."""
    text = path.read_text()
    match = re.search(rf'^(#+) {re.escape(heading)}\n', text, re.MULTILINE)
    assert match, f'{page_id(path)} has no section "{heading}"'
    end = re.search(rf'^#{{1,{len(match.group(1))}}} ', text[match.end():], re.MULTILINE)
    return text[match.end():match.end() + end.start() if end else None]


def test_model_options_table_lists_exactly_the_declared_options_with_their_defaults():
    from esc_arch.options.model_options import MODEL_OPTIONS

    section = markdown_section(REPO_ROOT / 'docs' / 'options.md', 'ESCModel keys')
    rows = {key: (models, default) for key, models, default
            in re.findall(r'^\| `([\w:]+)` \| ([\w, ]+) \| (.*?) \|', section, re.MULTILINE)}
    assert set(rows) == {option.where for option in MODEL_OPTIONS}, 'docs/options.md: ESCModel keys'
    for option in MODEL_OPTIONS:
        models, default = rows[option.where]
        assert models == ', '.join(option.models), f'docs/options.md: {option.where} is read by {option.models}'
        if option.default is not None:
            value = str(option.default).lower() if isinstance(option.default, bool) else option.default
            assert default == f'`{value}`', f'docs/options.md: {option.where} defaults to {value}'


def test_patch_table_in_the_architecture_names_every_row_once_where_it_is_applied():
    from esc_arch.compat.table import PATCHES

    section = markdown_section(ARCHITECTURE, 'BasicSR patches (`esc_arch/compat/table.py`)')
    documented = {}
    for when, rows in re.findall(r'^\| `([\w -]+)` \| .*? \| (.*?) \|$', section, re.MULTILINE):
        for name in re.findall(r'`([\w{},.-]+)`', rows):
            for expanded in brace_expansions(name):
                assert expanded not in documented, f'docs/ARCHITECTURE.md lists patch {expanded} twice'
                documented[expanded] = when
    assert documented == {patch.name: patch.when for patch in PATCHES}


def test_weights_guide_says_where_every_weights_file_of_the_options_comes_from():
    guide = WEIGHTS_GUIDE.read_text()
    named = {expanded for quoted in re.findall(r'`([^`\n]+)`', without_code_blocks(guide))
             for expanded in brace_expansions(quoted)}
    for path in OPTIONS_FILES:
        options = yaml.safe_load(path.read_text())
        weights = (options.get('path') or {}).get('pretrain_network_g')
        if weights:
            assert weights in named, f'{path.relative_to(REPO_ROOT)} needs {weights}: not in docs/weights.md'
        if 'perceptual_opt' in (options.get('train') or {}):
            assert 'vgg19-dcbb9e9d.pth' in named, f'{path.relative_to(REPO_ROOT)}: VGG19 weights not in the guide'
    for name in RELEASES:
        assert f'basicsr download {name}' in guide or f'experiments/pretrained_models/{name}' in named, name
    assert 'basicsr download esc_lte.pth' in guide


def test_docs_sections_cited_by_the_options_exist():
    # The generated files hold the script's comments (tests/test_options.py checks that they match it).
    citations = set()
    for path in OPTIONS_FILES:
        comments = ' '.join(line.lstrip('# ') for line in path.read_text().splitlines() if line.startswith('#'))
        citations |= set(re.findall(r'(README|docs/[\w-]+\.md), "([^"]+)"', comments))
    assert len(citations) >= 4
    for page, section in citations:
        path = README if page == 'README' else REPO_ROOT / page
        assert path.is_file() and section in headings(path), f'the options cite {page}, "{section}": no such section'


def run_basicsr(arguments: list[str]) -> subprocess.CompletedProcess:
    """``basicsr ARGUMENTS`` run from the checkout, as a reader would; it must succeed."""
    result = subprocess.run([sys.executable, '-m', 'esc_arch.cli', *arguments], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.mark.slow
def test_documented_profile_output_is_what_the_command_prints():
    page = (REPO_ROOT / 'docs' / 'reproducing.md').read_text()
    documented = re.search(r'```bash\n(basicsr profile [^\n]+)\n```\n\nprints `([^`]+)` and `([^`]+)`', page)
    assert documented, 'docs/reproducing.md no longer shows the profile example and its output'
    command, *printed = documented.groups()
    result = run_basicsr(shlex.split(command)[1:])
    for text in printed:
        assert text in result.stdout, (text, result.stdout)


@pytest.mark.slow
def test_download_list_shows_every_release_the_readme_lists():
    result = run_basicsr(['download', '--list'])
    for name in re.findall(r'^\| `([\w.]+\.pth)` \|', README.read_text(), re.MULTILINE):
        assert name in result.stdout


def python_files() -> list[Path]:
    """The files of the layers ARCHITECTURE.md describes: the package, the benchmarks and register.py."""
    return sorted([*(REPO_ROOT / 'esc_arch').rglob('*.py'), *(REPO_ROOT / 'benchmarks').rglob('*.py'),
                   REPO_ROOT / 'register.py'])


def module_file(name: str) -> Path | None:
    """The file of module ``name`` in the checkout (a package's ``__init__.py``), or None."""
    base = REPO_ROOT / name.replace('.', '/')
    return next((path for path in (base.with_suffix('.py'), base / '__init__.py') if path.is_file()), None)


def imported_files(path: Path) -> set[Path]:
    """The checkout files that ``path`` imports, at the top or inside functions (relative imports resolved)."""
    parts = list(path.relative_to(REPO_ROOT).with_suffix('').parts)
    package = parts if parts[-1] == '__init__' else parts[:-1]
    package = [part for part in package if part != '__init__']
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = '.'.join([*base, *([node.module] if node.module else [])])
            names += [f'{module}.{alias.name}' if module_file(f'{module}.{alias.name}') else module
                      for alias in node.names]
    found = {module_file(name) for name in names if name.split('.')[0] in ('esc_arch', 'benchmarks', 'register')}
    return {file for file in found if file is not None and file != path}


def architecture_layers() -> tuple[list[list[str]], set[tuple[str, str]]]:
    """The "Where" paths of each row of ARCHITECTURE.md's layers table, and its exceptions (importer, imported)."""
    text = ARCHITECTURE.read_text()
    start = text.index('| Layer | Where | What |')
    table = text[start:text.index('\n\n', start)]
    rows = [re.findall(r'`((?:esc_arch|benchmarks)/[\w/]*(?:\.py)?|register\.py)`', line.split(' | ')[1])
            for line in table.splitlines()[2:]]
    exceptions = set(re.findall(r'^- `([\w/.]+\.py)` imports `([\w/.]+\.py)`:', text, re.MULTILINE))
    return rows, exceptions


def test_architecture_layers_match_the_import_graph():
    rows, exceptions = architecture_layers()

    def layer(path: Path) -> int:
        relative = str(path.relative_to(REPO_ROOT))
        matches = [(len(where), index) for index, row in enumerate(rows) for where in row
                   if relative == where or (where.endswith('/') and relative.startswith(where))]
        assert matches, f'docs/ARCHITECTURE.md: {relative} is in no layer'
        return max(matches)[1]

    for row in rows:
        for where in row:
            assert (REPO_ROOT / where).exists(), f'docs/ARCHITECTURE.md names {where}, which does not exist'
    used_exceptions = set()
    for path in python_files():
        for imported in imported_files(path):
            pair = (str(path.relative_to(REPO_ROOT)), str(imported.relative_to(REPO_ROOT)))
            if layer(imported) > layer(path):
                assert pair in exceptions, f'{pair[0]} imports {pair[1]}, a lower layer: not in docs/ARCHITECTURE.md'
                used_exceptions.add(pair)
    assert used_exceptions == exceptions, 'docs/ARCHITECTURE.md lists exceptions that are not (or no longer) imports'


def test_architecture_check_would_catch_an_upward_import():
    rows, _ = architecture_layers()
    errors_row = next(index for index, row in enumerate(rows) if 'esc_arch/errors.py' in row)
    cli_row = next(index for index, row in enumerate(rows) if 'esc_arch/cli/' in row)
    assert errors_row < cli_row
    assert REPO_ROOT / 'esc_arch' / 'errors.py' in imported_files(REPO_ROOT / 'esc_arch' / 'cli' / '__init__.py')


def resolves(dotted: str) -> bool:
    """Whether ``esc_arch.a.b`` names a module, or an attribute of one."""
    parts = dotted.split('.')
    end = max(end for end in range(1, len(parts) + 1) if module_file('.'.join(parts[:end])))
    owner = importlib.import_module('.'.join(parts[:end]))
    for attribute in parts[end:]:
        if not hasattr(owner, attribute):
            return False
        owner = getattr(owner, attribute)
    return True


@pytest.mark.parametrize('page', [*DOCS, REPO_ROOT / 'BENCHMARKS.md'], ids=page_id)
def test_named_python_objects_and_repository_files_exist(page):
    text = without_code_blocks(page.read_text())
    for dotted in re.findall(r'`(esc_arch(?:\.\w+)+)', text):
        assert resolves(dotted), f'{page_id(page)}: {dotted} does not exist'
    for quoted in re.findall(r'`((?:esc_arch|benchmarks|tests|options)/[^`\s:]*)`', text):
        for path in brace_expansions(quoted):
            if not re.search(r'[A-Z]{3,}|<', path):  # placeholders: esc_arch/cli/NAME.py, results/<name>
                assert (REPO_ROOT / path).exists(), f'{page_id(page)}: {path} does not exist'


def test_options_reference_lists_every_options_file():
    section = markdown_section(REPO_ROOT / 'docs' / 'options.md', 'The options files')
    named = {path for quoted in re.findall(r'`(options/[^`]+\.yml)`', section) for path in brace_expansions(quoted)}
    assert named == {str(path.relative_to(REPO_ROOT)) for path in OPTIONS_FILES}
