"""TensorFlow's "SAME" padding, built on the symmetric-padding kernels of :mod:`.conv2d`
and :mod:`.depthwise`.

Notation as in :mod:`.conv_geometry`: x (N, C, H, W), square kernels K x K, output Ho x Wo.

TensorFlow (and the EfficientNet-Lite, MobileNet and EfficientNet checkpoints trained with
it) pads so that the output has ``ceil(H / stride)`` rows, whatever K is::

    Ho    = ceil(H / stride)
    total = max((Ho - 1) * stride + K - H, 0)      zero rows added in all
    top   = total // 2,  bottom = total - top      the odd row, if any, at the *bottom*

and the same along W (left / right). For stride 1 and odd K the total is K - 1, split
evenly: exactly PyTorch's ``padding=(K - 1) // 2``. For stride 2 and an even H it is odd
(K = 3: top 0, bottom 1), and no symmetric padding reproduces it: PyTorch's
``padding=1`` puts the windows one row and column earlier (centred on rows 0, 2, 4, ...
instead of 1, 3, 5, ...), so weights trained with SAME padding give different numbers.

How it runs: the symmetric part ``p = min(top, bottom, left, right)`` (per call) goes to
the existing kernels' ``padding`` argument, so their fast paths are used unchanged, and
only what is left over, in practice the one extra row and column at the bottom and
right, is added by an explicit zero pad (one copy of x). Its backward is the matching
crop of dx. When nothing is left over (stride 1, odd K) there is no copy at all.

    same_padding(size, K, stride)               -> (before, after) along one axis
    same_output_size(size, stride)              -> ceil(size / stride)
    same_pad_forward(x, K, stride)              -> (x_padded, p, cache)
    same_pad_backward(dx_padded, cache)         -> dx
    conv2d_same_forward / _backward             standard (any groups) convolution, SAME
    depthwise_conv2d_same_forward / _backward   depthwise convolution, SAME
"""

from __future__ import annotations

import numpy as np

from ._checks import check_float_array, check_int
from .conv2d import _check_conv_dout
from .depthwise import _check_depthwise_dout

# the package's public kernels, whichever file defines them (functional/__init__ imports
# this module after them)
from . import (conv2d_backward, conv2d_forward, depthwise_conv2d_backward,
               depthwise_conv2d_forward)

__all__ = ["same_padding", "same_output_size", "same_pad_forward", "same_pad_backward",
           "conv2d_same_forward", "conv2d_same_backward",
           "depthwise_conv2d_same_forward", "depthwise_conv2d_same_backward"]


def _check(size, kernel_size, stride):
    for name, v in (("size", size), ("kernel_size", kernel_size), ("stride", stride)):
        check_int("same padding", name, v, 1)


def same_output_size(size: int, stride: int = 1) -> int:
    """Output length of a SAME-padded convolution along one axis: ``ceil(size / stride)``
    (independent of the kernel size)."""
    _check(size, 1, stride)
    return -(-size // stride)                     # ceil without floats


def same_padding(size: int, kernel_size: int, stride: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME padding along one axis of length ``size``: ``(before, after)``.

        total  = max((ceil(size / stride) - 1) * stride + kernel_size - size, 0)
        before = total // 2,  after = total - before   (after is before or before + 1)

    e.g. ``same_padding(224, 3, 2) == (0, 1)`` and ``same_padding(7, 3, 2) == (1, 1)``.
    """
    _check(size, kernel_size, stride)
    total = max((same_output_size(size, stride) - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


def same_pad_forward(x, kernel_size: int, stride: int = 1):
    """Split SAME padding into a symmetric part for a kernel and an explicit zero pad.

    x: (N, C, H, W) -> ``(xp, p, cache)``: xp (N, C, H + t + b, W + l + r), the input with
    only the *leftover* zeros added (t, b, l, r = TensorFlow's amounts minus p), and
    ``p`` the symmetric padding to hand to the kernel. A kernel run on ``xp`` with
    padding ``p`` sees exactly TensorFlow's padded input and gives
    ``(ceil(H / stride), ceil(W / stride))`` outputs. When nothing is left over, ``xp`` is
    ``x`` itself (no copy).
    """
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"same_pad_forward: expected input (N, C, H, W), got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    N, C, H, W = x.shape
    top, bottom = same_padding(H, kernel_size, stride)
    left, right = same_padding(W, kernel_size, stride)
    p = min(top, bottom, left, right)
    t, b, l, r = top - p, bottom - p, left - p, right - p
    cache = (x.shape, t, l)
    if t == b == l == r == 0:
        return x, p, cache
    # the readable definition: np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
    xp = np.zeros((N, C, H + t + b, W + l + r), dtype=x.dtype)
    xp[:, :, t:t + H, l:l + W] = x
    return xp, p, cache


def same_pad_backward(dxp, cache):
    """Backward of :func:`same_pad_forward`: the gradient of the padded input cropped
    back to x's (N, C, H, W) (the added zeros are constants: their gradient is dropped)."""
    shape, t, l = cache
    H, W = shape[2:]
    check_float_array("same_pad_backward", "dxp", dxp)
    if dxp.ndim != 4 or dxp.shape[:2] != tuple(shape[:2]) or dxp.shape[2] < t + H \
            or dxp.shape[3] < l + W:
        raise ValueError(f"same_pad_backward: dxp must have the shape of the padded input "
                         f"({shape[0]}, {shape[1]}, >= {t + H}, >= {l + W}), got {dxp.shape}")
    if dxp.shape == tuple(shape):
        return dxp
    return np.ascontiguousarray(dxp[:, :, t:t + H, l:l + W])


def conv2d_same_forward(x, w, b=None, stride=1, groups=1):
    """Standard convolution with TensorFlow's SAME padding (any ``groups``).

    x: (N, C, H, W)   w: (Co, C // G, K, K)   b: (Co,) or None
    out: (N, Co, ceil(H / stride), ceil(W / stride))

    :func:`same_pad_forward` then :func:`.conv2d_forward` with the symmetric part.
    """
    check_float_array("conv2d_same", "x", x)
    check_float_array("conv2d_same", "w", w)
    xp, p, pad_cache = same_pad_forward(x, w.shape[-1], stride)
    out, cache = conv2d_forward(xp, w, b, stride, p, groups)
    return out, (cache, pad_cache)


def conv2d_same_backward(dout, cache):
    """Backward of :func:`conv2d_same_forward`: dout (N, Co, Ho, Wo) -> dx (N, C, H, W),
    dw (Co, C // G, K, K), db (Co,) or None."""
    conv_cache, pad_cache = cache
    dout = _check_conv_dout("conv2d_same_backward", dout, conv_cache)
    dxp, dw, db = conv2d_backward(dout, conv_cache)
    return same_pad_backward(dxp, pad_cache), dw, db


def depthwise_conv2d_same_forward(x, w, b=None, stride=1):
    """Depthwise convolution with TensorFlow's SAME padding.

    x: (N, C, H, W)   w: (C, 1, K, K)   b: (C,) or None
    out: (N, C, ceil(H / stride), ceil(W / stride))

    :func:`same_pad_forward` then :func:`.depthwise_conv2d_forward` with the symmetric
    part (for stride 1 and odd K that is all of it, so the fast "same" layouts run).
    """
    check_float_array("depthwise_conv2d_same", "x", x)
    check_float_array("depthwise_conv2d_same", "w", w)
    xp, p, pad_cache = same_pad_forward(x, w.shape[-1], stride)
    out, cache = depthwise_conv2d_forward(xp, w, b, stride, p)
    return out, (cache, pad_cache)


def depthwise_conv2d_same_backward(dout, cache):
    """Backward of :func:`depthwise_conv2d_same_forward`: dout (N, C, Ho, Wo) ->
    dx (N, C, H, W), dw (C, 1, K, K), db (C,) or None."""
    conv_cache, pad_cache = cache
    dout = _check_depthwise_dout("depthwise_conv2d_same_backward", dout, conv_cache)
    dxp, dw, db = depthwise_conv2d_backward(dout, conv_cache)
    return same_pad_backward(dxp, pad_cache), dw, db
