"""Depthwise convolution as K*K multiply-adds on cache-sized tiles (a student can skip
this file; :mod:`.depthwise` has the definition and says when this path runs).

The operation is memory-bound (K*K multiply-adds per value), so it runs on tiles of a few
channels x samples (about ``tiling.TILE_BYTES`` of buffers): all K*K passes over a tile
happen while it is in cache, accumulating in place, and tiles run on parallel threads.
Every pass must be one long contiguous loop, so a tile keeps each channel's images back to
back in one flat row, and kernel tap (i, j) reads a *flat shift* of that row
(:class:`DirectLayout`). Notation: see :mod:`.conv_geometry`.

Three ways to sum the taps over a tile: a product and an in-place add per tap
(:func:`_multiply_add`, any layout); for stride 1 "same" padding, one (K x K) @ (K x L')
product per channel in BLAS on K shifted copies of the tile, then its K rows summed, each
moved by its kernel row (:func:`_column_shifts`, :func:`_correlate`); in the phase
layout's forward pass, the K*K windows copied into columns and one (1 x K*K) @ (K*K x L)
product per channel (:func:`_tap_columns`). The last two make fewer passes over memory,
with BLAS's fused multiply-adds (from K = ``MATMUL_K`` on, on one thread).
"""

from __future__ import annotations

import numpy as np

from .conv_geometry import PhaseGeometry, conv_output_size, is_same_stride1
from .reductions import row_dots
from .tiling import run_tiles, scratch, split_rows, threads_for, tile_budget

__all__ = ["forward", "backward", "DirectLayout", "PitchedLayout", "PhaseLayout", "layout_for",
           "uses_matmul", "uses_columns"]


class DirectLayout:
    """How one tile of ``ct`` channels x ``nt`` samples is laid out: each channel's nt
    images back to back in one flat row, ``grid`` values per image. The output is computed
    on the same grid, with a few positions per image that are not outputs (they read
    across an image edge into zero padding) and are dropped. Two layouts:

    - :class:`PitchedLayout`, stride 1 with "same" padding (K = 2*padding + 1): each image
      row followed by ``padding`` zeros and each image by ``padding`` zero rows, so the
      padding between neighbours is shared and no tap needs a correction.
    - :class:`PhaseLayout`, any stride and padding: the padded image split into its
      stride x stride phases.
    """

    def tiles(self, itemsize, in_buffers, grid_buffers, size):
        """Samples per tile, channels per tile and the (n0, n1, c0, c1) tiles, such that
        ``in_buffers`` input-layout and ``grid_buffers`` output-grid buffers of one tile
        fit in the tile budget (:func:`.tiling.tile_budget`). Whole batches first (the
        longest loops), then channels. A call too small for threads runs as few tiles as
        the budget allows: each tile costs a few dozen NumPy calls."""
        per_image = itemsize * (in_buffers * self.in_size + grid_buffers * self.grid)
        threads, budget = tile_budget(itemsize * self.N * self.C * self.in_size, size)
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


class PitchedLayout(DirectLayout):
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

    The channels' rows are themselves stored back to back, ``nt*S`` values apart, each
    channel's trailing lead zeros being the next one's leading ones (the lead zeros are
    the p zero rows and p zero columns that end every image): the whole tile is one
    flat row, so that :func:`_column_shifts` can copy each column shift of a tile in one
    contiguous copy, not one per channel (see ``FLAT_SHIFTS``).
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
        """Zeroed buffer seen as (ct, nt*S + 2*lead), rows nt*S apart (they overlap by
        2*lead zeros, see above). Tiles overwrite only image pixels, so the padding
        written here stays zero for every tile."""
        row, span = nt * self.grid, nt * self.grid + 2 * self.lead
        flat = scratch(name, ((ct - 1) * row + span,), dtype, zero=True)
        return np.lib.stride_tricks.as_strided(flat, (ct, span),
                                               (row * flat.itemsize, flat.itemsize))

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


class PhaseLayout(DirectLayout, PhaseGeometry):
    """Any stride s and padding. The zero-padded input is split into its ``s x s`` phases
    (:class:`.conv_geometry.PhaseGeometry`); phase (a, b) of the tile is one (ct, nt*Lq)
    row per channel (Lq = Hq*Wq), images back to back, and kernel offset (i, j) reads the
    flat shift ``shift(i, j)`` of phase ``(i % s, j % s)``. Of each Lq-block of the grid
    only Ho x Wo positions are outputs (the Wq - Wo right columns and Hq - Ho bottom rows
    read across an edge). Stride-2 loads never happen: each phase is contiguous.
    """

    def __init__(self, x_shape, K, stride, padding):
        N, C, H, W = x_shape
        PhaseGeometry.__init__(self, H, W, K, stride, padding)
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


def layout_for(x_shape, K, stride, padding) -> DirectLayout:
    """:class:`PitchedLayout` for stride 1 "same" padding, else :class:`PhaseLayout`."""
    if is_same_stride1(K, stride, padding):
        return PitchedLayout(x_shape, K, padding)
    return PhaseLayout(x_shape, K, stride, padding)


def _multiply_add(acc, tmp, windows, weights):
    """``acc = sum_o weights[o] * windows[o]``, two passes per tap (a product into
    ``tmp``, an in-place add); the first tap writes ``acc`` directly.
    windows: K*K arrays (k, L); weights: (K*K, k, 1); acc, tmp: (k, L)."""
    for o, win in enumerate(windows):
        if o == 0:
            np.multiply(win, weights[0], out=acc)
        else:
            np.multiply(win, weights[o], out=tmp)
            acc += tmp


# From this kernel size on, stride 1 "same" padding runs the taps as a matrix product
# per channel in BLAS (:func:`_correlate`) instead of a product and an add per tap
# (:func:`_multiply_add`); measured below when it was still one matrix-vector product per
# kernel row. Memory traffic per output value then, K = 3 / 5: 24 / 52 array passes
# against 45 / 125. Measured at one thread, forward / backward time against the per-tap
# path: on EfficientNet-B0 shapes (batch 1 at 224 px, batch 8 at 96
# px) 5x5 0.35-0.66x / 0.50-0.75x on an Intel Xeon and an AMD EPYC (Zen 4); 3x3 0.8-1.2x /
# 0.9-1.3x there, but on an AMD EPYC of the next generation (Zen 5; each pair timed in
# turn, 40 rounds, medians of the ratios) 3x3 at batch 1 0.56-0.77x / 0.75-0.94x from
# 28x28 to 112x112 (0.84-0.98x / 0.96-1.05x with the caches flushed before each call),
# at batch 8 0.78-0.83x / 0.96-0.98x: so 3x3 too. Not for stride 2, whose phases hold only
# 1-3 taps a row (1.1-1.9x). Only for calls that run on one thread: tiles on two threads
# each calling a multithreaded BLAS oversubscribe the cores (5x5 at 24-28 px, batch 8-16,
# two threads, the time of the per-tap path: 1.05-1.14x; of the banded one: 1.4-1.7x).
MATMUL_K = 3


def _blas_taps(x_shape, K, stride, padding):
    """Are the taps of a call summed in BLAS (K >= MATMUL_K, on one thread)? The call
    runs on one thread when ``threads_for`` its size does, N*C*Ho*Wo*K*K (the size
    :func:`forward` and :func:`backward` pass to ``run_tiles``). (Judged by the input's
    size, stride-2 layers of 10-17M values at two threads ran their one-thread tiles
    on the per-tap path: EfficientNet-B0's 5x5 layer at 56x56, batch 1, took 1.18 ms
    instead of 0.60.)"""
    N, C, H, W = x_shape
    Ho, Wo = conv_output_size(H, K, stride, padding), conv_output_size(W, K, stride, padding)
    return K >= MATMUL_K and threads_for(N * C * Ho * Wo * K * K) == 1


def uses_matmul(x_shape, K, stride, padding):
    """Does a call take the BLAS product path (see MATMUL_K, :func:`_correlate`)?"""
    return is_same_stride1(K, stride, padding) and _blas_taps(x_shape, K, stride, padding)


# The phase layout (a stride, or padding other than "same") cannot use the K shifted
# copies: its taps lie in different phases. Its forward pass instead copies the K*K
# windows into the columns of one (k, K*K, L) buffer per tile (:func:`_tap_columns`) and
# sums them in one (1 x K*K) @ (K*K x L) product per channel: a copy per tap where the
# per-tap path makes a product and an add, and the product's broadcast weight is slow on
# the short rows of a phase (NumPy buffers a (k, 1) operand on rows under 8192 values:
# 0.17-0.22 ns a value against 0.06 for a plain copy). Measured on the Zen 5 EPYC, one
# thread, each pair timed in turn: stride 2 at batch 1, 28x28 to 112x112, 0.60-0.95x the
# time of the per-tap path (0.66-1.02x with cold caches), at batch 8 0.71-0.97x; inside
# a forward pass at 224 px, batch 1: EfficientNet-B0's 5x5 layer at 56x56 0.70x (1240 ->
# 865 us), MobileNetV2's 3x3 at 56x56 0.79x, the others 0.88-1.01x. Narrow maps keep the
# banded products (the columns: 1.07x at 14x14, 1.68x at batch 8).
def uses_columns(x_shape, K, stride, padding):
    """Does a forward pass take the tap-columns path (see above)?"""
    return not is_same_stride1(K, stride, padding) and _blas_taps(x_shape, K, stride, padding)


def _tap_columns(windows, buf):
    """The K*K windows (k, L) of a tile copied into the columns of a (k, K*K, L) view of
    ``buf``, in the order of ``w.reshape(C, K*K)``: one contiguous copy each."""
    k, L = windows[0].shape
    cols = buf[:k * len(windows) * L].reshape(k, len(windows), L)
    for o, win in enumerate(windows):
        cols[:, o] = win
    return cols


# Rows of at most this many values have their column shifts copied for the whole tile at
# once (see _column_shifts), longer ones channel by channel, which keeps each channel's K
# shifted rows together in memory. Measured at one thread, batch 1, each pair in turn in
# one process, forward / backward time against copies channel by channel: 7x7 and 14x14
# maps with 480-1152 channels 0.90-0.98x / 0.89-0.97x, 28x28 0.96-1.0x / 0.94-0.97x; but
# 56x56 and 112x112 maps 1.03-1.05x / 1.02-1.03x.
FLAT_SHIFTS = 1024


def _column_shifts(src, K, pitch, L, buf):
    """The K column shifts of a pitched buffer ``src`` (k, >= L + 2*lead), rows S values
    apart, as a read-only view (k, K, Lz), ``shifts[c, j, q] = src[c, j + q]``, Lz = L +
    (K-1)*pitch: every value kernel column j of channel c reads, for all K kernel rows.

    A shift straight out of ``src`` has rows one value apart, which BLAS cannot take, so
    the K shifts are first copied into ``buf``, one contiguous copy each. Short rows
    (L <= ``FLAT_SHIFTS``) are copied for the whole tile at once, read as one flat run
    from ``src[0, 0]``: ``rows[j, :] = flat[j:j + R]``, R = (k-1)*S + Lz, and channel c
    is the K x Lz matrix at offset c*S with rows R apart. Long ones channel by channel:
    ``rows[c, j, :] = src[c, j:j + Lz]``."""
    k, isz = src.shape[0], src.itemsize
    Lz = L + (K - 1) * pitch
    if L <= FLAT_SHIFTS:
        S = src.strides[0] // isz
        R = (k - 1) * S + Lz
        flat = np.lib.stride_tricks.as_strided(src, (R + K - 1,), (isz,), writeable=False)
        rows = buf[:K * R].reshape(K, R)
        for j in range(K):
            rows[j] = flat[j:j + R]
        strides = (S * isz, R * isz, isz)
    else:
        rows = buf[:k * K * Lz].reshape(k, K, Lz)
        for j in range(K):
            rows[:, j] = src[:, j:j + Lz]
        strides = rows.strides
    return np.lib.stride_tricks.as_strided(rows, (k, K, Lz), strides, writeable=False)


def _tap_grad(shifts, d, pitch, buf, out):
    """``out`` (k, K, K) = dw of a tile from the column shifts (k, K, Lz) of its input
    (:func:`_column_shifts`) and dout on its output grid d (k, L):
    ``dw[c, i, j] = sum_q d[c, q] * src[c, i*pitch + j + q]``. d is copied K times into
    the rows of ``buf`` (k, K, Lz), row i moved on by i*pitch (zeros around it), so that
    per channel it is one (K x Lz) @ (Lz x K) product with the shifts in BLAS. (One
    matrix-vector product per kernel row and channel took 1.04-1.6x the time at batch 1,
    one thread, most on the smallest maps: 1152 channels at 7x7.)"""
    k, K, Lz = shifts.shape
    L = d.shape[1]
    rows = buf[:k * K * Lz].reshape(k, K, Lz)
    for i in range(K):
        rows[:, i, :i * pitch] = 0
        rows[:, i, i * pitch:i * pitch + L] = d
        rows[:, i, i * pitch + L:] = 0
    np.matmul(rows, shifts.transpose(0, 2, 1), out=out)


def _correlate(acc, w3, shifts, pitch, prod_buf):
    """``acc (k, L) = sum_{i,j} w3[:, i, j] * src[:, i*pitch + j:][:L]`` from the column
    shifts (k, K, Lz) of src (:func:`_column_shifts`): per channel one (K x K) @ (K x Lz)
    product in BLAS (one pass with fused multiply-adds, all kernel columns summed), whose
    row i holds kernel row i's sum at every shift; then kernel row i's share of output q
    is that row at ``q + i*pitch``, and the K rows are summed.

    (Each kernel row as its own (1 x K) @ (K x L) product took K times the BLAS calls,
    each with a fixed cost: at one thread, batch 1, the correlation took 0.65x the time
    this way on 1152 channels at 7x7 (5x5 kernel), 0.81x on 672 at 14x14, 0.88-0.93x on
    28x28 to 112x112 maps.)"""
    k, K, Lz = shifts.shape
    L = acc.shape[1]
    prod = prod_buf[:k * K * Lz].reshape(k, K, Lz)
    # contiguous weights: np.matmul runs its own (2-3x slower) loops on a strided or
    # flipped operand instead of BLAS
    np.matmul(np.ascontiguousarray(w3), shifts, out=prod)
    # products channel first, (k, K, Lz): 0.96-1.0x the time of kernel row first (K, k,
    # Lz) from 7x7 to 112x112 maps (batch 1, one thread), and written by BLAS in place
    np.add(prod[:, 0, :L], prod[:, 1, pitch:pitch + L], out=acc)
    for i in range(2, K):
        acc += prod[:, i, i * pitch:i * pitch + L]


def _matmul_buffers(g, nt, ct, dtype):
    """Scratch for :func:`_column_shifts` and :func:`_correlate` of one tile."""
    span, K = nt * g.grid, g.K
    Lz = span + (K - 1) * g.pitch
    return (scratch("dw_rows", (K * (ct * (span + 2 * g.lead) + (K - 1) * g.pitch),), dtype),
            scratch("dw_prod", (ct * K * Lz,), dtype))


def forward(x, w, stride, padding):
    """out (N, C, Ho, Wo) of x (N, C, H, W) and w (C, 1, K, K), no bias."""
    C, K = x.shape[1], w.shape[2]
    g = layout_for(x.shape, K, stride, padding)
    wk = w.reshape(C, K * K)
    out = np.empty((g.N, C, g.Ho, g.Wo), dtype=x.dtype)
    size = out.size * K * K
    matmul = uses_matmul(x.shape, K, stride, padding)     # then g is a PitchedLayout
    columns = uses_columns(x.shape, K, stride, padding)   # then g is a PhaseLayout
    # input; accumulator and product, or accumulator, K column shifts and K products, or
    # accumulator and K*K columns
    grid_buffers = 1 + 2 * K if matmul else 1 + K * K if columns else 2
    nt, ct, tiles = g.tiles(x.itemsize, 1, grid_buffers, size)
    wcols = np.ascontiguousarray(w.reshape(C, 1, K * K)) if columns else None

    def work(chunk):
        xq = g.in_buffer("dw_x", nt, ct, x.dtype)
        acc = g.grid_buffer("dw_acc", nt, ct, x.dtype, zero=False)   # written by tap 0
        if matmul:
            rows, prod = _matmul_buffers(g, nt, ct, x.dtype)
        elif columns:
            buf = scratch("dw_cols", (ct * K * K * nt * g.grid,), x.dtype)
        else:
            tmp = g.grid_buffer("dw_tmp", nt, ct, x.dtype, zero=False)
        for n0, n1, c0, c1 in chunk:
            m, k = n1 - n0, c1 - c0
            g.scatter(xq, x[n0:n1, c0:c1], m, k)
            a = acc[:k, :m * g.grid]
            if matmul:
                _correlate(a, w[c0:c1, 0], _column_shifts(xq[:k], K, g.pitch, a.shape[1], rows),
                           g.pitch, prod)
            elif columns:                                  # (k, 1, K*K) @ (k, K*K, L)
                np.matmul(wcols[c0:c1], _tap_columns(g.windows(xq, m, k), buf),
                          out=a[:, None, :])
            else:
                _multiply_add(a, tmp[:k, :m * g.grid], g.windows(xq, m, k),
                              wk[c0:c1].T[:, :, None])
            out[n0:n1, c0:c1] = g.outputs(acc, m, k)       # (m, k, Ho, Wo)

    run_tiles(work, tiles, size=size)
    return out


def backward(dout, x, w, stride, padding):
    """(dx (N, C, H, W), dw (C, 1, K, K)) from dout (N, C, Ho, Wo).

    Same tiles and layout as the forward pass: x is laid out again per tile (cheaper than
    caching a padded copy) and dout is placed on the output grid with zeros at the
    positions that are not outputs, so they contribute nothing. dw is one row-wise dot
    product per tap (no product array), or for the matmul path one small product per
    channel of dout's shifts and the input's (:func:`_tap_grad`). dx:

    - stride 1, "same" padding: dx is itself a correlation of dout with the kernel
      flipped (``dx = sum_{i,j} w[:, 0, K-1-i, K-1-j] * doutpad[:, :, i:, j:]``), so dout
      is laid out like an input and the forward correlation runs on it;
    - otherwise each tap adds its share into the input layout (the scatter-add
      ``dxpad[:, :, i::s, j::s] += w[:, 0, i, j] * dout``), which is then copied out.
    """
    C, K = x.shape[1], w.shape[2]
    g = layout_for(x.shape, K, stride, padding)
    wk = w.reshape(C, K * K)
    # pixels no window reaches (if any) keep a zero gradient
    dx = (np.empty if g.covers_input else np.zeros)(x.shape, dtype=dout.dtype)
    size = dout.size * K * K
    matmul = uses_matmul(x.shape, K, stride, padding)     # then g is a PitchedLayout
    # x and dout/dx in input layout; acc and tmp, or acc, K column shifts and K products
    nt, ct, tiles = g.tiles(x.itemsize, 2, 2 + 2 * K if matmul else 2, size)
    dw_tiles = np.zeros((len(range(0, g.N, nt)), C, K, K), dtype=dout.dtype)
    flipped = isinstance(g, PitchedLayout)

    def work(chunk):
        xq = g.in_buffer("dw_x", nt, ct, x.dtype)
        if flipped:
            dq = g.in_buffer("dw_d", nt, ct, dout.dtype)       # dout in the input layout
            acc = g.grid_buffer("dw_acc", nt, ct, dout.dtype, zero=False)
        else:
            dq = scratch("dw_dx", xq.shape, dout.dtype)        # dx, zeroed per tile
            acc = g.grid_buffer("dw_acc", nt, ct, dout.dtype)  # dout, zero off-output
        if matmul:
            rows, prod = _matmul_buffers(g, nt, ct, dout.dtype)
        else:
            tmp = g.grid_buffer("dw_tmp", nt, ct, dout.dtype, zero=False)
        for n0, n1, c0, c1 in chunk:
            m, k = n1 - n0, c1 - c0
            g.scatter(xq, x[n0:n1, c0:c1], m, k)
            a = acc[:k, :m * g.grid]
            if flipped:
                g.scatter(dq, dout[n0:n1, c0:c1], m, k)
                d = g.on_grid(dq, m, k)                    # (k, m*grid)
            else:
                g.outputs(acc, m, k)[...] = dout[n0:n1, c0:c1]
                d = a
            dw = dw_tiles[n0 // nt, c0:c1]                 # (k, K, K)
            if matmul:
                L = d.shape[1]
                _tap_grad(_column_shifts(xq[:k], K, g.pitch, L, rows), d, g.pitch, prod, dw)
                _correlate(a, w[c0:c1, 0, ::-1, ::-1],
                           _column_shifts(dq[:k], K, g.pitch, L, rows), g.pitch, prod)
                dx[n0:n1, c0:c1] = g.outputs(acc, m, k)
                continue
            t, wts = tmp[:k, :m * g.grid], wk[c0:c1].T[:, :, None]   # wts: (K*K, k, 1)
            for o, win in enumerate(g.windows(xq, m, k)):
                dw[:, o // K, o % K] = row_dots(d, win)
            if flipped:
                _multiply_add(a, t, g.windows(dq, m, k), wts[::-1])
                dx[n0:n1, c0:c1] = g.outputs(acc, m, k)
            else:
                dq[..., :k, :] = 0
                for o, dwin in enumerate(g.windows(dq, m, k)):
                    np.multiply(d, wts[o], out=t)
                    dwin += t
                g.gather(dx[n0:n1, c0:c1], dq, m, k)

    run_tiles(work, tiles, size=size)
    dw = dw_tiles.sum(axis=0).reshape(C, 1, K, K)
    return dx, dw
