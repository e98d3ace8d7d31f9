"""Convolutions: standard (any ``groups``), depthwise and pointwise, forward and backward.

Notation (used in every docstring and shape comment below)::

    N   batch size            C   input channels        Co  output channels
    H,W input height/width    K   kernel size (square)  G   groups
    Ho,Wo output height/width:  Ho = (H + 2*pad - K) // stride + 1

Arrays are NCHW and weights follow PyTorch's layout ``(Co, C // G, K, K)``.

Every fast kernel has a *naive* twin with the same signature, written with plain
Python loops.  The naive twins are the readable definition of the operation and the
oracle the tests compare the fast kernels against; they are far too slow for real use.

Each ``*_forward`` returns ``(out, cache)`` and each ``*_backward(dout, cache)`` returns
``(dx, dw, db)`` (``db`` is ``None`` when there is no bias).
"""

from __future__ import annotations

import numpy as np

from . import tiling
from .tiling import num_threads, run_tiles, scratch, split_rows, threads_for

__all__ = [
    "conv_output_size",
    "pad2d",
    "im2col",
    "col2im",
    "conv2d_forward",
    "conv2d_backward",
    "conv2d_forward_naive",
    "conv2d_backward_naive",
    "depthwise_conv2d_forward",
    "depthwise_conv2d_backward",
    "depthwise_conv2d_forward_naive",
    "depthwise_conv2d_backward_naive",
    "pointwise_conv2d_forward",
    "pointwise_conv2d_backward",
    "pointwise_conv2d_forward_naive",
    "pointwise_conv2d_backward_naive",
]


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------

def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution along one axis.

    ``out = (size + 2*padding - kernel_size) // stride + 1``

    Raises ``ValueError`` when the kernel does not fit in the padded input.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    padded = size + 2 * padding
    if kernel_size > padded:
        raise ValueError(
            f"kernel size {kernel_size} is larger than the padded input "
            f"({size} + 2*{padding} = {padded})"
        )
    return (padded - kernel_size) // stride + 1


def pad2d(x: np.ndarray, padding: int) -> np.ndarray:
    """Zero-pad the two spatial axes of ``x`` (N, C, H, W) by ``padding`` on each side."""
    if padding == 0:
        return x
    N, C, H, W = x.shape
    xp = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=x.dtype)
    xp[:, :, padding:padding + H, padding:padding + W] = x
    return xp


def _rowdot(a, b):
    """``sum(a * b, axis=-1)`` without the product array: one dot product per row."""
    if hasattr(np, "vecdot"):                      # NumPy >= 2: a BLAS dot per row
        return np.vecdot(a, b)
    return np.einsum("...l,...l->...", a, b)


def _inside(size, i, stride, padding, out_size):
    """The output positions whose kernel tap ``i`` lands inside the input, and where.

    Output position o reads input position ``i + stride*o - padding``; returns
    ``(output slice, input slice)`` of the taps with ``0 <= i + stride*o - padding < size``
    (the others read zero padding). Used per axis, so padding never has to be materialised.
    """
    o0 = max(0, -((i - padding) // stride))               # ceil((padding - i) / stride)
    o1 = min(out_size, (size + padding - i + stride - 1) // stride)
    if o1 <= o0:                                          # this tap reads only padding
        return slice(0, 0), slice(0, 0)
    start = i + stride * o0 - padding
    return slice(o0, o1), slice(start, start + stride * (o1 - o0 - 1) + 1, stride)


def _is_same(K, stride, padding):
    """Stride 1 and "same" padding (K = 2*padding + 1): the case the flat-shift layouts
    handle (see :class:`_Pitched`)."""
    return stride == 1 and K > 1 and 2 * padding == K - 1


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


class _PhaseGeometry:
    """Where the stride x stride *phases* ``xpad[a::s, b::s]`` of a zero-padded input sit,
    shared by the strided im2col (:class:`_StridePhases`) and the depthwise layout
    (:class:`_Phases`).

    Kernel tap (i, j) of output pixel (ho, wo) reads padded pixel ``(i + s*ho, j + s*wo)``:
    pixel ``(i//s + ho, j//s + wo)`` of phase ``(i % s, j % s)``. A window reaches
    ``reach = (K-1)//s`` phase pixels past its start, so each phase is cropped to
    Hq x Wq = (Ho + reach) x (Wo + reach) pixels; stored flat with row width Wq, tap (i, j)
    is the flat shift :meth:`shift`. ``rows[a]`` / ``cols[b]`` give, for phase row a /
    column b, the (phase slice, input slice) of its in-image pixels (the rest is padding,
    never copied, only left at zero).
    """

    def __init__(self, H, W, K, stride, padding):
        s = stride
        self.K, self.s = K, s
        self.Ho = conv_output_size(H, K, s, padding)
        self.Wo = conv_output_size(W, K, s, padding)
        self.reach = (K - 1) // s
        self.Hq, self.Wq = self.Ho + self.reach, self.Wo + self.reach
        self.P = min(s, K)                         # phases that are read (K < s skips some)
        self.rows = [_inside(H, a, s, padding, self.Hq) for a in range(self.P)]
        self.cols = [_inside(W, b, s, padding, self.Wq) for b in range(self.P)]
        # does some tap read every input pixel? (not when the stride cuts off the last
        # rows or columns, or when stride > K)
        self.covers_input = (sum(len(range(H)[r]) for _, r in self.rows) == H
                             and sum(len(range(W)[c]) for _, c in self.cols) == W)

    def shift(self, i, j):
        """Flat offset of tap (i, j) inside its phase (row width Wq)."""
        return (i // self.s) * self.Wq + j // self.s


class _StridePhases(_PhaseGeometry):
    """Strided (s > 1) im2col / col2im on the stride x stride phases of the input.

    Tap (i, j) of output pixel (ho, wo) reads padded pixel ``(i + s*ho, j + s*wo)``: pixel
    ``(i//s + ho, j//s + wo)`` of phase ``(i % s, j % s)``, the sub-image
    ``xpad[:, :, i%s::s, j%s::s]``. The plain im2col copies each tap as Ho rows of Wo values
    read with stride s, and col2im adds them back the same way; at MobileNet sizes
    (Wo = 28) NumPy spends much of that time per short strided row. Here the input is
    split once (one strided copy) into its phases, each a flat (Hq*Wq) image of
    width Wq = Wo + (K-1)//s, and the columns are laid out on the same Ho x Wq grid: tap
    (i, j) is then ONE contiguous copy of Ho*Wq values per channel, from the flat phase
    shifted by ``(i//s)*Wq + j//s``.

    The Wq - Wo extra grid columns per row read across the phase's row edge: their
    outputs are computed and dropped (Wq/Wo - 1 = 1/28 more matmul work at K=3, s=2). In
    backward dout is zero there, so their column gradients are zero and add nothing.

    Phase buffer: (P, P, N, C, Hq*Wq + reach), P = min(s, K) phases per axis,
    Hq = Ho + reach, reach = (K-1)//s; the trailing ``reach`` values are slack for the last
    row's shifted reads. The padding is never copied, only left at zero.
    """

    def buffer(self, N, C, dtype):
        """Zeroed phase buffer (P, P, N, C, Hq*Wq + reach)."""
        return np.zeros((self.P, self.P, N, C, self.Hq * self.Wq + self.reach), dtype=dtype)

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
        xq = self.buffer(x.shape[0], x.shape[1], x.dtype)
        self.scatter(xq, x)
        for i in range(self.K):
            for j in range(self.K):
                col[:, :, i, j] = self.tap(xq, i, j)                    # contiguous copy

    def col2im(self, dx, dcol):
        """Adjoint of :meth:`fill`: dx (N, C, H, W) from dcol (N, C, K, K, Ho*Wq)."""
        dxq = self.buffer(dx.shape[0], dx.shape[1], dcol.dtype)
        for i in range(self.K):
            for j in range(self.K):
                self.tap(dxq, i, j)[...] += dcol[:, :, i, j]            # contiguous add
        self.gather(dx, dxq)


def _fill_columns(col, x, stride, padding):
    """Write the in-image entries of ``im2col(x)`` into ``col`` (N, C, K, K, Ho, Wo).

    Entries that read padding are not touched: they must already be zero. A buffer reused
    for tiles of the same geometry therefore needs zeroing only once. With stride 1 and
    "same" padding each tap is one flat shift of the zero-padded image (a copy of H*W
    contiguous values per channel, not H short rows), with the few wrapped columns zeroed.
    """
    N, C, K, _, Ho, Wo = col.shape
    H, W = x.shape[2:]
    if _is_same(K, stride, padding):
        xf = _flat_padded(x, padding)                              # (N, C, H*W + 2*lead)
        cf = col.reshape(N, C, K, K, H * W)
        wrapped = _wrapped_columns(K, padding, W)
        for i in range(K):
            for j in range(K):
                cf[:, :, i, j] = xf[:, :, i * W + j:i * W + j + H * W]   # flat shift
                for c in wrapped[j]:
                    col[:, :, i, j, :, c] = 0
        return
    for i in range(K):
        ro, ri = _inside(H, i, stride, padding, Ho)
        for j in range(K):
            co, ci = _inside(W, j, stride, padding, Wo)
            col[:, :, i, j, ro, co] = x[:, :, ri, ci]             # (N, C, ho, wo) strided copy


def im2col(x: np.ndarray, K: int, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Unfold the K x K patches of ``x`` into columns.

    x:   (N, C, H, W)
    out: (N, C, K, K, Ho, Wo), C-contiguous, so ``out.reshape(N, C*K*K, Ho*Wo)`` is free
         and each column ``[:, :, :, :, ho, wo]`` is the patch under output pixel (ho, wo).

    Built from K*K strided copies ``col[:, :, i, j] = xpad[:, :, i::stride, j::stride]``
    (no loop over pixels or batch); the padded input is never built, the taps that fall
    in the padding are simply left at zero.
    """
    N, C, H, W = x.shape
    Ho = conv_output_size(H, K, stride, padding)
    Wo = conv_output_size(W, K, stride, padding)
    col = np.zeros((N, C, K, K, Ho, Wo), dtype=x.dtype)
    _fill_columns(col, x, stride, padding)
    return col


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
        ro, ri = _inside(H, i, stride, padding, Ho)
        for j in range(K):
            co, ci = _inside(W, j, stride, padding, Wo)
            out[:, :, ri, ci] += col[:, :, i, j, ro, co]          # strided +=
    return out


def _check_conv_args(x, w, groups):
    if x.ndim != 4:
        raise ValueError(f"conv2d: expected input (N, C, H, W), got shape {x.shape}")
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise ValueError(f"conv2d: expected square weight (Co, C/groups, K, K), got {w.shape}")
    C = x.shape[1]
    Co, Cg = w.shape[:2]
    if groups < 1 or C % groups or Co % groups:
        raise ValueError(
            f"conv2d: groups={groups} must divide in_channels={C} and out_channels={Co}"
        )
    if Cg != C // groups:
        raise ValueError(
            f"conv2d: weight {w.shape} expects {Cg * groups} input channels "
            f"with groups={groups}, got input {x.shape}"
        )


# ----------------------------------------------------------------------------------------
# standard convolution (any groups) via im2col
# ----------------------------------------------------------------------------------------

def _col2im_scratch(out, col, stride, padding):
    """``out[...] = col2im(col)`` for a ``col`` that may be overwritten (a scratch buffer).

    With stride 1 and "same" padding the wrapped entries of ``col`` are zeroed and each
    tap is added as one flat shift (the adjoint of :func:`_fill_columns`); otherwise this
    is :func:`col2im`.
    """
    N, C, K, _, H, W = col.shape
    if not _is_same(K, stride, padding):
        col2im(col, out.shape[2], out.shape[3], stride, padding, out=out)
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


# Column buffer budget of one batch tile of the standard convolution. The columns are
# K*K times larger than the input; building them for the whole batch would stream that
# copy through DRAM twice (write, then read by the matmul). A tile of a few samples keeps
# it in the last-level cache and is reused by the next tile; 4 MB is a fraction of a
# shared L3 (8 - 32 MB) and still gives the matmul thousands of columns.
COL_BYTES = 4 * 1024 * 1024


def _by_channels(fn, C, size):
    """Run ``fn(c0, c1)`` over channel ranges on the tile threads. im2col and col2im are
    pure copies and adds, which NumPy runs on one core; split by channels they write
    disjoint parts of their output, so the threads need no locks."""
    step = -(-C // num_threads())
    run_tiles(lambda chunk: [fn(c0, c1) for c0, c1 in chunk],
              [(c0, min(C, c0 + step)) for c0 in range(0, C, step)], size=size)


def _column_buffer(shape, dtype, stride, padding):
    """A column buffer for :func:`_fill_columns`: zeroed, since only in-image taps are
    written, except for stride-1 "same" convolutions, whose fill writes every entry."""
    return (np.empty if _is_same(shape[2], stride, padding) else np.zeros)(shape, dtype=dtype)


def _conv_tiles(N, C, K, Ho, Wo, itemsize):
    """Samples per tile and the list of (n0, n1) tiles of the im2col convolution."""
    Nt = split_rows(N, C * K * K * Ho * Wo * itemsize, COL_BYTES)
    return Nt, [(n0, min(N, n0 + Nt)) for n0 in range(0, N, Nt)]


def conv2d_forward(x, w, b=None, stride=1, padding=0, groups=1):
    """Standard 2-D convolution (cross-correlation, as in PyTorch) with ``groups``.

    x: (N, C, H, W)   w: (Co, C // G, K, K)   b: (Co,) or None
    out: (N, Co, Ho, Wo)

    im2col turns the convolution into one (batched) matrix product::

        out[n, g] = w[g] @ col[n, g]      (Co/G, C/G*K*K) @ (C/G*K*K, Ho*Wo)

    The batch runs in tiles of a few samples (COL_BYTES of columns), written by the
    matmul straight into ``out``. Only x is cached: backward rebuilds each tile's columns,
    which is cheap next to the matmuls and saves holding a K*K-times larger array.

    Strided convolutions build their columns from the input's phases on an Ho x Wq grid
    (see :class:`_StridePhases`): the matmul writes that grid to a buffer and the Ho x Wo
    outputs are copied out of it.
    """
    _check_conv_args(x, w, groups)
    N, C, H, W = x.shape
    Co, Cg, K, _ = w.shape
    G = groups
    Ho = conv_output_size(H, K, stride, padding)
    Wo = conv_output_size(W, K, stride, padding)
    out = np.empty((N, Co, Ho, Wo), dtype=x.dtype)
    w_g = w.reshape(G, Co // G, Cg * K * K)
    ph = _StridePhases(H, W, K, stride, padding) if stride > 1 else None
    Wg = ph.Wq if ph else Wo                                           # column grid width
    Nt, tiles = _conv_tiles(N, C, K, Ho, Wg, x.itemsize)
    if ph:
        col = np.empty((Nt, C, K, K, Ho * Wg), dtype=x.dtype)          # fill writes all
        grid = np.empty((Nt, Co, Ho, Wg), dtype=x.dtype)               # matmul output
    else:
        col = _column_buffer((Nt, C, K, K, Ho, Wo), x.dtype, stride, padding)
    for n0, n1 in tiles:
        nt = n1 - n0
        if ph:
            _by_channels(lambda c0, c1: ph.fill(col[:nt, c0:c1], x[n0:n1, c0:c1]),
                         C, col[:nt].size)
        else:
            _by_channels(lambda c0, c1: _fill_columns(col[:nt, c0:c1], x[n0:n1, c0:c1],
                                                      stride, padding), C, col[:nt].size)
        col_g = col[:nt].reshape(nt, G, Cg * K * K, Ho * Wg)           # free: contiguous
        # (G, Co/G, CgKK) @ (nt, G, CgKK, HoWg) -> (nt, G, Co/G, HoWg), into out (or grid)
        dst = grid[:nt] if ph else out[n0:n1]
        np.matmul(w_g, col_g, out=dst.reshape(nt, G, Co // G, Ho * Wg))
        if ph:
            out[n0:n1] = grid[:nt, :, :, :Wo]                          # drop the extra columns
    if b is not None:
        out += b.reshape(1, Co, 1, 1)
    cache = (x, w, b is not None, stride, padding, groups)
    return out, cache


def conv2d_backward(dout, cache):
    """Backward of :func:`conv2d_forward`.

    dout: (N, Co, Ho, Wo)  ->  dx (N, C, H, W), dw (Co, C/G, K, K), db (Co,) or None

    Per batch tile, with the tile's columns rebuilt::

        dw[g].T   += sum_n col[n, g] @ dout[n, g].T     (CgKK, HoWo) @ (HoWo, Co/G)
        dcol[n, g] = w[g].T @ dout[n, g]                (CgKK, Co/G) @ (Co/G, HoWo)
        dx[n]      = col2im(dcol[n])

    The transposes are BLAS flags, not copies. Strided convolutions work on the Ho x Wq
    grid of the forward pass, with dout copied onto it and zero in the extra columns.
    """
    x, w, has_bias, stride, padding, G = cache
    N, C, H, W = x.shape
    Co, Cg, K, _ = w.shape
    Ho, Wo = dout.shape[-2:]
    w_g = w.reshape(G, Co // G, Cg * K * K)
    dx = np.empty(x.shape, dtype=dout.dtype)
    dwT = np.zeros((G, Cg * K * K, Co // G), dtype=dout.dtype)     # dw transposed, see below
    ph = _StridePhases(H, W, K, stride, padding) if stride > 1 else None
    Wg = ph.Wq if ph else Wo                                       # column grid width
    Nt, tiles = _conv_tiles(N, C, K, Ho, Wg, x.itemsize)
    if ph:
        col = np.empty((Nt, C, K, K, Ho * Wg), dtype=x.dtype)
        dgrid = np.zeros((Nt, Co, Ho, Wg), dtype=dout.dtype)       # extra columns stay 0
    else:
        col = _column_buffer((Nt, C, K, K, Ho, Wo), x.dtype, stride, padding)
    dcol = np.empty_like(col)
    for n0, n1 in tiles:
        nt = n1 - n0
        if ph:
            _by_channels(lambda c0, c1: ph.fill(col[:nt, c0:c1], x[n0:n1, c0:c1]),
                         C, col[:nt].size)
            dgrid[:nt, :, :, :Wo] = dout[n0:n1]
            dout_g = dgrid[:nt].reshape(nt, G, Co // G, Ho * Wg)
        else:
            _by_channels(lambda c0, c1: _fill_columns(col[:nt, c0:c1], x[n0:n1, c0:c1],
                                                      stride, padding), C, col[:nt].size)
            dout_g = dout[n0:n1].reshape(nt, G, Co // G, Ho * Wo)
        col_g = col[:nt].reshape(nt, G, Cg * K * K, Ho * Wg)
        # (nt, G, CgKK, HoWo) @ (nt, G, HoWo, Co/G): this orientation runs ~20 % faster in
        # OpenBLAS than dout @ col.T (the long HoWo axis is the reduction of both)
        dwT += np.matmul(col_g, dout_g.transpose(0, 1, 3, 2)).sum(axis=0)
        np.matmul(w_g.transpose(0, 2, 1), dout_g,                          # (nt, G, CgKK, HoWg)
                  out=dcol[:nt].reshape(nt, G, Cg * K * K, Ho * Wg))
        if ph:
            _by_channels(lambda c0, c1: ph.col2im(dx[n0:n1, c0:c1], dcol[:nt, c0:c1]),
                         C, col[:nt].size)
        else:
            _by_channels(lambda c0, c1: _col2im_scratch(dx[n0:n1, c0:c1], dcol[:nt, c0:c1],
                                                        stride, padding), C, col[:nt].size)
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    dw = dwT.transpose(0, 2, 1).reshape(w.shape)                       # a small copy
    return dx, dw, db


def conv2d_forward_naive(x, w, b=None, stride=1, padding=0, groups=1):
    """Readable loop definition of :func:`conv2d_forward` (same signature and result)::

        out[n, o, i, j] = b[o] + sum_{c in group(o), p, q}
                          w[o, c - c0(o), p, q] * xpad[n, c, i*stride + p, j*stride + q]
    """
    _check_conv_args(x, w, groups)
    N, C, H, W = x.shape
    Co, Cg, K, _ = w.shape
    Ho = conv_output_size(H, K, stride, padding)
    Wo = conv_output_size(W, K, stride, padding)
    xp = pad2d(x, padding)
    out = np.zeros((N, Co, Ho, Wo), dtype=x.dtype)
    Cog = Co // groups
    for n in range(N):
        for o in range(Co):
            c0 = (o // Cog) * Cg              # first input channel of this output's group
            for i in range(Ho):
                for j in range(Wo):
                    patch = xp[n, c0:c0 + Cg, i * stride:i * stride + K, j * stride:j * stride + K]
                    out[n, o, i, j] = np.sum(patch * w[o])
            if b is not None:
                out[n, o] += b[o]
    cache = (x, w, b is not None, stride, padding, groups)
    return out, cache


def conv2d_backward_naive(dout, cache):
    """Readable loop definition of :func:`conv2d_backward`."""
    x, w, has_bias, stride, padding, groups = cache
    N, C, H, W = x.shape
    Co, Cg, K, _ = w.shape
    Ho, Wo = dout.shape[-2:]
    xp = pad2d(x, padding)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    Cog = Co // groups
    for n in range(N):
        for o in range(Co):
            c0 = (o // Cog) * Cg
            for i in range(Ho):
                for j in range(Wo):
                    hs, ws = i * stride, j * stride
                    dw[o] += dout[n, o, i, j] * xp[n, c0:c0 + Cg, hs:hs + K, ws:ws + K]
                    dxp[n, c0:c0 + Cg, hs:hs + K, ws:ws + K] += dout[n, o, i, j] * w[o]
    dx = dxp[:, :, padding:padding + H, padding:padding + W]
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db


# ----------------------------------------------------------------------------------------
# depthwise convolution: one K x K filter per channel (groups == C == Co)
# ----------------------------------------------------------------------------------------

def _check_depthwise_args(x, w):
    if x.ndim != 4:
        raise ValueError(f"depthwise_conv2d: expected input (N, C, H, W), got shape {x.shape}")
    if w.ndim != 4 or w.shape[1] != 1 or w.shape[2] != w.shape[3]:
        raise ValueError(f"depthwise_conv2d: expected weight (C, 1, K, K), got {w.shape}")
    if w.shape[0] != x.shape[1]:
        raise ValueError(
            f"depthwise_conv2d: weight {w.shape} expects {w.shape[0]} channels, got input {x.shape}"
        )


def _depthwise_budget(x_bytes, size):
    """(threads, bytes per tile) of a depthwise call touching ``size`` values: TILE_BYTES,
    and on threads at most x_bytes / threads, so that all threads' tile buffers together
    stay below the size of x (one activation)."""
    threads = threads_for(size)
    budget = tiling.TILE_BYTES
    if threads > 1:
        budget = min(budget, x_bytes // threads)
    return threads, budget


class _Layout:
    """How the depthwise kernels lay out one tile: ``ct`` channels x ``nt`` samples.

    Every pass of the kernel must be one long contiguous loop, so a tile keeps each
    channel's nt images back to back in one flat row, ``grid`` values per image, and
    kernel offset (i, j) reads a *flat shift* of that row. The output is computed on the
    same grid, with a few positions per image that are not outputs (they read across an
    image edge into zero padding) and are dropped. Two layouts:

    - :class:`_Pitched`, stride 1 with "same" padding (K = 2*padding + 1): each image
      row followed by ``padding`` zeros and each image by ``padding`` zero rows, so the
      padding between neighbours is shared and no tap needs a correction.
    - :class:`_Phases`, any stride and padding: the padded image split into its
      stride x stride phases.
    """

    def tiles(self, itemsize, in_buffers, grid_buffers, size):
        """Samples per tile, channels per tile and the (n0, n1, c0, c1) tiles, such that
        ``in_buffers`` input-layout and ``grid_buffers`` output-grid buffers of one tile
        fit in TILE_BYTES. Whole batches first (the longest loops), then channels.

        ``size`` (values the call touches) decides the threads (:func:`.tiling.threads_for`).
        On threads, all threads' buffers together stay below the size of x (one
        activation). A call too small for threads runs as few tiles as TILE_BYTES allows:
        each tile costs a few dozen NumPy calls, which dominate on small maps."""
        per_image = itemsize * (in_buffers * self.in_size + grid_buffers * self.grid)
        threads, budget = _depthwise_budget(itemsize * self.N * self.C * self.in_size, size)
        nt = split_rows(self.N, per_image, budget)
        ct = split_rows(self.C, per_image * nt, budget, balance=threads > 1 and nt == self.N)
        return nt, ct, [(n0, min(self.N, n0 + nt), c0, min(self.C, c0 + ct))
                        for n0 in range(0, self.N, nt) for c0 in range(0, self.C, ct)]

    def grid_buffer(self, name, nt, ct, dtype, zero=True):
        """Output-grid buffer (ct, nt*grid), zeroed. Tiles overwrite only real outputs,
        so the other positions stay zero (what the backward pass needs of dout)."""
        return scratch(name, (ct, nt * self.grid), dtype, zero=zero)

    def windows(self, buf, nt, ct):
        """The K*K flat-shifted views (ct, nt*grid) of an input buffer, in the order of
        ``w.reshape(C, K*K)``."""
        return [self.window(buf, i, j, nt, ct) for i in range(self.K) for j in range(self.K)]


class _Pitched(_Layout):
    """Stride 1, K = 2p + 1, padding p. Each image is stored with a row *pitch* of
    W + p (every row followed by p zeros) and H + p rows (the last p all zero); one
    channel's row of the input buffer is::

        [lead zeros] [image 0: (H + p) x (W + p)] [image 1] ... [image nt-1] [lead zeros]

    with lead = p*(W + p) + p. Output pixel (n, ho, wo) sits at grid position
    ``q = n*S + ho*(W + p) + wo`` (S = (H + p)(W + p)) and its tap (i, j) reads input
    position ``q + i*(W + p) + j``, i.e. image pixel (ho + i - p, wo + j - p). A tap
    that runs off the left edge of a row lands in the p zeros ending the row above, one
    that runs off the right edge in the zeros ending its own row, and one above or below
    the image in zero rows: every window is a plain flat shift (offset ``i*(W+p) + j``)
    and reads exactly the zero padding a padded image would give. The grid positions in
    the p extra columns and rows are not outputs: (H + p)(W + p)/(H*W) - 1 extra work,
    15 % at 14 x 14 with K = 3.
    """

    def __init__(self, x_shape, K, padding):
        self.N, self.C, self.H, self.W = x_shape
        self.K, self.p, self.Ho, self.Wo = K, padding, self.H, self.W
        self.pitch = self.W + padding
        self.grid = (self.H + padding) * self.pitch               # S, per image
        self.lead = padding * self.pitch + padding
        self.in_size = self.grid                                   # per image, + a tail
        self.covers_input = True                  # every input pixel is read by some tap

    def in_buffer(self, name, nt, ct, dtype):
        """Zeroed buffer (ct, nt*S + 2*lead). Tiles overwrite only image pixels, so the
        padding written here stays zero for every tile."""
        return scratch(name, (ct, nt * self.grid + 2 * self.lead), dtype, zero=True)

    def _images(self, buf, nt, ct, start):
        """(ct, nt, H, W) view of the images in a buffer whose first image is at ``start``."""
        rows = buf[:ct, start:start + nt * self.grid].reshape(ct, nt, self.H + self.p, self.pitch)
        return rows[:, :, :self.H, :self.W]

    def scatter(self, buf, x, nt, ct):
        """Copy an input tile x (nt, ct, H, W) in: one copy per image row."""
        self._images(buf, nt, ct, self.lead)[...] = x.transpose(1, 0, 2, 3)

    def window(self, buf, i, j, nt, ct):
        off = i * self.pitch + j
        return buf[:ct, off:off + nt * self.grid]

    def on_grid(self, buf, nt, ct):
        """The output grid (ct, nt*S) of an input-layout buffer: a tensor of the output's
        shape scattered into the input layout sits on the output grid shifted by lead,
        with zeros at every position that is not an output."""
        return buf[:ct, self.lead:self.lead + nt * self.grid]

    def outputs(self, grid, nt, ct):
        """The real outputs (nt, ct, H, W) of an output-grid buffer (ct, nt*S)."""
        return self._images(grid, nt, ct, 0).transpose(1, 0, 2, 3)


class _Phases(_Layout, _PhaseGeometry):
    """Any stride s and padding. The zero-padded input is split into its ``s x s`` phases
    (:class:`_PhaseGeometry`); phase (a, b) of the tile is one (ct, nt*Lq) row per channel
    (Lq = Hq*Wq), images back to back, and kernel offset (i, j) reads the flat shift
    ``shift(i, j)`` of phase ``(i % s, j % s)``. Of each Lq-block of the grid only Ho x Wo
    positions are outputs (the Wq - Wo right columns and Hq - Ho bottom rows read across
    an edge). Stride-2 loads never happen: each phase is contiguous.
    """

    def __init__(self, x_shape, K, stride, padding):
        N, C, H, W = x_shape
        _PhaseGeometry.__init__(self, H, W, K, stride, padding)
        self.N, self.C = N, C
        self.grid = self.Hq * self.Wq              # Lq: one image of one phase, flat
        self.slack = self.reach * self.Wq + self.reach   # the last image's windows overrun
        self.in_size = self.P * self.P * self.grid

    def in_buffer(self, name, nt, ct, dtype):
        """Zeroed phase buffer (P, P, ct, nt*Lq + slack). Tiles overwrite only in-image
        pixels, so the zero padding written here stays valid for every tile."""
        return scratch(name, (self.P, self.P, ct, nt * self.grid + self.slack), dtype, zero=True)

    def _image(self, flat, nt, ct):
        return flat[:ct, :nt * self.grid].reshape(ct, nt, self.Hq, self.Wq)

    def scatter(self, xq, x, nt, ct):
        """Fill the phases from an input tile x (nt, ct, H, W)."""
        xt = x.transpose(1, 0, 2, 3)                                     # (ct, nt, H, W) view
        for a, (pr, xr) in enumerate(self.rows):
            for b, (pc, xc) in enumerate(self.cols):
                self._image(xq[a, b], nt, ct)[:, :, pr, pc] = xt[:, :, xr, xc]

    def gather(self, dx, dxq, nt, ct):
        """Inverse of :meth:`scatter`; the gradient that fell on padding is dropped."""
        dxt = dx.transpose(1, 0, 2, 3)
        for a, (pr, xr) in enumerate(self.rows):
            for b, (pc, xc) in enumerate(self.cols):
                dxt[:, :, xr, xc] = self._image(dxq[a, b], nt, ct)[:, :, pr, pc]

    def window(self, xq, i, j, nt, ct):
        s, off = self.s, self.shift(i, j)
        return xq[i % s, j % s, :ct, off:off + nt * self.grid]

    def outputs(self, grid, nt, ct):
        """The real outputs (nt, ct, Ho, Wo) of an output-grid buffer (ct, nt*Lq)."""
        return self._image(grid, nt, ct)[:, :, :self.Ho, :self.Wo].transpose(1, 0, 2, 3)


def _layout(x_shape, K, stride, padding):
    if _is_same(K, stride, padding):
        return _Pitched(x_shape, K, padding)
    return _Phases(x_shape, K, stride, padding)


def _correlate(acc, tmp, windows, weights):
    """``acc = sum_o weights[o] * windows[o]``, two passes per tap (a product into
    ``tmp``, an in-place add); the first tap writes ``acc`` directly.
    windows: K*K arrays (k, L); weights: (K*K, k, 1); acc, tmp: (k, L)."""
    for o, win in enumerate(windows):
        if o == 0:
            np.multiply(win, weights[0], out=acc)
        else:
            np.multiply(win, weights[o], out=tmp)
            acc += tmp


# Depthwise convolutions on maps at most BANDED_WIDTH * K pixels wide run as banded
# matrix products (:class:`_Banded`), wider ones as K*K multiply-adds on the
# :class:`_Pitched` or :class:`_Phases` layout. A banded product spends about W/K times
# the multiply-adds (in BLAS) to save 2*K*K NumPy passes over memory. Measured on 2
# cores, fwd + bwd time banded / multiply-adds: 3x3 stride 1 at 3, 6, 12, 14, 16 px
# 0.57-0.89, at 20 and 24 px 1.14 and 1.34; 5x5 stride 1 at 7, 14, 28 px 0.41-0.71, at
# 56 px 1.53; stride 2: 3x3 at 7, 12, 14 px 0.83-0.88 (at 6 px 1.15), 5x5 at 10, 24,
# 28 px 0.72-0.78.
BANDED_WIDTH = 6


def _is_banded(x_shape, K, stride, padding):
    return K > 1 and x_shape[3] <= BANDED_WIDTH * K


class _Banded:
    """Depthwise convolution of narrow maps as matrix products, any stride s and padding p.

    One kernel row ``w[c, 0, i, :]`` applied along every image row, with stride s, is a
    product with a banded W x Wo matrix ``T_i[win, wo] = w[c, 0, i, win - s*wo + p]``
    (zero off the band, which also plays the horizontal zero padding). A tile's images of
    channel c are stacked vertically, S rows apart (S >= H + p, a multiple of s, the rows
    past H zero), after p zero rows::

        X: (rows, W)         image n, row h at X row p + n*S + h

    Output row r = n*(S/s) + ho reads X rows s*r + i for i = 0..K-1, that is image row
    s*ho + i - p, or a zero row where that is padding. With ``X_i = X[i::s]`` (a strided
    view, no copy) the output grid is ``sum_i X_i @ T_i``: one batched matmul over a tile
    of channels and the K kernel rows, and a sum (at stride 1 the products are taken once
    on all rows, ``X @ T_i``, and added with a shift of i rows). The S/s - Ho grid rows per
    image that are not outputs are dropped. Backward: ``dw[i, j]`` sums ``G_i = D^T @ X_i``
    along the entries (wo, s*wo + j - p); dx is, at stride 1 with "same" padding, the same
    correlation run on dout with the kernel flipped, otherwise ``D @ T_i^T`` added back
    onto rows i::s.
    """

    def __init__(self, x_shape, K, stride, padding):
        self.N, self.C, self.H, self.W = x_shape
        self.K, self.s, self.p = K, stride, padding
        self.same = _is_same(K, stride, padding)
        self.Ho = conv_output_size(self.H, K, stride, padding)
        self.Wo = conv_output_size(self.W, K, stride, padding)
        self.Lo = max(-(-(self.H + padding) // stride), self.Ho)   # grid rows per image
        self.S = stride * self.Lo                                  # X rows per image
        self.L = self.N * self.Lo                                  # output grid rows
        # the last image's reads end at row s*(L - 1) + K - 1 (+ p with the lead rows)
        self.rows = max(padding + self.N * self.S, stride * (self.L - 1) + K)
        # rows of the K products: all stacked rows at stride 1 "same", the grid otherwise
        self.R_rows = self.rows if self.same else self.L

    def tiles(self, itemsize, stacks, size):
        """Channels per tile and the (c0, c1) tiles (all samples in each): ``stacks``
        stacked buffers, the K row products and the grid of a tile fit in TILE_BYTES."""
        per_channel = itemsize * (stacks * self.rows * self.W + self.L * self.Wo + self.K * (
            self.R_rows * max(self.W, self.Wo) + self.W * self.Wo))
        threads, budget = _depthwise_budget(itemsize * self.N * self.C * self.H * self.W, size)
        ct = split_rows(self.C, per_channel, budget, balance=threads > 1)
        return ct, [(c0, min(self.C, c0 + ct)) for c0 in range(0, self.C, ct)]

    def stacked(self, name, ct, dtype, zero=True):
        """(ct, rows, W) buffer for stacked images; zeroed, and tiles overwrite only image
        rows, so the zero rows stay zero for every tile."""
        return scratch(name, (ct, self.rows, self.W), dtype, zero=zero)

    def images(self, xs, k):
        """(N, k, H, W) view of the images of a stacked buffer xs (k, rows, W)."""
        v = xs[:k, self.p:self.p + self.N * self.S].reshape(k, self.N, self.S, self.W)
        return v[:, :, :self.H].transpose(1, 0, 2, 3)

    def grid_outputs(self, grid, k):
        """(N, k, Ho, Wo) view of the outputs of an output grid (k, L, Wo)."""
        v = grid[:k].reshape(k, self.N, self.Lo, self.Wo)[:, :, :self.Ho]
        return v.transpose(1, 0, 2, 3)

    def row_views(self, xs):
        """X_i = X[i::s] for every kernel row i: a (k, K, L, W) view of xs (k, rows, W)."""
        st = xs.strides
        return np.lib.stride_tricks.as_strided(
            xs, (xs.shape[0], self.K, self.L, self.W), (st[0], st[1], self.s * st[1], st[2]),
            writeable=False)

    def tap_columns(self, j):
        """(win, wo): the output columns wo whose kernel column j reads an image column,
        and that column win = s*wo + j - p."""
        wo = np.arange(self.Wo)
        win = self.s * wo + j - self.p
        inside = (win >= 0) & (win < self.W)
        return win[inside], wo[inside]

    def band(self, wk):
        """The banded matrices T (k, K, W, Wo) of kernels wk (k, K, K)."""
        T = np.zeros((wk.shape[0], self.K, self.W, self.Wo), dtype=wk.dtype)
        for j in range(self.K):
            win, wo = self.tap_columns(j)
            T[:, :, win, wo] = wk[:, :, j, None]
        return T

    def correlate(self, grid, xs, wk, R):
        """grid (k, L, Wo) = the convolution of the stacked tile xs (k, rows, W) with
        kernels wk (k, K, K) on the output grid; R (k, K, R_rows, Wo) is scratch."""
        T = self.band(wk)
        if not self.same:
            np.matmul(self.row_views(xs), T, out=R)         # R[:, i] = X_i @ T_i
            np.sum(R, axis=1, out=grid)
            return
        # stride 1: one product over all rows, then K shifted adds (measured 0.8-0.9x the
        # time of K strided-view products and a sum at 14 x 14)
        np.matmul(xs[:, None], T, out=R)                     # R[:, i] = X @ T_i, all rows
        L = self.L
        np.add(R[:, 0, :L], R[:, 1, 1:1 + L], out=grid)
        for i in range(2, self.K):
            grid += R[:, i, i:i + L]

    def weight_grad(self, d, xs, G):
        """dw (k, K, K) from dout on the grid d (k, L, Wo) and the stacked input xs:
        ``G_i = D^T @ X_i`` (k, K, Wo, W), tap j summed over the entries (wo, s*wo + j - p)."""
        np.matmul(d.transpose(0, 2, 1)[:, None], self.row_views(xs), out=G)
        dw = np.empty(G.shape[:2] + (self.K,), dtype=G.dtype)
        for j in range(self.K):
            win, wo = self.tap_columns(j)
            dw[:, :, j] = G[:, :, wo, win].sum(axis=-1)
        return dw


def _banded_forward(x, w, stride, padding, size):
    g = _Banded(x.shape, w.shape[2], stride, padding)
    out = np.empty((g.N, g.C, g.Ho, g.Wo), dtype=x.dtype)
    wk = w[:, 0]
    ct, tiles = g.tiles(x.itemsize, 1, size)

    def work(chunk):
        xs = g.stacked("dwb_x", ct, x.dtype)
        R = scratch("dwb_r", (ct, g.K, g.R_rows, g.Wo), x.dtype)
        grid = scratch("dwb_o", (ct, g.L, g.Wo), x.dtype)
        for c0, c1 in chunk:
            k = c1 - c0
            g.images(xs, k)[...] = x[:, c0:c1]
            g.correlate(grid[:k], xs[:k], wk[c0:c1], R[:k])
            out[:, c0:c1] = g.grid_outputs(grid, k)

    run_tiles(work, tiles, size=size)
    return out


def _banded_backward(dout, x, w, stride, padding, size):
    g = _Banded(x.shape, w.shape[2], stride, padding)
    dx = np.empty(x.shape, dtype=dout.dtype)
    dw = np.empty((g.C, g.K, g.K), dtype=dout.dtype)
    wk = w[:, 0]
    flipped = wk[:, ::-1, ::-1]                   # stride 1, "same": dx = dout * flip
    ct, tiles = g.tiles(x.itemsize, 2, size)

    def work(chunk):
        xs = g.stacked("dwb_x", ct, x.dtype)
        R = scratch("dwb_r", (ct, g.K, g.R_rows, g.W), dout.dtype)
        grid = scratch("dwb_o", (ct, g.L, g.Wo), dout.dtype, zero=not g.same)
        G = scratch("dwb_g", (ct, g.K, g.Wo, g.W), dout.dtype)
        # dout: stacked like an input at stride 1 "same" (its grid rows are then the
        # stacked rows from p on), else on the grid; zero wherever it is not an output
        ds = g.stacked("dwb_d", ct, dout.dtype, zero=True)
        for c0, c1 in chunk:
            k = c1 - c0
            g.images(xs, k)[...] = x[:, c0:c1]
            if g.same:
                g.images(ds, k)[...] = dout[:, c0:c1]
                d = ds[:k, g.p:g.p + g.L]
            else:
                g.grid_outputs(grid, k)[...] = dout[:, c0:c1]
                d = grid[:k]
            dw[c0:c1] = g.weight_grad(d, xs[:k], G[:k])
            if g.same:
                g.correlate(grid[:k], ds[:k], flipped[c0:c1], R[:k])
                dx[:, c0:c1] = g.grid_outputs(grid, k)
                continue
            # D @ T_i^T lands on rows i::s of the stacked input
            np.matmul(d[:, None], g.band(wk[c0:c1]).transpose(0, 1, 3, 2), out=R[:k])
            ds[:k] = 0
            for i in range(g.K):
                ds[:k, i:i + g.s * (g.L - 1) + 1:g.s] += R[:k, i]
            dx[:, c0:c1] = g.images(ds, k)

    run_tiles(work, tiles, size=size)
    return dx, dw.reshape(g.C, 1, g.K, g.K)


def depthwise_conv2d_forward(x, w, b=None, stride=1, padding=0):
    """Depthwise convolution as K*K strided multiply-accumulates (or, on narrow maps,
    banded matrix products).

    x: (N, C, H, W)   w: (C, 1, K, K)   b: (C,) or None   ->   out: (N, C, Ho, Wo)

    Each channel is convolved with its own K x K filter::

        out = sum_{i, j} w[:, 0, i, j] * xpad[:, :, i::stride, j::stride]

    No patch matrix is built: im2col would make a K*K-times larger copy of the input for
    an operation that does only K*K multiply-adds per output value. The operation is
    memory-bound, so it runs on tiles of a few channels x samples (about TILE_BYTES of
    buffers, see :mod:`.tiling`): all K*K passes over a tile happen while it is in cache,
    accumulating in place, and tiles run on parallel threads. Inside a tile each pass is
    one contiguous loop per channel over a flat-shifted window (see :class:`_Layout`).
    Stride-1 "same" convolutions of maps at most ``BANDED_WIDTH * K`` pixels wide run as
    banded matrix products instead (:class:`_Banded`). The only full-size allocation
    is ``out``.
    """
    _check_depthwise_args(x, w)
    C, K = x.shape[1], w.shape[2]
    cache = (x, w, b is not None, stride, padding)         # x by reference: no copy
    if _is_banded(x.shape, K, stride, padding):
        out = _banded_forward(x, w, stride, padding, x.size * K * K)
        if b is not None:
            out += b.reshape(1, C, 1, 1)
        return out, cache
    g = _layout(x.shape, K, stride, padding)
    wk = w.reshape(C, K * K)
    out = np.empty((g.N, C, g.Ho, g.Wo), dtype=x.dtype)
    size = out.size * K * K
    nt, ct, tiles = g.tiles(x.itemsize, 1, 2, size)        # input; accumulator, product

    def work(chunk):
        xq = g.in_buffer("dw_x", nt, ct, x.dtype)
        acc = g.grid_buffer("dw_acc", nt, ct, x.dtype, zero=False)   # written by tap 0
        tmp = g.grid_buffer("dw_tmp", nt, ct, x.dtype, zero=False)
        for n0, n1, c0, c1 in chunk:
            m, k = n1 - n0, c1 - c0
            g.scatter(xq, x[n0:n1, c0:c1], m, k)
            a, t = acc[:k, :m * g.grid], tmp[:k, :m * g.grid]
            _correlate(a, t, g.windows(xq, m, k), wk[c0:c1].T[:, :, None])
            out[n0:n1, c0:c1] = g.outputs(acc, m, k)       # (m, k, Ho, Wo)

    run_tiles(work, tiles, size=size)
    if b is not None:
        out += b.reshape(1, C, 1, 1)
    return out, cache


def depthwise_conv2d_backward(dout, cache):
    """Backward of :func:`depthwise_conv2d_forward`.

    dout: (N, C, Ho, Wo) -> dx (N, C, H, W), dw (C, 1, K, K), db (C,) or None

        dw[c, 0, i, j] = sum_{n, ho, wo} dout[n, c, ho, wo] * xpad[n, c, i + s*ho, j + s*wo]
        dxpad[:, :, i::s, j::s] += w[:, 0, i, j] * dout

    Same tiles and layout as the forward pass: x is laid out again per tile (cheaper than
    caching a padded copy) and dout is placed on the output grid with zeros at the
    positions that are not outputs, so they contribute nothing. dw is one row-wise dot
    product per tap (no product array). dx:

    - stride 1, "same" padding: dx is itself a correlation of dout with the kernel
      flipped (``dx = sum_{i,j} w[:, 0, K-1-i, K-1-j] * doutpad[:, :, i:, j:]``), so dout
      is laid out like an input and the forward loop runs again;
    - otherwise each tap adds its share into the input layout (the scatter-add above),
      which is then copied out.
    """
    x, w, has_bias, stride, padding = cache
    C, K = x.shape[1], w.shape[2]
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    if _is_banded(x.shape, K, stride, padding):
        return (*_banded_backward(dout, x, w, stride, padding, dout.size * K * K), db)
    g = _layout(x.shape, K, stride, padding)
    wk = w.reshape(C, K * K)
    # pixels no window reaches (if any) keep a zero gradient
    dx = (np.empty if g.covers_input else np.zeros)(x.shape, dtype=dout.dtype)
    size = dout.size * K * K
    nt, ct, tiles = g.tiles(x.itemsize, 2, 2, size)  # x and dout/dx in input layout; acc, tmp
    dw_tiles = np.zeros((len(range(0, g.N, nt)), C, K * K), dtype=dout.dtype)
    flipped = isinstance(g, _Pitched)

    def work(chunk):
        xq = g.in_buffer("dw_x", nt, ct, x.dtype)
        if flipped:
            dq = g.in_buffer("dw_d", nt, ct, dout.dtype)       # dout in the input layout
            acc = g.grid_buffer("dw_acc", nt, ct, dout.dtype, zero=False)
        else:
            dq = scratch("dw_dx", xq.shape, dout.dtype)        # dx, zeroed per tile
            acc = g.grid_buffer("dw_acc", nt, ct, dout.dtype)  # dout, zero off-output
        tmp = g.grid_buffer("dw_tmp", nt, ct, dout.dtype, zero=False)
        for n0, n1, c0, c1 in chunk:
            m, k = n1 - n0, c1 - c0
            g.scatter(xq, x[n0:n1, c0:c1], m, k)
            a, t = acc[:k, :m * g.grid], tmp[:k, :m * g.grid]
            wts = wk[c0:c1].T[:, :, None]                  # (K*K, k, 1)
            if flipped:
                g.scatter(dq, dout[n0:n1, c0:c1], m, k)
                d = g.on_grid(dq, m, k)                    # (k, m*grid)
            else:
                g.outputs(acc, m, k)[...] = dout[n0:n1, c0:c1]
                d = a
            for o, win in enumerate(g.windows(xq, m, k)):
                dw_tiles[n0 // nt, c0:c1, o] = _rowdot(d, win)
            if flipped:
                _correlate(a, t, g.windows(dq, m, k), wts[::-1])
                dx[n0:n1, c0:c1] = g.outputs(acc, m, k)
            else:
                dq[..., :k, :] = 0
                for o, dwin in enumerate(g.windows(dq, m, k)):
                    np.multiply(d, wts[o], out=t)
                    dwin += t
                g.gather(dx[n0:n1, c0:c1], dq, m, k)

    run_tiles(work, tiles, size=size)
    dw = dw_tiles.sum(axis=0).reshape(C, 1, K, K)
    return dx, dw, db


def depthwise_conv2d_forward_naive(x, w, b=None, stride=1, padding=0):
    """Readable loop definition of :func:`depthwise_conv2d_forward`::

        out[n, c, i, j] = b[c] + sum_{p, q} w[c, 0, p, q] * xpad[n, c, i*stride + p, j*stride + q]
    """
    _check_depthwise_args(x, w)
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
    """Readable loop definition of :func:`depthwise_conv2d_backward`."""
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
# pointwise (1 x 1) convolution: a matrix product over channels
# ----------------------------------------------------------------------------------------

def _check_pointwise_args(x, w):
    if x.ndim != 4:
        raise ValueError(f"pointwise_conv2d: expected input (N, C, H, W), got shape {x.shape}")
    if w.ndim != 4 or w.shape[2:] != (1, 1) or w.shape[1] != x.shape[1]:
        raise ValueError(
            f"pointwise_conv2d: expected weight (Co, {x.shape[1]}, 1, 1) for input {x.shape}, "
            f"got {w.shape}"
        )


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
    _check_pointwise_args(x, w)
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


def pointwise_conv2d_forward_naive(x, w, b=None):
    """Readable loop definition of :func:`pointwise_conv2d_forward`::

        out[n, o, h, w] = b[o] + sum_c w[o, c, 0, 0] * x[n, c, h, w]
    """
    _check_pointwise_args(x, w)
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
    """Readable loop definition of :func:`pointwise_conv2d_backward`."""
    x, w, has_bias = cache
    N, C, H, W = x.shape
    Co = w.shape[0]
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    for n in range(N):
        for o in range(Co):
            for c in range(C):
                dw[o, c, 0, 0] += np.sum(dout[n, o] * x[n, c])
                dx[n, c] += dout[n, o] * w[o, c, 0, 0]
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db
