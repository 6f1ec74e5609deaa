"""Options files and ``--force_yml`` overrides that never run code.

basicsr 1.4.2's ``parse_options`` (called by ``basicsr.train.train_pipeline`` and
``basicsr.test.test_pipeline``) reads the options file with PyYAML's full loader, which runs
``!!python/object/apply:...`` tags, ``eval``s override values and ``exec``s override keys. Both
pipelines get :func:`esc_arch.options.loading.parse_options` instead, which hands BasicSR's function
options read and overridden safely; ``basicsr.utils.options.ordered_yaml`` returns the safe loader for
any other reader.
"""
import functools

from .patching import Patch

__all__ = ['PATCHES']


def _safe_ordered_yaml(original):

    @functools.wraps(original)
    def ordered_yaml():
        from esc_arch.options.loading import OptionsLoader

        return OptionsLoader, original()[1]

    return ordered_yaml


def _safe_parse_options(original):
    from esc_arch.options.loading import parse_options

    @functools.wraps(original)
    def parse_options_safely(root_path, is_train=True):
        return parse_options(root_path, is_train, basicsr_parse_options=original)

    return parse_options_safely


_UNSAFE_YAML = ("basicsr reads options files with PyYAML's full loader (runs !!python tags) and eval/execs "
                '--force_yml entries')

PATCHES = (
    Patch(name='safe-ordered-yaml', target='basicsr.utils.options:ordered_yaml', replacement=_safe_ordered_yaml,
          reason=_UNSAFE_YAML, versions='basicsr 1.4.2'),
    *(Patch(name=f'safe-parse-options-{module}', target=f'basicsr.{module}:parse_options',
            replacement=_safe_parse_options, reason=_UNSAFE_YAML, versions='basicsr 1.4.2')
      for module in ('utils.options', 'train', 'test')),
)
