"""Depthwise convolution: one K x K filter per channel (``groups == C == Co``).

The idea in one line: each channel is convolved with its own filter, so the whole
operation is K*K multiply-adds of strided slices of the padded input::

    out = sum_{i, j} w[:, 0, i, j] * xpad[:, :, i::stride, j::stride]

Notation (:mod:`.conv_geometry`): x (N, C, H, W), w (C, 1, K, K) (PyTorch's layout for
``groups=C``), out (N, C, Ho, Wo), Ho = (H + 2*pad - K) // stride + 1.

No patch matrix is built: im2col would make a K*K-times larger copy of the input for an
operation that does only K*K multiply-adds per output value. It costs K*K*C*Ho*Wo
multiply-adds against a full convolution's K*K*C*Co*Ho*Wo: the 1/Co of MobileNet's
1/Co + 1/K^2.

This file holds the definition (:func:`depthwise_conv2d_forward_naive`, four loops) and
the two short dispatchers users call. They pick one of three fast paths (same results to
round-off; the tests run each against the definition):

- :mod:`._depthwise_dense`: the smallest maps of a batch (3x3 to 7x7) as one dense
  (H*W, Ho*Wo) matrix per channel, a batched matmul in BLAS;
- :mod:`._depthwise_banded`: maps at most ``BANDED_WIDTH * K`` pixels wide (the 14x14 and
  7x7 layers) as banded matrix products in BLAS;
- :mod:`._depthwise_direct`: wider maps as K*K multiply-adds on cache-sized tiles; at
  stride 1 with "same" padding the taps as one small matrix product per channel in
  BLAS, which also takes the narrow maps of a single image (see :func:`_path`).
"""

from __future__ import annotations

import numpy as np

from . import _depthwise_banded, _depthwise_dense, _depthwise_direct
from ._checks import (check_bias, check_dout, check_float_array, check_int, check_padding,
                      check_param)
from .conv_geometry import conv_output_size, pad2d

__all__ = ["depthwise_conv2d_forward", "depthwise_conv2d_backward",
           "depthwise_conv2d_forward_naive", "depthwise_conv2d_backward_naive", "BANDED_WIDTH"]


def _check_depthwise_args(x, w, b, stride, padding):
    """Check depthwise_conv2d's arguments (see :mod:`._checks` for the dtype rule); returns
    ``(w, b)`` in x's dtype."""
    x = check_float_array("depthwise_conv2d", "x", x)
    if x.ndim != 4:
        raise ValueError(f"depthwise_conv2d: expected input (N, C, H, W), got shape {x.shape}")
    w = check_param("depthwise_conv2d", "w", w, x.dtype)
    if w.ndim != 4 or w.shape[1] != 1 or w.shape[2] != w.shape[3]:
        raise ValueError(f"depthwise_conv2d: expected weight (C, 1, K, K), got {w.shape}")
    if w.shape[0] != x.shape[1]:
        raise ValueError(
            f"depthwise_conv2d: weight {w.shape} expects {w.shape[0]} channels, got input {x.shape}"
        )
    check_int("depthwise_conv2d", "stride", stride, 1)
    check_padding("depthwise_conv2d", padding, "depthwise_conv2d_same_forward")
    return w, None if b is None else check_bias("depthwise_conv2d", b, x.shape[1], x.dtype,
                                                "channel")


def _check_depthwise_dout(fn, dout, cache):
    """dout of the forward that made ``cache``: its output's shape, in x's dtype."""
    x, w, _, stride, padding = cache
    N, C, H, W = x.shape
    K = w.shape[2]
    shape = (N, C, conv_output_size(H, K, stride, padding), conv_output_size(W, K, stride, padding))
    return check_dout(fn, dout, shape, x.dtype)


# ----------------------------------------------------------------------------------------
# the definition
# ----------------------------------------------------------------------------------------

def depthwise_conv2d_forward_naive(x, w, b=None, stride=1, padding=0):
    """Readable loop definition of :func:`depthwise_conv2d_forward`::

        out[n, c, i, j] = b[c] + sum_{p, q} w[c, 0, p, q] * xpad[n, c, i*stride + p, j*stride + q]

    x: (N, C, H, W)   w: (C, 1, K, K)   b: (C,) or None   ->   out: (N, C, Ho, Wo)
    """
    w, b = _check_depthwise_args(x, w, b, stride, padding)
    N, C, H, W = x.shape
    K = w.shape[2]
    Ho = conv_output_size(H, K, stride, padding)
    Wo = conv_output_size(W, K, stride, padding)
    xp = pad2d(x, padding)
    out = np.zeros((N, C, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    patch = xp[n, c, i * stride:i * stride + K, j * stride:j * stride + K]
                    out[n, c, i, j] = np.sum(patch * w[c, 0])
            if b is not None:
                out[n, c] += b[c]
    cache = (x, w, b is not None, stride, padding)
    return out, cache


def depthwise_conv2d_backward_naive(dout, cache):
    """Readable loop definition of :func:`depthwise_conv2d_backward`: each output pixel
    hands its gradient back to the patch of its own channel and to that channel's filter::

        dw[c, 0]              += dout[n, c, i, j] * xpad[n, c, patch(i, j)]
        dxpad[n, c, patch(i, j)] += dout[n, c, i, j] * w[c, 0]

    dout: (N, C, Ho, Wo) -> dx (N, C, H, W), dw (C, 1, K, K), db (C,) or None
    """
    dout = _check_depthwise_dout("depthwise_conv2d_backward_naive", dout, cache)
    x, w, has_bias, stride, padding = cache
    N, C, H, W = x.shape
    K = w.shape[2]
    Ho, Wo = dout.shape[-2:]
    xp = pad2d(x, padding)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    hs, ws = i * stride, j * stride
                    dw[c, 0] += dout[n, c, i, j] * xp[n, c, hs:hs + K, ws:ws + K]
                    dxp[n, c, hs:hs + K, ws:ws + K] += dout[n, c, i, j] * w[c, 0]
    dx = dxp[:, :, padding:padding + H, padding:padding + W]
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db


# ----------------------------------------------------------------------------------------
# the fast paths, and which one runs
# ----------------------------------------------------------------------------------------

# A banded product spends about W/K times the multiply-adds (in BLAS) to save 2*K*K NumPy
# passes over memory: it wins up to about 6K pixels wide (measured; the table is in
# tinymobilenet.bench's documentation).
BANDED_WIDTH = 6

# The dense path spends H*W*Ho*Wo*(K*K + N) multiply-adds a channel (building each
# channel's matrix, then the product) where the others spend N*Ho*Wo*K*K: it runs
# where that is at most DENSE_WASTE times as many. Measured against the banded and
# direct paths at one and two threads: batch 8 at 3x3 maps 0.12-0.19x the forward and
# 0.25-0.38x the backward time, at 6x6 0.31-0.58x and 0.27-0.80x, at 7x7 with a 5x5
# kernel 0.55-0.68x and 0.80-0.84x; batch 1 at 3x3 0.24-0.34x and 0.37-0.57x; but 2-4x
# slower at 12x12 and on one 6x6 image, where the product is 16x and the matrices 40x
# the direct multiply-adds.
DENSE_WASTE = 12


def _dense_pays(x_shape, K):
    """Does the dense path spend at most DENSE_WASTE times the multiply-adds here?"""
    N, _, H, W = x_shape
    return K > 1 and H * W * (K * K + N) <= DENSE_WASTE * N * K * K


def _path(x_shape, K, stride, padding):
    """The fast path for an input of ``x_shape`` and kernel size K: the dense matrices
    where they pay (:func:`_dense_pays`), else the banded products up to
    ``BANDED_WIDTH * K`` pixels wide, else the direct kernels.

    Stride-1 "same" kernels of K >= ``_depthwise_direct.MATMUL_K`` have a third option,
    the direct path with the taps as matrix products in BLAS. Measured when it made one
    matrix-vector product per kernel row, it beat the banded products on one image (5x5,
    one thread: 0.74-1.01x the forward and 0.58-0.82x the backward time at 7-24 px; 3x3
    on an AMD Zen 5: 0.95-0.99x / 0.79-0.99x at 7 and 14 px, 0.82x / 0.66-0.73x with
    cold caches) and, for 5x5, from 4K pixels wide (0.79-1.0x at 24 and 28 px, batch 8),
    but not on smaller maps in a batch (5x5: 0.94-2.28x at 3-14 px, batch 8; 3x3:
    1.11-1.41x at 12 px), where the banded products stack the images into longer ones;
    and only on one thread (on two, BLAS spreads the banded products over both cores:
    0.6-0.7x). With one (K x K) @ (K x L) product per channel (Zen 5, one thread, forward):
    0.66-0.77x at 7x7 and 14x14 on one image, still 1.05x at 7x7 and 1.15-1.28x at 14x14
    in a batch of 8 or 16, so the rule stands."""
    N, W = x_shape[0], x_shape[3]
    if _dense_pays(x_shape, K):
        return _depthwise_dense
    if K > 1 and W <= BANDED_WIDTH * K:
        taps = (_depthwise_direct.uses_matmul(x_shape, K, stride, padding)
                and (N == 1 or (K >= 5 and W >= 4 * K)))
        return _depthwise_direct if taps else _depthwise_banded
    return _depthwise_direct


def depthwise_conv2d_forward(x, w, b=None, stride=1, padding=0):
    """Depthwise convolution (see the module docstring for the idea and the three fast
    paths).

    x: (N, C, H, W)   w: (C, 1, K, K)   b: (C,) or None   ->   out: (N, C, Ho, Wo)

    The only full-size allocation is ``out``; x is cached by reference, not copied.
    """
    w, b = _check_depthwise_args(x, w, b, stride, padding)
    C, K = x.shape[1], w.shape[2]
    out = _path(x.shape, K, stride, padding).forward(x, w, stride, padding)
    if b is not None:
        out += b.reshape(1, C, 1, 1)
    return out, (x, w, b is not None, stride, padding)


def depthwise_conv2d_backward(dout, cache):
    """Backward of :func:`depthwise_conv2d_forward`.

    dout: (N, C, Ho, Wo) -> dx (N, C, H, W), dw (C, 1, K, K), db (C,) or None

        dw[c, 0, i, j] = sum_{n, ho, wo} dout[n, c, ho, wo] * xpad[n, c, i + s*ho, j + s*wo]
        dxpad[:, :, i::s, j::s] += w[:, 0, i, j] * dout
    """
    dout = _check_depthwise_dout("depthwise_conv2d_backward", dout, cache)
    x, w, has_bias, stride, padding = cache
    dx, dw = _path(x.shape, w.shape[2], stride, padding).backward(dout, x, w, stride, padding)
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db
