"""``basicsr train``: BasicSR's ``train_pipeline`` with the ESC networks registered."""
from esc_arch.cli import basicsr_pipeline
from esc_arch.cli.basicsr_pipeline import add_arguments  # noqa: F401  (BasicSR's own options)


def run(args):
    from basicsr.train import train_pipeline

    basicsr_pipeline.run(train_pipeline, args, basicsr_pipeline.TRAIN_SECTIONS, 'train')
