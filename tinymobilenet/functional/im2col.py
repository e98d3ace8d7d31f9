"""im2col and col2im: a convolution as one matrix product.

Every K x K patch of the input, unfolded into a column, turns the convolution into a
product of the weights (Co, C*K*K) with the columns (C*K*K, Ho*Wo). The columns are built
from K*K strided copies, one per kernel tap (i, j) — no loop over pixels or batch::

    col[:, :, i, j] = xpad[:, :, i::stride, j::stride]      (N, C, Ho, Wo) each

and col2im, the adjoint, adds them back the same way (a pixel under several patches gets
the sum of their entries: exactly the gradient of im2col). Notation: see
:mod:`.conv_geometry`. The fast convolution builds its columns tile by tile with the
tricks of :mod:`._im2col_fast`; the result is the same.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_float_array, check_int, check_padding
from .conv_geometry import conv_output_size, tap_range

__all__ = ["im2col", "col2im"]


def im2col(x: np.ndarray, K: int, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Unfold the K x K patches of ``x`` into columns.

    x:   (N, C, H, W)
    out: (N, C, K, K, Ho, Wo), C-contiguous, so ``out.reshape(N, C*K*K, Ho*Wo)`` is free
         and each column ``[:, :, :, :, ho, wo]`` is the patch under output pixel (ho, wo).

    The padded input is never built: the taps that fall in the padding stay zero.
    """
    check_float_array("im2col", "x", x)
    if x.ndim != 4:
        raise ValueError(f"im2col: expected x (N, C, H, W), got shape {x.shape}")
    check_int("im2col", "K", K, 1)
    check_int("im2col", "stride", stride, 1)
    check_padding("im2col", padding, "same_pad.conv2d_same_forward")
    N, C, H, W = x.shape
    Ho = conv_output_size(H, K, stride, padding)
    Wo = conv_output_size(W, K, stride, padding)
    col = np.zeros((N, C, K, K, Ho, Wo), dtype=x.dtype)
    im2col_into(col, x, stride, padding)
    return col


def im2col_into(col: np.ndarray, x: np.ndarray, stride: int = 1, padding: int = 0) -> None:
    """Write the in-image entries of ``im2col(x)`` into ``col`` (N, C, K, K, Ho, Wo): one
    strided copy per kernel tap. The entries that read padding are left untouched (zero
    in a zeroed buffer)."""
    N, C, K, _, Ho, Wo = col.shape
    H, W = x.shape[2:]
    for i in range(K):
        ro, ri = tap_range(H, i, stride, padding, Ho)      # rows of tap i inside the image
        for j in range(K):
            co, ci = tap_range(W, j, stride, padding, Wo)
            col[:, :, i, j, ro, co] = x[:, :, ri, ci]      # (N, C, ho, wo) strided copy


def col2im(col: np.ndarray, H: int, W: int, stride: int = 1, padding: int = 0,
           out=None) -> np.ndarray:
    """Adjoint of :func:`im2col`: scatter-add columns back to an image.

    col: (N, C, K, K, Ho, Wo)
    out: (N, C, H, W); an input pixel covered by several patches receives the sum
         of all their entries, which is exactly the gradient of im2col. Taps that fell in
         the padding are dropped. With ``out`` given, the sum is written there.
    """
    check_float_array("col2im", "col", col)
    if col.ndim != 6 or col.shape[2] != col.shape[3]:
        raise ValueError(f"col2im: expected col (N, C, K, K, Ho, Wo), got shape {col.shape}")
    for name, v in (("H", H), ("W", W)):
        check_int("col2im", name, v, 1)
    check_int("col2im", "stride", stride, 1)
    check_padding("col2im", padding, "same_pad.conv2d_same_backward")
    N, C, K, _, Ho, Wo = col.shape
    if (conv_output_size(H, K, stride, padding), conv_output_size(W, K, stride, padding)) != (Ho, Wo):
        raise ValueError(f"col2im: col {col.shape} has {Ho}x{Wo} patches, but a {H}x{W} image "
                         f"with K={K}, stride={stride}, padding={padding} has "
                         f"{conv_output_size(H, K, stride, padding)}x"
                         f"{conv_output_size(W, K, stride, padding)}")
    return scatter_columns(col, H, W, stride, padding, out)


def scatter_columns(col, H, W, stride=1, padding=0, out=None):
    """:func:`col2im` on checked arguments (what the fast kernels call, tile by tile)."""
    N, C, K, _, Ho, Wo = col.shape
    if out is None:
        out = np.zeros((N, C, H, W), dtype=col.dtype)
    else:
        out[...] = 0
    for i in range(K):
        ro, ri = tap_range(H, i, stride, padding, Ho)
        for j in range(K):
            co, ci = tap_range(W, j, stride, padding, Wo)
            out[:, :, ri, ci] += col[:, :, i, j, ro, co]          # strided +=
    return out
