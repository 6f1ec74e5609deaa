"""The models' options are declared once (esc_arch.options.model_options); the checks and key lists read it."""
import pytest
from helpers import model_options  # noqa: E402

from esc_arch.errors import OptionsError
from esc_arch.options.model_options import MODEL_OPTIONS, option_value
from esc_arch.options.values import KNOWN_KEYS, check_model_options, check_values

WRONG = {'switch': 'maybe', 'number': 'abc', 'integer': 1.5, 'choice': 'fp8', 'compile': 'yes'}


def test_every_declared_key_is_known_in_its_section():
    for option in MODEL_OPTIONS:
        if option.section:
            assert option.key in KNOWN_KEYS[option.section], option.where
    with pytest.raises(OptionsError, match='val:tile_sise is not an option BasicSR or ESC reads; did you mean '
                                           '"tile_size"'):
        check_values({'name': 'x', 'num_gpu': 0, 'val': {'tile_sise': 8}}, is_train=False)


@pytest.mark.parametrize('option', [option for option in MODEL_OPTIONS if option.kind in WRONG],
                         ids=lambda option: option.where)
def test_each_declared_option_is_checked_from_its_declaration(tmp_path, option):
    opt = model_options(tmp_path)
    values = opt.setdefault(option.section, {}) if option.section else opt
    if option.default is not None:
        values[option.key] = option.default
        check_model_options(opt)  # the declared default passes its own check
    values[option.key] = WRONG[option.kind]
    with pytest.raises(OptionsError, match=f'^{option.where}'):
        check_model_options(opt)
    assert option_value({}, option.section, option.key) == option.default
