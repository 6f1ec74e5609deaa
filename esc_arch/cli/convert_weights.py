"""``basicsr convert-weights IN OUT``: rewrite weights as a BasicSR ``.pth`` or a ``.safetensors`` file.

Typical uses: the authors' arbitrary-scale checkpoint (``{'model': {'name', 'args', 'sd'}}``) to
a BasicSR ``params_ema`` file for ``pretrain_network_g``; ``.pth`` to ``.safetensors`` and back.
The weights are checked before anything is written (see :mod:`esc_arch.conversion`).
"""
import argparse

from esc_arch.defaults import SAFETENSORS_SUFFIX, STATE_DICT_KEYS, WEIGHT_DTYPES


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``convert-weights`` options to an argparse parser."""
    parser.add_argument('input', help='weights to read: BasicSR .pth, the authors\' checkpoint, a bare state dict or '
                        '.safetensors')
    parser.add_argument('output', help=f'file to write; its extension (.pth, {SAFETENSORS_SUFFIX}) picks the format')
    parser.add_argument('--param-key', choices=STATE_DICT_KEYS, default='params_ema',
                        help='entry read from a BasicSR checkpoint and written to a .pth (default: params_ema)')
    parser.add_argument('--model', help='network the weights must fit: a preset name or a YAML with network_g '
                        '(default: inferred from the weights)')
    parser.add_argument('--dtype', choices=WEIGHT_DTYPES, help='store the weights as this type (default: as they are; '
                        'float64 weights need --dtype float32)')
    parser.add_argument('--overwrite', action='store_true', help='replace OUTPUT if it exists (never the input)')
    return parser


def run(args: argparse.Namespace) -> None:
    """Convert and say what was written."""
    from esc_arch.conversion import convert_weights

    state_dict = convert_weights(args.input, args.output, args.param_key, overwrite=args.overwrite, model=args.model,
                                 dtype=args.dtype)
    dtypes = sorted({str(value.dtype).removeprefix('torch.') for value in state_dict.values()})
    print(f'wrote {args.output} ({len(state_dict)} tensors, {sum(v.numel() for v in state_dict.values()):,} '
          f'values, {"/".join(dtypes)}, param key {args.param_key})')
