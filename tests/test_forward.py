"""The one test-time forward (esc_arch.inference.forward): the same output from the model, the command and the API."""
import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import SCALE, TINY, TINY_LTE, model_options, perturbed  # noqa: E402

from esc_arch import ESC
from esc_arch.archs.esc_lte import ESCLTE
from esc_arch.inference import forward_image, upscale_image
from esc_arch.inference.forward import MIN_TILE_PAD, tiling_for
from esc_arch.options.model_options import declared

from basicsr.models import build_model  # noqa: E402  (after esc_arch, which makes basicsr importable)

WINDOW = TINY['window_size']


@pytest.fixture(scope='module')
def network():
    torch.manual_seed(0)
    return perturbed(ESC(upscaling_factor=SCALE, **TINY)).eval()


def test_default_is_the_authors_window_padding(network):
    lr = torch.rand(1, 3, 11, 13)
    with torch.no_grad():
        padded = network(F.pad(lr, (0, -13 % WINDOW, 0, -11 % WINDOW), mode='reflect'))[..., :11 * SCALE, :13 * SCALE]
        plain = network(lr)
    torch.testing.assert_close(forward_image(network, lr), padded)
    torch.testing.assert_close(forward_image(network, lr, pad_to_window=False), plain)
    assert not torch.allclose(padded, plain, atol=1e-4)


def test_tiles_and_context_are_whole_windows_with_one_default(network):
    assert tiling_for(network) == (0, max(2 * WINDOW, MIN_TILE_PAD))
    assert tiling_for(network, WINDOW + 1, 3) == (2 * WINDOW, WINDOW)
    assert tiling_for(torch.nn.Conv2d(3, 3, 1), 5) == (5, MIN_TILE_PAD)  # no window: nothing to round to
    with pytest.raises(ValueError, match='non-negative'):
        tiling_for(network, -1)


def test_tiled_forward_is_close_to_one_pass_and_reports_progress(network):
    lr = torch.rand(1, 3, 19, 21)
    whole = forward_image(network, lr)
    calls = []
    tiled = forward_image(network, lr, tile=WINDOW + 1, progress=lambda done, total: calls.append((done, total)))
    assert (tiled - whole).abs().max() < 1e-3
    # the padded 24 x 24 image in 16-pixel tiles: 2 x 2 tiles
    assert calls == [(done, 4) for done in range(1, 5)]
    calls.clear()
    forward_image(network, lr[..., :12, :12], tile=8, self_ensemble=True,
                  progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (32, 32) and [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_the_model_the_command_and_the_api_give_the_same_output(network, tmp_path):
    image = np.random.default_rng(0).random((9, 10, 3), dtype=np.float32)  # BGR, float: no 8-bit rounding
    lr = torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1)[None]
    for val in (dict(), dict(tile_size=8, self_ensemble=True)):
        model = build_model(model_options(tmp_path, is_train=False, val=val))
        model.net_g.load_state_dict(network.state_dict())
        model.feed_data({'lq': lr})
        model.test()
        options = dict(tile=val.get('tile_size', 0), self_ensemble=val.get('self_ensemble', False))
        expected = forward_image(network, lr, **options)
        torch.testing.assert_close(model.output, expected)
        command = upscale_image(network, image, SCALE, options['tile'], self_ensemble=options['self_ensemble'])
        np.testing.assert_allclose(command[..., ::-1], expected.clamp(0, 1)[0].permute(1, 2, 0).numpy(), atol=1e-6)


def test_the_declared_test_options_have_the_forward_defaults():
    parameters = inspect.signature(forward_image).parameters
    for argument, key in (('tile', 'tile_size'), ('tile_pad', 'tile_pad'), ('pad_to_window', 'pad_to_window'),
                          ('self_ensemble', 'self_ensemble'), ('query_chunk', 'query_chunk'),
                          ('clip_cell', 'clip_cell')):
        assert parameters[argument].default == declared('val', key).default, key


def test_arbitrary_scale_views_keep_a_non_square_output_size():
    torch.manual_seed(0)
    lte = perturbed(ESCLTE(**TINY_LTE)).eval()
    lr = torch.rand(1, 3, 6, 6)
    out = forward_image(lte, lr, out_size=(13, 17), self_ensemble=True)  # transposed views query (17, 13)
    assert out.shape == (1, 3, 13, 17)
    single = forward_image(lte, lr, scale=2.5)
    assert single.shape == (1, 3, 15, 15) and 0 <= single.min() and single.max() <= 1
    # never window-padded (the authors evaluate the LTE on the LR as it is)
    torch.testing.assert_close(forward_image(lte, lr, scale=2.5, pad_to_window=False), single)
    with pytest.raises(ValueError, match='needs a scale or an output size'):
        forward_image(lte, lr)
