"""The options ESC's model classes read on top of BasicSR's: each declared once, here.

:data:`MODEL_OPTIONS` is the declaration: where the key goes, its kind, default and meaning. The
checks (:func:`esc_arch.options.values.check_model_options`, run by ``basicsr train``/``test`` before
anything is built and by the models themselves), the models (:func:`option_value` for defaults), the
known-key list that catches misspellings and the models' docstrings (:func:`options_reference`) all
read it, so an option is added or changed in this one place.
"""
from dataclasses import dataclass

__all__ = ['MODEL_OPTIONS', 'ModelOption', 'declared', 'option_value', 'options_reference']

KINDS = ('switch', 'number', 'integer', 'choice', 'compile', 'mapping')


@dataclass(frozen=True)
class ModelOption:
    """One YAML key a model reads.

    Attributes:
        section (str): ``train``, ``val`` or ``''`` (the top level of the options).
        key (str): The key inside ``section``.
        kind (str): How the value is checked: ``switch`` (true/false), ``number``, ``integer``,
            ``choice`` (one of ``choices``), ``compile`` (true/false or a dict of ``torch.compile``
            arguments) or ``mapping`` (checked by its own function in :mod:`esc_arch.options.values`).
        default (object): The value when the key is absent or null.
        help (str): What it does, for the docs.
        choices (tuple): The values of a ``choice``.
        above (float | None): A ``number`` must be greater than this.
        minimum (float | None): A ``number``/``integer`` must be at least this.
        models (tuple[str, ...]): The model classes that read it (subclasses included).
        authors (bool): A key of the ESC authors' ``ESRModel``, read only where they read it.
    """
    section: str
    key: str
    kind: str
    default: object
    help: str
    choices: tuple = ()
    above: float | None = None
    minimum: float | None = None
    models: tuple[str, ...] = ('ESCModel', )
    authors: bool = False

    @property
    def where(self) -> str:
        """``section:key`` as in error messages (the key alone at the top level)."""
        return f'{self.section}:{self.key}' if self.section else self.key

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f'{self.where}: unknown kind {self.kind!r}')


MODEL_OPTIONS = (
    ModelOption('train', 'optim_g', 'mapping', None,
                'type: any torch.optim class, e.g. AdamW (BasicSR 1.4.2 knows only Adam); its other keys are the '
                "class's arguments. On resume, an lr that differs from the resumed state's initial rate wins (the "
                'schedule keeps its position; logged).'),
    ModelOption('train', 'mixed_precision', 'choice', None,
                'bf16 or fp16 autocast of the network in training; fp16 uses a gradient scaler (unscaled before '
                'clip_grad_norm, saved in the training state).', choices=('bf16', 'fp16')),
    ModelOption('train', 'clip_grad_norm', 'number', None,
                'Clip the total gradient L2 norm to this value at every step; the norm is logged as grad_norm.',
                above=0),
    ModelOption('train', 'gradient_clip', 'number', None,
                "The authors' key: clip the total gradient L2 norm to this value, and to half of it once the "
                'iteration passes 50000; not applied under use_amp (as in their ESRModel); 0 means off. Read by '
                'ESCModel/ESRModel only (their real-world models do not read it).', minimum=0, authors=True),
    ModelOption('', 'use_amp', 'switch', False,
                "The authors' key: fp16 autocast of the forward pass and losses with a gradient scaler, no "
                'gradient clipping (their ESRModel). On CUDA as theirs; on a CPU the same fp16 autocast with '
                "torch's CPU gradient scaler (slow on CPUs without fp16 arithmetic; stated in the log). Read by "
                'ESCModel/ESRModel only.', authors=True),
    ModelOption('train', 'compile', 'compile', False,
                'true or a dict of torch.compile arguments: compile the trained network in place (checkpoint keys '
                'unchanged).'),
    ModelOption('train', 'max_consecutive_nonfinite', 'integer', 10,
                'A step whose loss (or clipped gradient norm) is NaN/inf is skipped, weights, optimizer and EMA '
                'unchanged; after this many in a row training stops with NonFiniteLossError naming the newest '
                'training state saved before the first skipped step. All ranks skip together.', minimum=1),
    ModelOption('val', 'pad_to_window', 'switch', True,
                "The authors' test protocol: reflect-pad the LR at the bottom and right to whole windows, run, crop "
                '(networks with a window_size; false feeds images as they are). See esc_arch.inference.forward.'),
    ModelOption('val', 'tile_size', 'integer', 0,
                'Test in tiles of this many LR pixels (rounded up to whole windows; the padded image is tiled); '
                '0: the whole image.', minimum=0),
    ModelOption('val', 'tile_pad', 'integer', None,
                'Context around each tile in LR pixels (rounded up to whole windows); default: two windows, at '
                'least 16 pixels.', minimum=0),
    ModelOption('val', 'self_ensemble', 'switch', False,
                'Average over the 8 flips/transposes of the input (x8 ensemble); each view is padded.'),
    ModelOption('val', 'compile', 'compile', False,
                'true or a dict of torch.compile arguments: basicsr test runs the network compiled (eager, with a '
                'notice, where compiling is unavailable).'),
    ModelOption('val', 'pbar', 'switch', None,
                "Progress of validation/testing; default: on for basicsr test (BasicSR's bar on a terminal, a log "
                'line per image otherwise), off in training.'),
    ModelOption('val', 'query_chunk', 'integer', 30000, 'Output pixels per head pass.', minimum=1,
                models=('ArbitraryScaleModel', )),
    ModelOption('val', 'clip_cell', 'switch', True,
                'Enlarge the cell beyond the training scales, as the authors evaluate.',
                models=('ArbitraryScaleModel', )),
)
"""The declaration; keep it in the order the docs list the options."""

_BY_PLACE = {(option.section, option.key): option for option in MODEL_OPTIONS}


def declared(section: str, key: str) -> ModelOption:
    """The declaration of ``section:key`` (``''`` for the top level); KeyError if there is none."""
    return _BY_PLACE[section, key]


def option_value(opt: dict, section: str, key: str) -> object:
    """The value of a declared option in ``opt``, or its declared default when absent or null."""
    values = opt.get(section) if section else opt
    value = values.get(key) if isinstance(values, dict) else None
    return declared(section, key).default if value is None else value


def options_reference(model: str = 'ESCModel') -> str:
    """The options declared for ``model`` (not those of the models it extends), as reST bullet lines."""
    lines = []
    for option in MODEL_OPTIONS:
        if model in option.models:
            default = '' if option.default is None else f' Default: ``{_as_yaml(option.default)}``.'
            lines.append(f'* ``{option.where}``: {option.help}{default}')
    return '\n'.join(lines)


def _as_yaml(value: object) -> object:
    return str(value).lower() if isinstance(value, bool) else value
