"""A run's options are read once: the ``basicsr`` command reads and checks them, BasicSR's (patched)
``parse_options`` takes them instead of reading the file and applying ``--force_yml`` again."""
import pytest
from helpers import make_pairs, train_options, write_yaml

from esc_arch.cli import main
from esc_arch.options import loading


@pytest.fixture
def counted_reads(monkeypatch):
    reads = []
    read = loading.load_options

    def load_options(path):
        reads.append(path)
        return read(path)

    monkeypatch.setattr(loading, 'load_options', load_options)
    return reads


def test_basicsr_test_reads_its_options_file_once(tmp_path, monkeypatch, counted_reads, fresh_basicsr_logger):
    monkeypatch.chdir(tmp_path)
    data = make_pairs(tmp_path / 'set')
    options = write_yaml(tmp_path / 'test.yml', {
        'name': 'from_file', 'model_type': 'SRModel', 'scale': 4, 'num_gpu': 0,
        'datasets': {'test_1': {'name': 'set', 'type': 'PairedImageDataset', 'dataroot_gt': str(data / 'HR'),
                                'dataroot_lq': str(data / 'LR'), 'filename_tmpl': '{}x4',
                                'io_backend': {'type': 'disk'}}},
        'network_g': {'type': 'MSRResNet', 'num_feat': 8, 'num_block': 1, 'upscale': 4},
        'path': {'pretrain_network_g': None}, 'val': {'save_img': False, 'metrics': {}}})
    assert main(['test', '-opt', options, '--force_yml', 'name=from_override']) == 0
    assert counted_reads == [options]
    assert (tmp_path / 'results' / 'from_override').is_dir() and not (tmp_path / 'results' / 'from_file').exists()


def test_basicsr_parse_options_outside_the_command_reads_the_file_once(tmp_path, monkeypatch, counted_reads):
    """BasicSR's own train.py with ``apply_all()``: the patched parse_options reads the file itself, once."""
    import basicsr.train

    path = write_yaml(tmp_path / 'train.yml', train_options(make_pairs(tmp_path / 'set'), total_iter=2))
    monkeypatch.setattr('sys.argv', ['train.py', '-opt', path, '--force_yml', 'train:ema_decay=0.25'])
    opt, args = basicsr.train.parse_options(str(tmp_path), is_train=True)
    assert counted_reads == [path]
    assert opt['train']['ema_decay'] == 0.25 and args.force_yml == ['train:ema_decay=0.25']
