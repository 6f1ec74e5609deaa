"""``basicsr test``: BasicSR's ``test_pipeline`` with the ESC networks registered."""
import argparse

from esc_arch.cli import basicsr_pipeline
from esc_arch.cli.basicsr_pipeline import add_arguments  # noqa: F401  (BasicSR's own options)


def run(args: argparse.Namespace) -> None:
    from basicsr.test import test_pipeline

    basicsr_pipeline.run(test_pipeline, args, 'test')
