"""The training keys of the ESC authors' options files, translated to this package's.

The authors' ``ESRModel`` reads two keys that BasicSR does not know (written in ``train:``, or at the
top level; both are accepted):

* ``use_amp: true`` trains under autocast. Their flag names no precision; it is mapped to
  ``train.mixed_precision: bf16``: bf16 keeps float32's exponent range, so it needs no loss scaling
  (their model has no gradient scaler), and it is the precision FlexAttention, their attention
  backend, runs in on current GPUs.
* ``gradient_clip: VALUE`` clips the gradient norm to ``VALUE``: ``train.clip_grad_norm``.

``network_g: attn_type: Flex`` needs nothing here (attention backends are case-insensitive); on CPU,
:class:`~esc_arch.models.ESCModel` runs it as ``sdpa``.
"""
from numbers import Real

from esc_arch.errors import OptionsError

__all__ = ['AUTHORS_AMP_PRECISION', 'translate_authors_keys']

AUTHORS_AMP_PRECISION = 'bf16'


def translate_authors_keys(opt: dict) -> list[str]:
    """Rewrite the authors' ``use_amp`` / ``gradient_clip`` into ``train.mixed_precision`` / ``train.clip_grad_norm``.

    ``opt`` is changed in place. A value that cannot be translated, or that contradicts this package's
    own key, raises :class:`OptionsError` naming both.

    Args:
        opt (dict): BasicSR options, as parsed.

    Returns:
        list[str]: One line per translated key, for the log.
    """
    train = opt.get('train')
    notes = []
    for prefix, section in (('', opt), ('train:', train)):
        if not isinstance(section, dict):
            continue
        if section.get('use_amp') is not None:
            notes += _translate_amp(f'{prefix}use_amp', section['use_amp'], train)
        if section.get('gradient_clip') is not None:
            notes += _translate_clip(f'{prefix}gradient_clip', section['gradient_clip'], train)
    return notes


def _translate_amp(key, value, train):
    if not isinstance(value, bool):
        raise OptionsError(f'{key} must be true or false (the authors\' AMP flag); got {value!r}')
    if not value or train is None:  # testing runs in the network's precision
        return []
    current = train.get('mixed_precision')
    if current not in (None, AUTHORS_AMP_PRECISION):
        raise OptionsError(f'{key}: true means train:mixed_precision={AUTHORS_AMP_PRECISION}, but '
                           f'train:mixed_precision is {current!r}; remove one of them')
    train['mixed_precision'] = AUTHORS_AMP_PRECISION
    return [f'{key}: true -> train:mixed_precision={AUTHORS_AMP_PRECISION}']


def _translate_clip(key, value, train):
    if isinstance(value, bool) or not isinstance(value, Real) or value < 0:
        raise OptionsError(f'{key} must be a gradient-norm bound (a positive number, or 0/null for none); '
                           f'got {value!r}')
    if not value or train is None:
        return []
    current = train.get('clip_grad_norm')
    if current not in (None, value):
        raise OptionsError(f'{key}={value} and train:clip_grad_norm={current} disagree; remove one of them')
    train['clip_grad_norm'] = value
    return [f'{key}: {value} -> train:clip_grad_norm={value}']
