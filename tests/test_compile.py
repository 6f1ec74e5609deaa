"""The compiled inference path: same outputs as eager, and eager with a notice where compiling is impossible."""
import pytest
import torch
from helpers import TINY, perturbed

from esc_arch.archs import ESC
from esc_arch.inference import compilation
from esc_arch.inference.compilation import CompiledNetwork, compile_network


def _tiny():
    return perturbed(ESC(**TINY, upscaling_factor=2)).eval()


@pytest.mark.slow
def test_compiled_network_matches_eager():
    network = _tiny()
    lines = []
    compiled, is_compiled = compile_network(network, log=lines.append)
    if not is_compiled:
        pytest.skip(lines[0])
    lr = torch.rand(1, 3, 20, 28)
    with torch.inference_mode():
        expected = network(lr)
        output = compiled(lr)
        again = compiled(lr)
    assert compiled.compiled, lines  # no fallback to eager happened
    torch.testing.assert_close(output, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(again, expected, atol=1e-4, rtol=0)
    assert lines[0].startswith('Compiling the network') and lines[1].startswith('Compiled; the first call')
    assert len(lines) == 2 and compiled.first_call_seconds > 0


def test_unavailable_compiler_keeps_the_network_eager(monkeypatch):
    monkeypatch.setattr(compilation, 'compile_unavailable_reason', lambda device: 'no C++ compiler was found')
    network, lines = _tiny(), []
    assert compile_network(network, log=lines.append) == (network, False)
    assert lines == ['Not compiling: no C++ compiler was found; running eagerly']


def test_failure_at_the_first_call_falls_back_to_eager(monkeypatch):
    def failing_compile(module, **options):
        def call(*args):
            raise RuntimeError('CppCompileError: C++ compile error\nlong compiler output')
        return call

    monkeypatch.setattr(compilation, 'compile_unavailable_reason', lambda device: None)
    monkeypatch.setattr(torch, 'compile', failing_compile)
    network, lines = _tiny(), []
    compiled, is_compiled = compile_network(network, log=lines.append)
    assert is_compiled and isinstance(compiled, CompiledNetwork)
    assert compiled.window_size == network.window_size and compiled.upscaling_factor == 2  # read through
    assert list(compiled.state_dict()) == [f'network.{key}' for key in network.state_dict()]
    lr = torch.rand(1, 3, 12, 12)
    with torch.inference_mode():
        torch.testing.assert_close(compiled(lr), network(lr), atol=0, rtol=0)
        compiled(lr)
    assert not compiled.compiled
    assert lines[1] == ('torch.compile failed (RuntimeError: CppCompileError: C++ compile error); '
                        'running eagerly instead')
    assert len(lines) == 2  # one notice, not one per call


def test_compile_unavailable_reason_names_the_missing_tool(monkeypatch):
    cpp_builder = pytest.importorskip('torch._inductor.cpp_builder')
    from torch.utils import _triton

    def no_compiler():
        raise RuntimeError('Unsupported compiler')

    monkeypatch.setattr(cpp_builder, 'get_cpp_compiler', lambda: 'g++')
    monkeypatch.setattr(_triton, 'has_triton', lambda: True)
    assert compilation.compile_unavailable_reason('cpu') is None
    assert compilation.compile_unavailable_reason('cuda') is None
    monkeypatch.setattr(cpp_builder, 'get_cpp_compiler', no_compiler)
    assert compilation.compile_unavailable_reason('cpu') == (
        'no C++ compiler was found (torch.compile needs one on the CPU; set CXX or install g++)')
    monkeypatch.setattr(_triton, 'has_triton', lambda: False)
    assert compilation.compile_unavailable_reason('cuda') == 'Triton is not installed (torch.compile needs it on CUDA)'


@pytest.mark.parametrize('compile_opt, compiled', [(True, False), (dict(backend='eager'), True)])
def test_train_compile_without_a_compiler_trains_eagerly_with_a_notice(tmp_path, monkeypatch, compile_opt, compiled):
    from helpers import model_options

    from esc_arch.models import esc_model

    from basicsr.models import build_model

    log = _Log()
    monkeypatch.setattr(esc_model, 'get_root_logger', lambda: log)
    monkeypatch.setattr(esc_model, 'compile_unavailable_reason', lambda device: 'no C++ compiler was found')
    model = build_model(model_options(tmp_path, compile=compile_opt))
    assert (model.get_bare_model(model.net_g)._compiled_call_impl is not None) == compiled  # nn.Module.compile's
    notice = 'train.compile: not compiling: no C++ compiler was found; training eagerly'
    assert (notice in log) != compiled  # an explicit backend (eager, aot_eager...) needs no compiler


# ---------------------------------------------------------------- basicsr test: val.compile, progress, printout

class _Log(list):
    def info(self, message):
        self.append(message)

    warning = info


def _test_model(tmp_path, monkeypatch, **val):
    from helpers import model_options

    from esc_arch.models import esc_model

    from basicsr.models import build_model

    log = _Log()
    monkeypatch.setattr(esc_model, 'get_root_logger', lambda: log)
    return build_model(model_options(tmp_path, is_train=False, val=val)), log


def test_val_compile_tests_through_the_compiled_network(tmp_path, monkeypatch):
    calls = []

    def recording_compile(module, **options):  # stands in for torch.compile: no 40 s compilation here
        calls.append(options)
        return module

    monkeypatch.setattr(compilation, 'compile_unavailable_reason', lambda device: None)
    monkeypatch.setattr(torch, 'compile', recording_compile)
    model, log = _test_model(tmp_path, monkeypatch, compile=dict(mode='max-autotune'))
    assert isinstance(model.net_g, CompiledNetwork) and calls == [{'mode': 'max-autotune'}]
    eager, _ = _test_model(tmp_path, monkeypatch)
    eager.net_g.load_state_dict(model.net_g.network.state_dict())
    lq = torch.rand(1, 3, 12, 12)
    for tested in (model, eager):
        tested.feed_data({'lq': lq})
        tested.test()
    torch.testing.assert_close(model.output, eager.output)
    assert log[-1].startswith('Compiled; the first call')
    # The tested network is summarised in one line; its structure is printed when training only.
    assert [line for line in log if line.startswith('Network:')] == ['Network: ESC, with parameters: 19,762']


def test_testing_logs_a_line_per_image_when_not_on_a_terminal(tmp_path, monkeypatch):
    from helpers import make_pairs
    from torch.utils.data import DataLoader

    from basicsr.data.paired_image_dataset import PairedImageDataset

    root = make_pairs(tmp_path / 'data', count=2)
    dataset = PairedImageDataset(dict(name='tiny', phase='val', scale=4, dataroot_gt=str(root / 'HR'),
                                      dataroot_lq=str(root / 'LR'), filename_tmpl='{}x4', io_backend=dict(type='disk')))
    model, log = _test_model(tmp_path, monkeypatch, save_img=False)
    model.nondist_validation(DataLoader(dataset), 0, None, False)  # pytest's stderr is not a terminal
    lines = [line for line in log if line.startswith('Test ')]
    assert [line[:len('Test tiny 1/2: ')] for line in lines] == ['Test tiny 1/2: ', 'Test tiny 2/2: ']
    assert sorted(line.split(': ')[1] for line in lines) == ['img0x4.png', 'img1x4.png']
    assert 'pbar' not in model.opt['val']  # the options are left as they were


def test_progress_choice():
    from esc_arch.runs.progress import progress_choice

    class Terminal:
        def isatty(self):
            return True

    assert progress_choice({}, is_train=False, stream=Terminal()) == (True, False)
    assert progress_choice({}, is_train=True, stream=Terminal()) == (False, False)
    assert progress_choice({'pbar': True}, is_train=True, stream=object()) == (False, True)
    assert progress_choice({'pbar': False}, is_train=False, stream=Terminal()) == (False, False)


def test_upscale_compile_option_reaches_compile_network(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    import cv2
    from helpers import smooth_image

    from esc_arch.cli import main

    monkeypatch.setattr(compilation, 'compile_unavailable_reason', lambda device: 'no C++ compiler was found')
    checkpoint, _, _ = tiny_checkpoint
    cv2.imwrite(str(tmp_path / 'photo.png'), smooth_image(12, 16))
    assert main(['upscale', '-i', str(tmp_path / 'photo.png'), '-o', str(tmp_path / 'out'), '--weights',
                 str(checkpoint), '--compile']) == 0
    assert 'Not compiling: no C++ compiler was found; running eagerly' in capsys.readouterr().err
    assert cv2.imread(str(tmp_path / 'out' / 'photo.png')).shape == (24, 32, 3)
