"""Chapters 1-3: the output size, im2col, the convolution forward and backward, and the
depthwise convolution forward and backward. Forward answers are compared with the library's
naive loop oracles, backward answers with central differences (float64, random upstream
gradient)."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ._checking import (TOL, Mismatch, check_grads, expect_array, expect_int, numeric, rng)
from .registry import exercise

__all__ = ["check_conv_output_size", "check_im2col", "check_conv2d_forward",
           "check_conv2d_backward", "check_depthwise_forward", "check_depthwise_backward"]

# ---- the shared convolution cases, simple first ---------------------------------------------
#          label                                    N  C  H  W  Co K  s  p   hint
CONV_CASES = [
    ("3x3, stride 1, no padding, 5x5 input",     2, 3, 5, 5, 4, 3, 1, 0,
     "start from the naive definition: out[n, o, i, j] = sum over c, p, q of "
     "w[o, c, p, q] * x[n, c, i + p, j + q]"),
    ("1x1 kernel, 4x5 input",                    1, 3, 4, 5, 2, 1, 1, 0,
     "with K = 1 there is a single kernel offset; check your loops do not assume K > 1"),
    ("3x3, padding 1, non-square 6x5 input",     2, 2, 6, 5, 3, 3, 1, 1,
     "pad H and W separately (they differ here) and, in a backward pass, crop the padding "
     "off dx at the end"),
    ("3x3, stride 2, padding 1, 7x6 input",      1, 2, 7, 6, 3, 3, 2, 1,
     "fails with stride 2: output pixel (i, j) reads input rows i*stride + p, not i + p "
     "(forward) and sends its gradient back to the same strided places (backward)"),
    ("5x5, stride 2, padding 2, 8x7 input",      2, 2, 8, 7, 3, 5, 2, 2,
     "K = 5 with padding 2: check the output size (H + 2*pad - K) // stride + 1 and that "
     "you use K, not a hard-coded 3"),
]

_GEOMETRY = (F.conv_output_size,)        # the output-size formula of 1.1 may be reused


def conv_case_arrays(case, seed, depthwise=False):
    """x (N, C, H, W), w ((C, 1, K, K) or (Co, C, K, K)), stride, padding of a case."""
    _, N, C, H, W, Co, K, s, p, _ = case
    r = rng(seed)
    x = r.standard_normal((N, C, H, W))
    w = r.standard_normal((C, 1, K, K) if depthwise else (Co, C, K, K))
    return x, w, s, p


def _backward_case(fn, case, seed, forward, depthwise):
    """One case of a convolution backward exercise: fn(dout, x, w, stride, padding)."""
    x, w, s, p = conv_case_arrays(case, seed, depthwise)

    def out():
        return forward(x, w, None, s, p)[0]
    G = rng(seed + 200).standard_normal(out().shape)
    got = fn(G.copy(), x.copy(), w.copy(), s, p)
    return check_grads(got, ("dx", "dw"), numeric(out, [x, w], G))


# ---- chapter 1 ------------------------------------------------------------------------------

@exercise("1.1", "conv_output_size(size, kernel_size, stride, padding) -> int",
          difficulty=1, points=1, tol=0.0)
def check_conv_output_size(fn):
    """Check ``fn(size, kernel_size, stride, padding) -> int`` on a grid of sizes."""
    def grid(strides):
        for size in range(1, 12):
            for k in (1, 2, 3, 5):
                for s in strides:
                    for p in (0, 1, 2):
                        if k > size + 2 * p:
                            continue
                        call = f"size={size}, kernel_size={k}, stride={s}, padding={p}"
                        got = expect_int(call, fn(size, k, s, p),
                                         "an output size is an integer: use // (integer "
                                         "division), not /")
                        want = F.conv_output_size(size, k, s, p)
                        if got != want:
                            raise Mismatch(f"{call}: got {got}, expected {want}", 1.0)
        return 0.0
    return [
        ("stride 1, padding 0..2", "each side of the input gets `padding` zeros; count the "
         "positions a K-wide window can take in the padded input (on paper: size 5, K 3)",
         lambda: grid((1,))),
        ("stride 2 and 3", "with stride s the window starts at 0, s, 2s, ...: count the starts "
         "with integer division (//), not true division, and add 1 for the start at 0",
         lambda: grid((2, 3))),
    ]


@exercise("1.2", "im2col(x, K, stride, padding) -> col (N, C, K, K, Ho, Wo)",
          difficulty=2, points=2, tol=0.0, allow=_GEOMETRY)
def check_im2col(fn):
    """Check ``fn(x, K, stride, padding) -> col`` of shape (N, C, K, K, Ho, Wo) against
    the library's im2col (exactly: it is a copy)."""
    def case(c, seed):
        x, _, s, p = conv_case_arrays(c, seed)
        K = c[6]
        return expect_array("col", fn(x.copy(), K, s, p), F.im2col(x, K, s, p), 0.0,
                            "(N, C, K, K, Ho, Wo)")
    return [(c[0], c[-1] + "; col[n, c, p, q, i, j] = xpad[n, c, i*stride + p, j*stride + q]",
             lambda c=c, k=k: case(c, k)) for k, c in enumerate(CONV_CASES)]


@exercise("1.3", "conv2d_forward(x, w, b, stride, padding) -> out (N, Co, Ho, Wo)",
          difficulty=2, points=2, allow=_GEOMETRY)
def check_conv2d_forward(fn):
    """Check ``fn(x, w, b, stride, padding) -> out`` against the naive loop oracle."""
    def case(c, seed):
        x, w, s, p = conv_case_arrays(c, seed)
        b = rng(seed + 100).standard_normal(w.shape[0])
        want, _ = F.conv2d_forward_naive(x, w, b, s, p)
        return expect_array("out", fn(x.copy(), w.copy(), b.copy(), s, p), want, TOL,
                            "(N, Co, Ho, Wo)")
    return [(c[0], c[-1] + "; and do not forget the bias, one value per output channel",
             lambda c=c, k=k: case(c, k)) for k, c in enumerate(CONV_CASES)]


# ---- chapter 2 ------------------------------------------------------------------------------

@exercise("2.1", "conv2d_backward(dout, x, w, stride, padding) -> (dx, dw)",
          difficulty=3, points=3, allow=_GEOMETRY + (F.im2col,))
def check_conv2d_backward(fn):
    """Check ``fn(dout, x, w, stride, padding) -> (dx, dw)`` against central differences of
    the convolution (float64, random upstream gradient). The answer may build its columns
    with ``F.im2col``; col2im, the part that adds overlapping patches, is the exercise."""
    return [(c[0], c[-1] + "; dx: every input pixel under several windows collects the sum of "
             "their gradients (+=, not =); dw[o, c, p, q] = sum of dout[n, o, i, j] * "
             "xpad[n, c, i*stride + p, j*stride + q]",
             lambda c=c, k=k: _backward_case(fn, c, k, F.conv2d_forward, False))
            for k, c in enumerate(CONV_CASES)]


# ---- chapter 3 ------------------------------------------------------------------------------

@exercise("3.1", "depthwise_forward(x, w, stride, padding) -> out (N, C, Ho, Wo)",
          difficulty=2, points=2, allow=_GEOMETRY)
def check_depthwise_forward(fn):
    """Check ``fn(x, w, stride, padding) -> out`` (w: (C, 1, K, K)) against the naive oracle."""
    def case(c, seed):
        x, w, s, p = conv_case_arrays(c, seed, depthwise=True)
        want, _ = F.depthwise_conv2d_forward_naive(x, w, None, s, p)
        return expect_array("out", fn(x.copy(), w.copy(), s, p), want, TOL, "(N, C, Ho, Wo)")
    return [(c[0], c[-1] + "; depthwise: channel c is convolved with w[c, 0] only, there is no "
             "sum over channels", lambda c=c, k=k: case(c, k)) for k, c in enumerate(CONV_CASES)]


@exercise("3.2", "depthwise_backward(dout, x, w, stride, padding) -> (dx, dw)",
          difficulty=3, points=3, allow=_GEOMETRY)
def check_depthwise_backward(fn):
    """Check ``fn(dout, x, w, stride, padding) -> (dx, dw)`` (w: (C, 1, K, K)) against central
    differences of the depthwise convolution (float64, random upstream gradient)."""
    return [(c[0], c[-1] + "; dw[c, 0, p, q] = sum over n, i, j of dout[n, c, i, j] * "
             "xpad[n, c, i*stride + p, j*stride + q]",
             lambda c=c, k=k: _backward_case(fn, c, k, F.depthwise_conv2d_forward, True))
            for k, c in enumerate(CONV_CASES)]
