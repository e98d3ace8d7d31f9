"""Standard 2-D convolution (any ``groups``), forward and backward.

Notation (:mod:`.conv_geometry`)::

    N   batch size            C   input channels        Co  output channels
    H,W input height/width    K   kernel size (square)  G   groups
    Ho,Wo output height/width:  Ho = (H + 2*pad - K) // stride + 1

x is (N, C, H, W), the weight PyTorch's (Co, C // G, K, K). The readable definition comes
first: :func:`conv2d_forward_naive` and :func:`conv2d_backward_naive`, four loops around a
dot product. The fast :func:`conv2d_forward` / :func:`conv2d_backward` (same signatures,
same results to round-off; the tests compare them) turn it into matrix products with
im2col (:mod:`.im2col`). ``*_forward`` returns ``(out, cache)``, ``*_backward(dout, cache)``
returns ``(dx, dw, db)`` (``db`` is None without a bias).
"""

from __future__ import annotations

import numpy as np

from ._checks import (check_bias, check_dout, check_float_array, check_int, check_padding,
                      check_param)
from ._im2col_fast import StridedColumns, col2im_into, column_buffer, fill_columns
from .conv_geometry import conv_output_size, pad2d
from .tiling import num_threads, run_tiles, scratch, split_rows

__all__ = ["conv2d_forward", "conv2d_backward", "conv2d_forward_naive", "conv2d_backward_naive"]


def _check_conv_args(x, w, b, stride, padding, groups):
    """Check conv2d's arguments (see :mod:`._checks` for the dtype rule); returns
    ``(w, b)`` in x's dtype."""
    x = check_float_array("conv2d", "x", x)
    if x.ndim != 4:
        raise ValueError(f"conv2d: expected input (N, C, H, W), got shape {x.shape}")
    w = check_param("conv2d", "w", w, x.dtype)
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise ValueError(f"conv2d: expected square weight (Co, C/groups, K, K), got {w.shape}")
    check_int("conv2d", "stride", stride, 1)
    check_padding("conv2d", padding, "conv2d_same_forward")
    check_int("conv2d", "groups", groups, 1)
    C = x.shape[1]
    Co, Cg = w.shape[:2]
    if C % groups or Co % groups:
        raise ValueError(
            f"conv2d: groups={groups} must divide in_channels={C} and out_channels={Co}"
        )
    if Cg != C // groups:
        raise ValueError(
            f"conv2d: weight {w.shape} expects {Cg * groups} input channels "
            f"with groups={groups}, got input {x.shape}"
        )
    return w, None if b is None else check_bias("conv2d", b, Co, x.dtype)


def _check_conv_dout(fn, dout, cache):
    """dout of the forward that made ``cache``: its output's shape, in x's dtype."""
    x, w, _, stride, padding, _ = cache
    N, _, H, W = x.shape
    K = w.shape[2]
    shape = (N, w.shape[0], conv_output_size(H, K, stride, padding),
             conv_output_size(W, K, stride, padding))
    return check_dout(fn, dout, shape, x.dtype)


# ----------------------------------------------------------------------------------------
# the definition
# ----------------------------------------------------------------------------------------

def conv2d_forward_naive(x, w, b=None, stride=1, padding=0, groups=1):
    """Readable loop definition of :func:`conv2d_forward` (same signature and result)::

        out[n, o, i, j] = b[o] + sum_{c in group(o), p, q}
                          w[o, c - c0(o), p, q] * xpad[n, c, i*stride + p, j*stride + q]

    x: (N, C, H, W)   w: (Co, C // G, K, K)   b: (Co,) or None   ->   out: (N, Co, Ho, Wo)
    """
    w, b = _check_conv_args(x, w, b, stride, padding, groups)
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
    """Readable loop definition of :func:`conv2d_backward`: each output pixel hands its
    gradient back to the patch it read and to the weights it used::

        dw[o]                    += dout[n, o, i, j] * xpad[n, group(o), patch(i, j)]
        dxpad[n, group(o), patch] += dout[n, o, i, j] * w[o]

    dout: (N, Co, Ho, Wo) -> dx (N, C, H, W), dw (Co, C // G, K, K), db (Co,) or None
    """
    dout = _check_conv_dout("conv2d_backward_naive", dout, cache)
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
# the fast path: im2col and one matmul per batch tile
# ----------------------------------------------------------------------------------------

# Column buffer budget of one batch tile. The columns are K*K times larger than the input;
# building them for the whole batch would stream that copy through DRAM twice (write, then
# read by the matmul). A tile of a few samples keeps it in the last-level cache and is
# reused by the next tile; 4 MB is a fraction of a shared L3 (8 - 32 MB) and still gives
# the matmul thousands of columns.
COL_BYTES = 4 * 1024 * 1024


def _by_channels(fn, C, size):
    """Run ``fn(c0, c1)`` over channel ranges on the tile threads. im2col and col2im are
    pure copies and adds, which NumPy runs on one core; split by channels they write
    disjoint parts of their output, so the threads need no locks."""
    step = -(-C // num_threads())
    run_tiles(lambda chunk: [fn(c0, c1) for c0, c1 in chunk],
              [(c0, min(C, c0 + step)) for c0 in range(0, C, step)], size=size)


class _Columns:
    """The column buffer of one batch tile and how it is filled, for both layouts: the
    Ho x Wo grid of plain im2col (stride 1), or the Ho x Wgrid grid of the input's phases
    (stride > 1, Wgrid = Wo + (K-1)//stride; see :class:`._im2col_fast.StridedColumns`)."""

    def __init__(self, x, K, stride, padding, Ho, Wo):
        N, C, H, W = x.shape
        self.x, self.stride, self.padding = x, stride, padding
        self.phases = StridedColumns(H, W, K, stride, padding) if stride > 1 else None
        self.Wgrid = self.phases.Wq if self.phases else Wo
        self.rows = split_rows(N, C * K * K * Ho * self.Wgrid * x.itemsize, COL_BYTES)
        self.tiles = [(n0, min(N, n0 + self.rows)) for n0 in range(0, N, self.rows)]
        # scratch buffers (reused by the next call, see tiling.scratch): a fresh column
        # buffer per call is a few MB of new pages, which cost as much as the convolution
        # itself where the allocator returns them to the OS between calls
        if self.phases:
            self.col = scratch("conv_col", (self.rows, C, K, K, Ho * self.Wgrid), x.dtype)
        else:
            self.col = column_buffer((self.rows, C, K, K, Ho, Wo), x.dtype, stride, padding)

    def fill(self, n0, n1):
        """The columns of samples n0:n1: col[:nt] (nt, C, K, K, Ho, Wgrid)."""
        nt, C = n1 - n0, self.x.shape[1]
        col, x = self.col[:nt], self.x[n0:n1]
        if self.phases:
            _by_channels(lambda c0, c1: self.phases.fill(col[:, c0:c1], x[:, c0:c1]), C, col.size)
        else:
            _by_channels(lambda c0, c1: fill_columns(col[:, c0:c1], x[:, c0:c1], self.stride,
                                                     self.padding), C, col.size)
        return col

    def col2im(self, dx, dcol):
        """dx (nt, C, H, W) = col2im(dcol); dcol (nt, C, K, K, Ho, Wgrid) is overwritten."""
        C = dx.shape[1]
        if self.phases:
            _by_channels(lambda c0, c1: self.phases.col2im(dx[:, c0:c1], dcol[:, c0:c1]),
                         C, dcol.size)
        else:
            _by_channels(lambda c0, c1: col2im_into(dx[:, c0:c1], dcol[:, c0:c1], self.stride,
                                                    self.padding), C, dcol.size)


def conv2d_forward(x, w, b=None, stride=1, padding=0, groups=1):
    """Standard 2-D convolution (cross-correlation, as in PyTorch) with ``groups``.

    x: (N, C, H, W)   w: (Co, C // G, K, K)   b: (Co,) or None
    out: (N, Co, Ho, Wo)

    im2col turns the convolution into one (batched) matrix product::

        out[n, g] = w[g] @ col[n, g]      (Co/G, C/G*K*K) @ (C/G*K*K, Ho*Wo)

    The batch runs in tiles of a few samples (COL_BYTES of columns), written by the
    matmul straight into ``out``. The cache holds x and w by reference, not the columns:
    backward rebuilds each tile's columns, which is cheap next to the matmuls and saves
    holding a K*K-times larger array.
    Strided convolutions compute on an Ho x Wgrid grid; its Ho x Wo outputs are copied out.
    """
    w, b = _check_conv_args(x, w, b, stride, padding, groups)
    N, C, H, W = x.shape
    Co, Cg, K, _ = w.shape
    G = groups
    Ho = conv_output_size(H, K, stride, padding)
    Wo = conv_output_size(W, K, stride, padding)
    out = np.empty((N, Co, Ho, Wo), dtype=x.dtype)
    w_grouped = w.reshape(G, Co // G, Cg * K * K)
    cols = _Columns(x, K, stride, padding, Ho, Wo)
    Wgrid = cols.Wgrid
    if cols.phases:
        grid = scratch("conv_grid", (cols.rows, Co, Ho, Wgrid), x.dtype)  # matmul output
    for n0, n1 in cols.tiles:
        nt = n1 - n0
        col_g = cols.fill(n0, n1).reshape(nt, G, Cg * K * K, Ho * Wgrid)  # free: contiguous
        # (G, Co/G, CgKK) @ (nt, G, CgKK, Ho*Wgrid) -> (nt, G, Co/G, Ho*Wgrid), into out
        dst = grid[:nt] if cols.phases else out[n0:n1]
        np.matmul(w_grouped, col_g, out=dst.reshape(nt, G, Co // G, Ho * Wgrid))
        if cols.phases:
            out[n0:n1] = grid[:nt, :, :, :Wo]                            # drop the extra columns
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

    The transposes are BLAS flags, not copies. Strided convolutions work on the
    Ho x Wgrid grid of the forward pass, with dout copied onto it and zero in the extra
    columns.
    """
    dout = _check_conv_dout("conv2d_backward", dout, cache)
    x, w, has_bias, stride, padding, G = cache
    Co, Cg, K, _ = w.shape
    Ho, Wo = dout.shape[-2:]
    w_grouped = w.reshape(G, Co // G, Cg * K * K)
    dx = np.empty(x.shape, dtype=dout.dtype)
    dwT = np.zeros((G, Cg * K * K, Co // G), dtype=dout.dtype)     # dw transposed, see below
    cols = _Columns(x, K, stride, padding, Ho, Wo)
    Wgrid = cols.Wgrid
    if cols.phases:                                                # extra columns stay 0
        dgrid = scratch("conv_dgrid", (cols.rows, Co, Ho, Wgrid), dout.dtype, zero=True)
    dcol = scratch("conv_dcol", cols.col.shape, dout.dtype)
    for n0, n1 in cols.tiles:
        nt = n1 - n0
        col_g = cols.fill(n0, n1).reshape(nt, G, Cg * K * K, Ho * Wgrid)
        if cols.phases:
            dgrid[:nt, :, :, :Wo] = dout[n0:n1]
            dout_g = dgrid[:nt].reshape(nt, G, Co // G, Ho * Wgrid)
        else:
            dout_g = dout[n0:n1].reshape(nt, G, Co // G, Ho * Wo)
        # (nt, G, CgKK, HoWo) @ (nt, G, HoWo, Co/G): this orientation runs ~20 % faster in
        # OpenBLAS than dout @ col.T (the long HoWo axis is the reduction of both)
        dwT += np.matmul(col_g, dout_g.transpose(0, 1, 3, 2)).sum(axis=0)
        np.matmul(w_grouped.transpose(0, 2, 1), dout_g,                    # (nt, G, CgKK, HoWgrid)
                  out=dcol[:nt].reshape(nt, G, Cg * K * K, Ho * Wgrid))
        cols.col2im(dx[n0:n1], dcol[:nt])
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    dw = dwT.transpose(0, 2, 1).reshape(w.shape)                       # a small copy
    return dx, dw, db
