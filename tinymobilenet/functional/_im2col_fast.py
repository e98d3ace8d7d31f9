"""How the fast standard convolution builds its columns (a student can skip this file).

:func:`.im2col.im2col` is the definition. The convolution's tiles use the same columns,
built faster for the two common cases:

- stride 1 with "same" padding: each tap is one *flat shift* of the zero-padded image, a
  copy of H*W contiguous values per channel instead of H short rows
  (:func:`fill_columns`, :func:`col2im_into`);
- stride > 1: the input split once into its stride x stride phases, and the columns laid
  out on an Ho x Wq grid, so that each tap is one contiguous copy (:class:`StridedColumns`).

Notation: see :mod:`.conv_geometry`.
"""

from __future__ import annotations

import numpy as np

from .conv_geometry import PhaseGeometry, is_same_stride1
from .im2col import im2col_into, scatter_columns
from .tiling import scratch

__all__ = ["fill_columns", "col2im_into", "column_buffer", "StridedColumns"]


def _wrapped_columns(K, padding, W):
    """For each kernel column j, the output columns whose tap j runs off the left
    (j < padding) or right (j > padding) edge of an image row of width W."""
    return [list(range(0, min(W, padding - j))) if j < padding
            else list(range(max(0, W - (j - padding)), W)) for j in range(K)]


def _flat_padded(a, padding):
    """(N, C, H, W) -> (N, C, lead + H*W + lead) with lead = padding*(W + 1) zeros: the
    image flat, with zero rows above and below. Tap (i, j) of output pixel q = ho*W + wo
    then reads position ``q + i*W + j``, a flat shift (horizontal wrap-around aside)."""
    N, C, H, W = a.shape
    lead = padding * (W + 1)
    flat = np.zeros((N, C, H * W + 2 * lead), dtype=a.dtype)
    flat[:, :, lead:lead + H * W] = a.reshape(N, C, H * W)
    return flat


def fill_columns(col, x, stride, padding):
    """Write the in-image entries of ``im2col(x)`` into ``col`` (N, C, K, K, Ho, Wo).

    Entries that read padding are not touched: they must already be zero, so a buffer
    reused for tiles of the same geometry needs zeroing only once. With stride 1 and
    "same" padding every entry is written: each tap is one flat shift of the zero-padded
    image, with the few columns that wrapped around a row edge zeroed.
    """
    N, C, K = col.shape[:3]
    H, W = x.shape[2:]
    if is_same_stride1(K, stride, padding):
        xf = _flat_padded(x, padding)                              # (N, C, H*W + 2*lead)
        cf = col.reshape(N, C, K, K, H * W)
        wrapped = _wrapped_columns(K, padding, W)
        for i in range(K):
            for j in range(K):
                cf[:, :, i, j] = xf[:, :, i * W + j:i * W + j + H * W]   # flat shift
                for c in wrapped[j]:
                    col[:, :, i, j, :, c] = 0
        return
    im2col_into(col, x, stride, padding)


def col2im_into(out, col, stride, padding):
    """``out[...] = col2im(col)`` for a ``col`` that may be overwritten (a scratch buffer).

    With stride 1 and "same" padding the wrapped entries of ``col`` are zeroed and each
    tap is added as one flat shift (the adjoint of :func:`fill_columns`); otherwise this
    is :func:`.im2col.col2im`.
    """
    N, C, K, _, H, W = col.shape
    if not is_same_stride1(K, stride, padding):
        scatter_columns(col, out.shape[2], out.shape[3], stride, padding, out=out)
        return
    lead = padding * (W + 1)
    dxf = np.zeros((N, C, H * W + 2 * lead), dtype=col.dtype)
    cf = col.reshape(N, C, K, K, H * W)
    wrapped = _wrapped_columns(K, padding, W)
    for i in range(K):
        for j in range(K):
            for c in wrapped[j]:
                col[:, :, i, j, :, c] = 0
            dxf[:, :, i * W + j:i * W + j + H * W] += cf[:, :, i, j]          # flat shift
    out[...] = dxf[:, :, lead:lead + H * W].reshape(N, C, H, W)


def column_buffer(shape, dtype, stride, padding):
    """A column buffer (N, C, K, K, Ho, Wo) for :func:`fill_columns`, a scratch buffer of
    the calling thread: zeroed, since only in-image taps are written, except for stride-1
    "same" convolutions (all written)."""
    return scratch("conv_col", shape, dtype, zero=not is_same_stride1(shape[2], stride, padding))


class StridedColumns(PhaseGeometry):
    """Strided (s > 1) im2col / col2im on the stride x stride phases of the input.

    The plain im2col copies each tap as Ho rows of Wo values read with stride s, and col2im
    adds them back the same way; at MobileNet sizes (Wo = 28) NumPy spends much of that
    time per short strided row. Here the input is split once (one strided copy) into its
    phases (:class:`.conv_geometry.PhaseGeometry`), each a flat (Hq*Wq) image of width
    Wq = Wo + (K-1)//s, and the columns are laid out on the same Ho x Wq grid: tap (i, j)
    is then ONE contiguous copy of Ho*Wq values per channel, from the flat phase shifted
    by ``(i//s)*Wq + j//s``.

    The Wq - Wo extra grid columns per row read across the phase's row edge: their
    outputs are computed and dropped (Wq/Wo - 1 = 1/28 more matmul work at K=3, s=2). In
    backward dout is zero there, so their column gradients are zero and add nothing.

    Phase buffer: (P, P, N, C, Hq*Wq + reach), P = min(s, K) phases per axis; the trailing
    ``reach`` values are slack for the last row's shifted reads.
    """

    def buffer(self, N, C, dtype, name):
        """Zeroed phase buffer (P, P, N, C, Hq*Wq + reach), a scratch buffer of the calling
        thread (reused by its next call)."""
        return scratch(name, (self.P, self.P, N, C, self.Hq * self.Wq + self.reach), dtype,
                       zero=True)

    def _image(self, xq, a, b):
        """Phase (a, b) of a phase buffer as an (N, C, Hq, Wq) view."""
        N, C = xq.shape[2:4]
        return xq[a, b, :, :, :self.Hq * self.Wq].reshape(N, C, self.Hq, self.Wq)

    def scatter(self, xq, x):
        """Copy the input x (N, C, H, W) into its phases (the padding stays zero)."""
        for a, (pr, xr) in enumerate(self.rows):
            for b, (pc, xc) in enumerate(self.cols):
                self._image(xq, a, b)[:, :, pr, pc] = x[:, :, xr, xc]      # strided, once

    def gather(self, out, xq):
        """Inverse of :meth:`scatter`: ``out`` (N, C, H, W) from the phases, padding dropped."""
        if not self.covers_input:
            out[...] = 0                           # pixels in no phase get no gradient
        for a, (pr, xr) in enumerate(self.rows):
            for b, (pc, xc) in enumerate(self.cols):
                out[:, :, xr, xc] = self._image(xq, a, b)[:, :, pr, pc]

    def tap(self, xq, i, j):
        """The flat (N, C, Ho*Wq) window of the phases read by kernel tap (i, j)."""
        s, off = self.s, self.shift(i, j)
        return xq[i % s, j % s, :, :, off:off + self.Ho * self.Wq]

    def fill(self, col, x):
        """Columns on the Ho x Wq grid: col (N, C, K, K, Ho*Wq) from x (N, C, H, W)."""
        xq = self.buffer(x.shape[0], x.shape[1], x.dtype, "conv_phases")
        self.scatter(xq, x)
        for i in range(self.K):
            for j in range(self.K):
                col[:, :, i, j] = self.tap(xq, i, j)                    # contiguous copy

    def col2im(self, dx, dcol):
        """Adjoint of :meth:`fill`: dx (N, C, H, W) from dcol (N, C, K, K, Ho*Wq)."""
        dxq = self.buffer(dx.shape[0], dx.shape[1], dcol.dtype, "conv_dphases")
        for i in range(self.K):
            for j in range(self.K):
                self.tap(dxq, i, j)[...] += dcol[:, :, i, j]            # contiguous add
        self.gather(dx, dxq)
