"""Fixtures shared by the test modules: where the development data (``../shared``) is, a tiny checkpoint.

Imports esc_arch before any test module (so that basicsr is importable) and applies every BasicSR
patch, as the ``basicsr`` command does (``esc_arch.compat.apply_all()``): in-process tests run BasicSR's
code as the command would. Tests of ``import esc_arch`` alone run in a fresh interpreter.
"""
import logging
from pathlib import Path

import pytest
import torch

import esc_arch.compat

esc_arch.compat.apply_all()

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / 'shared'
FIXTURES_DIR = SHARED_DIR / 'fixtures'
DATASETS_DIR = SHARED_DIR / 'datasets'


def _require(path):
    if not path.is_dir():
        pytest.skip(f'{path} is absent (development data lives in ../shared beside the checkout)')
    return path


@pytest.fixture(scope='session')
def fixtures_dir():
    """``../shared/fixtures``; the test is skipped when it is absent."""
    return _require(FIXTURES_DIR)


@pytest.fixture(scope='session')
def datasets_dir():
    """``../shared/datasets``; the test is skipped when it is absent."""
    return _require(DATASETS_DIR)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """A tiny ESC x2 saved as a BasicSR checkpoint, and a YAML describing it.

    Its weights are moved off their initialisation so that every path (the zero-initialised
    dynamic kernels too) acts. Returns ``(checkpoint_path, yaml_path, network)``.
    """
    from helpers import TINY, TINY_ESC, perturbed, write_yaml

    from esc_arch.archs import ESC

    network = perturbed(ESC(**TINY, upscaling_factor=2)).eval()
    checkpoint = tmp_path / 'tiny_ESC_x2.pth'
    torch.save({'params_ema': network.state_dict()}, checkpoint)
    yaml_path = tmp_path / 'tiny_ESC.yml'
    write_yaml(yaml_path, {'network_g': dict(TINY_ESC, upscaling_factor=2)})
    return checkpoint, yaml_path, network


@pytest.fixture
def fresh_basicsr_logger():
    """BasicSR sets up its logger (and its log file) once per process: undo that around a test that runs
    ``basicsr train``/``test`` in-process and reads the log file of its own run."""
    import logging

    from basicsr.utils import logger as basicsr_logger

    def reset():
        logger = logging.getLogger('basicsr')
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        basicsr_logger.initialized_logger.pop('basicsr', None)

    reset()
    yield
    reset()


@pytest.fixture
def basicsr_log():
    """Records of BasicSR's logger (which does not propagate to pytest's)."""
    records, handler = [], logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger('basicsr')
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)
