"""The training keys of the ESC authors' ``ESRModel`` (their ``esc/models/esr_model.py``), read as they read them.

* ``use_amp: true`` (top level): fp16 ``autocast`` around the forward pass and the losses, with a
  gradient scaler (``scale(loss).backward()``, ``step``, ``update``); gradients are never clipped in
  this branch. On CUDA this is their code path. On a CPU the same is run with torch's CPU gradient
  scaler (``torch.amp.GradScaler('cpu')``), said in the log at start: fp16 arithmetic is slow on CPUs
  without native fp16 support, but the numbers follow the same recipe.
* ``train: gradient_clip: C``: ``clip_grad_norm_`` of the generator's gradients to a total L2 norm of
  ``C``, and ``C / 2`` once the iteration passes :data:`HALVE_CLIP_AFTER_ITER`; only without
  ``use_amp``. ``0`` or null: no clipping.

Only their ``ESRModel`` reads these keys (their real-world models are BasicSR's Real-ESRNet/ESRGAN,
which do not): :class:`~esc_arch.models.ESCModel` and ``ESRModel`` (and ``ArbitraryScaleModel``, which
extends them) apply them; the real-world models log that they ignore them. The keys' places and
values are declared in :mod:`esc_arch.options.model_options`; a key in another section is refused there.
The project's own ``train.mixed_precision`` and ``train.clip_grad_norm`` keep their meaning; each
conflicts with its authors' counterpart (two precisions, two clipping rules), which is refused.
"""
from dataclasses import dataclass, field

from esc_arch.errors import OptionsError
from esc_arch.options.model_options import option_value

__all__ = ['AUTHORS_AMP_PRECISION', 'HALVE_CLIP_AFTER_ITER', 'AuthorsKeys']

AUTHORS_AMP_PRECISION = 'fp16'
HALVE_CLIP_AFTER_ITER = 50000


@dataclass(frozen=True)
class AuthorsKeys:
    """The authors' ``use_amp`` and ``gradient_clip`` as a model applies them.

    Attributes:
        use_amp (bool): fp16 autocast of forward and losses with a gradient scaler.
        gradient_clip (float | None): The clipping bound before iteration 50001 (None: no clipping).
        notes (list[str]): Lines for the log at start.
    """
    use_amp: bool = False
    gradient_clip: float | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, opt: dict, model: str, applies: bool) -> 'AuthorsKeys':
        """Read the keys from ``opt`` (already checked) for ``model``, which applies them when ``applies``.

        Raises:
            OptionsError: An authors' key set together with the project's key for the same thing.
        """
        use_amp = bool(option_value(opt, '', 'use_amp'))
        train = opt.get('train') if isinstance(opt.get('train'), dict) else None
        clip = option_value(opt, 'train', 'gradient_clip') if train is not None else None
        if not applies:
            set_keys = [name for name, value in (('use_amp', use_amp), ('train:gradient_clip', clip)) if value]
            return cls(notes=[f'{" and ".join(set_keys)}: ignored by {model}, as the authors\' real-world models '
                              'ignore them (use train:mixed_precision / train:clip_grad_norm)'] if set_keys else [])
        if train is None:  # testing: nothing to train in mixed precision or to clip
            return cls()
        _refuse_both(use_amp, 'use_amp', train, 'mixed_precision', 'two training precisions')
        _refuse_both(clip, 'train:gradient_clip', train, 'clip_grad_norm', 'two gradient clipping rules')
        notes = []
        if clip and use_amp:
            notes.append(f"Authors' option train:gradient_clip {clip}: not applied under use_amp, as in their ESRModel")
            clip = None
        elif clip:
            notes.append(f"Authors' option train:gradient_clip: total gradient norm clipped to {clip}, to {clip / 2} "
                         f'after iteration {HALVE_CLIP_AFTER_ITER}')
        return cls(use_amp, clip or None, notes)

    def clip_bound(self, current_iter: int) -> float | None:
        """The gradient-norm bound at ``current_iter``: halved after :data:`HALVE_CLIP_AFTER_ITER` iterations."""
        if self.gradient_clip is None:
            return None
        return self.gradient_clip / 2 if current_iter > HALVE_CLIP_AFTER_ITER else self.gradient_clip


def _refuse_both(value: object, key: str, train: dict, own_key: str, what: str) -> None:
    if value and train.get(own_key) is not None:
        raise OptionsError(f'{key} (the authors\' key) and train:{own_key} are both set ({what}); remove one of them')
