"""Pointwise (1 x 1) convolution: a matrix product over channels, no im2col.

Every pixel's C input values are mixed into Co outputs by the same (Co, C) matrix::

    out[n] = w @ x[n]          (Co, C) @ (C, H*W)

x (N, C, H, W), w (Co, C, 1, 1) (PyTorch's layout), out (N, Co, H, W). This is where
MobileNets spend ~95 % of their multiply-adds. The definition (loops) comes first, then
the fast kernels (same signatures, same results to round-off).
"""

from __future__ import annotations

import numpy as np

from ._checks import check_bias, check_dout, check_float_array, check_param

__all__ = ["pointwise_conv2d_forward", "pointwise_conv2d_backward",
           "pointwise_conv2d_forward_naive", "pointwise_conv2d_backward_naive"]


def _check_pointwise_args(x, w, b):
    """Check pointwise_conv2d's arguments (see :mod:`._checks` for the dtype rule);
    returns ``(w, b)`` in x's dtype."""
    x = check_float_array("pointwise_conv2d", "x", x)
    if x.ndim != 4:
        raise ValueError(f"pointwise_conv2d: expected input (N, C, H, W), got shape {x.shape}")
    w = check_param("pointwise_conv2d", "w", w, x.dtype)
    if w.ndim != 4 or w.shape[2:] != (1, 1) or w.shape[1] != x.shape[1]:
        raise ValueError(
            f"pointwise_conv2d: expected weight (Co, {x.shape[1]}, 1, 1) for input {x.shape}, "
            f"got {w.shape}"
        )
    return w, None if b is None else check_bias("pointwise_conv2d", b, w.shape[0], x.dtype)


# ----------------------------------------------------------------------------------------
# the definition
# ----------------------------------------------------------------------------------------

def pointwise_conv2d_forward_naive(x, w, b=None):
    """Readable loop definition of :func:`pointwise_conv2d_forward`::

        out[n, o, h, w] = b[o] + sum_c w[o, c, 0, 0] * x[n, c, h, w]

    x: (N, C, H, W)   w: (Co, C, 1, 1)   b: (Co,) or None   ->   out: (N, Co, H, W)
    """
    w, b = _check_pointwise_args(x, w, b)
    N, C, H, W = x.shape
    Co = w.shape[0]
    out = np.zeros((N, Co, H, W), dtype=x.dtype)
    for n in range(N):
        for o in range(Co):
            for c in range(C):
                out[n, o] += w[o, c, 0, 0] * x[n, c]
            if b is not None:
                out[n, o] += b[o]
    return out, (x, w, b is not None)


def pointwise_conv2d_backward_naive(dout, cache):
    """Readable loop definition of :func:`pointwise_conv2d_backward`::

        dw[o, c] = sum_{n, h, w} dout[n, o, h, w] * x[n, c, h, w]
        dx[n, c] = sum_o dout[n, o] * w[o, c]

    dout: (N, Co, H, W) -> dx (N, C, H, W), dw (Co, C, 1, 1), db (Co,) or None
    """
    x, w, has_bias = cache
    N, C, H, W = x.shape
    Co = w.shape[0]
    dout = check_dout("pointwise_conv2d_backward_naive", dout, (N, Co, H, W), x.dtype)
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    for n in range(N):
        for o in range(Co):
            for c in range(C):
                dw[o, c, 0, 0] += np.sum(dout[n, o] * x[n, c])
                dx[n, c] += dout[n, o] * w[o, c, 0, 0]
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db


# ----------------------------------------------------------------------------------------
# the fast path
# ----------------------------------------------------------------------------------------

# Below this many pixels per image (6 x 6) the per-sample matmuls are too small to keep
# BLAS busy (and each one synchronises its threads): the pointwise kernels then move the
# channels to the front with one small copy and do a single matmul over all N*H*W pixels.
SMALL_MAP = 36


def _channels_first(a):
    """(N, C, L) -> (C, N*L), a copy (small: used for maps of <= SMALL_MAP pixels)."""
    N, C, L = a.shape
    return a.transpose(1, 0, 2).reshape(C, N * L)


def _samples_first(a, N):
    """(C, N*L) -> (N, C, L), a contiguous copy: the inverse of :func:`_channels_first`."""
    C = a.shape[0]
    return np.ascontiguousarray(a.reshape(C, N, -1).transpose(1, 0, 2))


def pointwise_conv2d_forward(x, w, b=None):
    """1 x 1 convolution: ``out[n] = w @ x[n]`` on (C, H*W) views, no im2col, no copies.

    x: (N, C, H, W)   w: (Co, C, 1, 1)   b: (Co,) or None   ->   out: (N, Co, H, W)

    For maps of at most SMALL_MAP pixels it is one matmul on a channels-first copy,
    ``(Co, C) @ (C, N*H*W)``, instead of N tiny ones.
    """
    w, b = _check_pointwise_args(x, w, b)
    N, C, H, W = x.shape
    Co = w.shape[0]
    x2 = x.reshape(N, C, H * W)                   # free for contiguous x
    if H * W <= SMALL_MAP:
        out = _samples_first(w.reshape(Co, C) @ _channels_first(x2), N)   # (Co, C) @ (C, N*HW)
    else:
        out = np.matmul(w.reshape(Co, C), x2)     # (Co, C) @ (N, C, HW) -> (N, Co, HW)
    out = out.reshape(N, Co, H, W)
    if b is not None:
        out += b.reshape(1, Co, 1, 1)
    return out, (x2, w, b is not None, (N, C, H, W))


def pointwise_conv2d_backward(dout, cache):
    """Backward of :func:`pointwise_conv2d_forward`.

    dout: (N, Co, H, W) -> dx (N, C, H, W), dw (Co, C, 1, 1), db (Co,) or None

        dw = sum_n dout[n] @ x[n].T     (Co, HW) @ (HW, C), accumulated sample by sample
        dx[n] = w.T @ dout[n]           (C, Co) @ (Co, HW)

    Accumulating dw in a loop avoids the (N, Co, C) stack of per-sample products that a
    batched matmul followed by ``.sum(0)`` would allocate (32 MB for a 1024 x 1024 layer at
    batch 8); the transposes are BLAS flags, not copies. Small maps use channels-first
    copies and one matmul each for dw and dx, as in forward.
    """
    x2, w, has_bias, x_shape = cache
    N, C, H, W = x_shape
    Co = w.shape[0]
    dout = check_dout("pointwise_conv2d_backward", dout, (N, Co, H, W), x2.dtype)
    d2 = dout.reshape(N, Co, H * W)
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    if H * W <= SMALL_MAP:
        dT = _channels_first(d2)                                   # (Co, N*HW)
        dw = dT @ _channels_first(x2).T                            # (Co, N*HW) @ (N*HW, C)
        dx = _samples_first(w.reshape(Co, C).T @ dT, N)            # (C, Co) @ (Co, N*HW)
        return dx.reshape(x_shape), dw.reshape(Co, C, 1, 1), db
    dw = np.matmul(d2[0], x2[0].T)                           # (Co, HW) @ (HW, C)
    if N > 1:
        tmp = np.empty_like(dw)
        for n in range(1, N):
            dw += np.matmul(d2[n], x2[n].T, out=tmp)
    dx = np.matmul(w.reshape(Co, C).T, d2)                   # (C, Co) @ (N, Co, HW)
    return dx.reshape(x_shape), dw.reshape(Co, C, 1, 1), db
