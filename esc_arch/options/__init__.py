"""BasicSR options: read safely (no code runs), then checked so that a mistake is one line before anything is built."""
from .checks import check_options, resumes_training
from .loading import apply_overrides, load_options, parse_options
from .test_sets import drop_missing_test_sets

__all__ = ['apply_overrides', 'check_options', 'drop_missing_test_sets', 'load_options', 'parse_options',
           'resumes_training']
