"""The errors ESC raises for problems a user can fix, one class per kind of input.

Every class derives from :class:`ESCError`; its message is one line that names the file, option
or value at fault. The ``basicsr`` command prints such an error as ``basicsr COMMAND: error:
MESSAGE`` and exits with :data:`USER_ERROR_EXIT_CODE`; library users can catch :class:`ESCError`
(or a subclass) the same way. Each class also derives from the built-in exception that code
written before this hierarchy caught (``ValueError``, ``RuntimeError``, ``OSError``).
"""

__all__ = [
    'USER_ERROR_EXIT_CODE', 'ESCError', 'OptionsError', 'DatasetError', 'CheckpointError', 'ImageError',
    'OutputError', 'ExportError', 'TrainingError', 'NonFiniteLossError', 'DownloadError',
    'CompatibilityError'
]

USER_ERROR_EXIT_CODE = 2
"""Exit code of the ``basicsr`` command for an :class:`ESCError` (as argparse uses for bad arguments)."""


class ESCError(Exception):
    """A problem with the user's input or environment, described in one line."""


class OptionsError(ESCError, ValueError):
    """A mistake in a BasicSR options file or its overrides; the message names the option."""


class DatasetError(ESCError, ValueError):
    """A dataset or one of its images cannot be used; the message names the dataset or the files."""


class CheckpointError(ESCError, ValueError):
    """A checkpoint cannot be read safely, holds unusable weights, or does not fit the network."""


class ImageError(ESCError, ValueError):
    """An image file cannot be read or used (corrupt, too large, unsupported pixel type or values)."""


class OutputError(ESCError, OSError):
    """An output cannot be written, or writing it would replace something that must be kept."""


class ExportError(ESCError, RuntimeError):
    """A deployment export failed, or the exported model does not match the PyTorch network."""


class TrainingError(ESCError, RuntimeError):
    """A training run cannot start or cannot go on (nothing to train, experiment in use, ...)."""


class NonFiniteLossError(TrainingError):
    """Training stopped after too many steps in a row with a non-finite loss or gradient."""


class DownloadError(ESCError, OSError):
    """A file could not be downloaded or does not match its recorded checksum."""


class CompatibilityError(ESCError, RuntimeError):
    """An installed library (BasicSR, torch) has a version that ESC's patches were not checked against."""
