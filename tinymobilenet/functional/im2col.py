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

from .conv_geometry import conv_output_size, tap_range

__all__ = ["im2col", "col2im"]


def im2col(x: np.ndarray, K: int, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Unfold the K x K patches of ``x`` into columns.

    x:   (N, C, H, W)
    out: (N, C, K, K, Ho, Wo), C-contiguous, so ``out.reshape(N, C*K*K, Ho*Wo)`` is free
         and each column ``[:, :, :, :, ho, wo]`` is the patch under output pixel (ho, wo).

    The padded input is never built: the taps that fall in the padding stay zero.
    """
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
