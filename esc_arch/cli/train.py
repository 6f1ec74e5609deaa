"""``basicsr train``: BasicSR's ``train_pipeline`` with the ESC networks registered."""
import argparse

from esc_arch.cli import basicsr_pipeline
from esc_arch.cli.basicsr_pipeline import add_arguments  # noqa: F401  (BasicSR's own options)


def run(args: argparse.Namespace) -> None:
    from esc_arch.runs.stop_signals import save_on_stop_signals

    from basicsr.train import train_pipeline

    with save_on_stop_signals():  # SIGINT/SIGTERM: save the current iteration's state, then stop
        basicsr_pipeline.run(train_pipeline, args, 'train')
