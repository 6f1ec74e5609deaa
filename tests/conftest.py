"""Shared test helpers: where the development data (``../shared``) is, when present."""
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / 'shared'
FIXTURES_DIR = SHARED_DIR / 'fixtures'
DATASETS_DIR = SHARED_DIR / 'datasets'


def _require(path):
    if not path.is_dir():
        pytest.skip(f'{path} is absent (development data lives in ../shared beside the checkout)')
    return path


@pytest.fixture
def fixtures_dir():
    """``../shared/fixtures``; the test is skipped when it is absent."""
    return _require(FIXTURES_DIR)


@pytest.fixture
def datasets_dir():
    """``../shared/datasets``; the test is skipped when it is absent."""
    return _require(DATASETS_DIR)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
