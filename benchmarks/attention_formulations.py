"""Exact formulations of ESC's window attention on CPU, timed against each other.

``python -m benchmarks.attention_formulations [--flex] [--window-size 48 ...]``.

One window-attention core (no projections) on the feature map of a 1280x720 output at x4
(LR 180x320, padded to 192x320: 60 windows of 32x32 = 1024 tokens, 4 heads of dimension 16, a
``[heads, 1024, 1024]`` relative-position bias), fp32. Every formulation computes
``softmax(q k^T / sqrt(d) + bias) v`` and is checked against the naive one (1e-4) before timing.
They take turns call by call and the fastest call of each is reported (on a shared machine load
only adds time), with its rate in multiply-adds per second (the two products, 2 N^2 d per head
and window) beside that of one shared 13x13 ConvAttn convolution on the same map. Prints a
markdown table; writes nothing.
"""
import argparse
import time

import torch
import torch.nn.functional as F


def naive(q, k, v, bias):
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1) + bias.unsqueeze(1)
    return scores.softmax(-1) @ v


def sdpa_heads_first(q, k, v, bias):
    """What ``attn_type='sdpa'`` runs: heads as the batch axis, one head's bias for all its windows."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(1))


def sdpa_windows_first(q, k, v, bias):
    q, k, v = (t.transpose(0, 1) for t in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0)).transpose(0, 1)


def blocked(q, k, v, bias, queries, windows):
    """Query blocks of ``windows`` windows at a time: bias added by ``baddbmm``, softmax, ``bmm`` into the output."""
    heads, count, tokens, dim = q.shape
    out, keys = torch.empty_like(q), k.transpose(-2, -1)
    for head in range(heads):
        for first in range(0, count, windows):
            group = slice(first, first + windows)
            for start in range(0, tokens, queries):
                rows = slice(start, start + queries)
                scores = torch.baddbmm(bias[head, rows].unsqueeze(0), q[head, group, rows], keys[head, group],
                                       alpha=dim ** -0.5)
                torch.bmm(scores.softmax(-1), v[head, group], out=out[head, group, rows])
    return out


def compiled_flex():
    """FlexAttention compiled for CPU, the bias added by a ``score_mod`` (as ``attn_type='flex'``)."""
    from torch.nn.attention.flex_attention import flex_attention
    compiled = torch.compile(flex_attention)

    def flex(q, k, v, bias):
        return compiled(q, k, v, score_mod=lambda score, head, window, query, key: score + bias[head, query, key])
    return flex


def formulations(with_flex):
    found = {'naive': naive, 'sdpa (heads first: attn_type sdpa)': sdpa_heads_first,
             'sdpa (windows first)': sdpa_windows_first}
    for queries, windows in ((1024, 1), (256, 1), (256, 4), (128, 8), (64, 60)):
        found[f'blocked: {queries} queries x {windows} windows'] = (
            lambda q, k, v, bias, queries=queries, windows=windows: blocked(q, k, v, bias, queries, windows))
    if with_flex:
        found['flex (compiled)'] = compiled_flex()
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.attention_formulations',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--threads', type=int, default=2, help='torch threads (default: 2)')
    parser.add_argument('--repeats', type=int, default=3, help='timed calls of each (default: 3)')
    parser.add_argument('--windows', type=int, default=60, help='windows per head (default: 60, ESC x4 HD)')
    parser.add_argument('--window-size', type=int, default=32, help='window side (default: 32; ESC-XL: 48)')
    parser.add_argument('--heads', type=int, default=4)
    parser.add_argument('--head-dim', type=int, default=16)
    parser.add_argument('--flex', action='store_true', help='also FlexAttention compiled for CPU (compiles first)')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokens = args.window_size ** 2
    q, k, v = (torch.randn(args.heads, args.windows, tokens, args.head_dim) for _ in range(3))
    bias = torch.randn(args.heads, tokens, tokens)
    image = torch.randn(1, 16, 180, 320).contiguous(memory_format=torch.channels_last)
    kernel = torch.randn(16, 16, 13, 13)
    calls = {name: (lambda fn=fn: fn(q, k, v, bias)) for name, fn in formulations(args.flex).items()}
    # As WindowAttention._attend_in_windows passes them: views of (window, token, head, dim) memory.
    in_window_order = [t.permute(1, 2, 0, 3).contiguous().permute(2, 0, 1, 3) for t in (q, k, v)]
    calls['sdpa (heads first, q k v strided in window order: the CPU path)'] = (
        lambda: sdpa_heads_first(*in_window_order, bias))
    calls['reference: sdpa without the bias (a bound; not the same function)'] = (
        lambda: F.scaled_dot_product_attention(q, k, v))
    calls['reference: 13x13 convolution, 16 channels, 180x320'] = lambda: F.conv2d(image, kernel, padding=6)
    work = dict.fromkeys(calls, 2 * args.heads * args.windows * tokens * tokens * args.head_dim)
    work['reference: 13x13 convolution, 16 channels, 180x320'] = 16 * 16 * 13 * 13 * 180 * 320
    best = dict.fromkeys(calls, float('inf'))
    with torch.inference_mode():
        expected = naive(q, k, v, bias)
        for name, call in calls.items():  # also the warm-up (and flex's compilation)
            if not name.startswith('reference'):
                error = float((call() - expected).abs().max())
                assert error < 1e-4, f'{name} differs from naive by {error:.1e}'
        for _ in range(args.repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                best[name] = min(best[name], time.perf_counter() - start)
    print(f'{args.heads} heads x {args.windows} windows x {tokens} tokens, head dim {args.head_dim}, fp32, '
          f'{args.threads} threads, fastest of {args.repeats}\n')
    print('| formulation | ms | G multiply-adds/s |\n|---|---|---|')
    for name, seconds in best.items():
        print(f'| {name} | {seconds * 1000:,.1f} | {work[name] / seconds / 1e9:.1f} |')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
