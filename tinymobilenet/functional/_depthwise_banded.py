"""Depthwise convolution of narrow maps as banded matrix products (a student can skip this
file; :mod:`.depthwise` has the definition and says when this path runs).

One kernel row applied along every image row is a product with a banded (Toeplitz)
W x Wo matrix, so a tile of channels is K batched matmuls in BLAS plus a sum, instead of
2*K*K NumPy passes over memory. It spends about W/K times the multiply-adds, which pays
only on narrow maps (the 14x14 and 7x7 layers). Notation: see :mod:`.conv_geometry`.
"""

from __future__ import annotations

import numpy as np

from .conv_geometry import conv_output_size, is_same_stride1
from .tiling import run_tiles, scratch, split_rows, tile_budget

__all__ = ["forward", "backward", "BandedGeometry"]


class BandedGeometry:
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
    image that are not outputs are dropped. Backward: ``dw[i, j]`` sums ``DtX_i = D^T @ X_i``
    along the entries (wo, s*wo + j - p); dx is, at stride 1 with "same" padding, the same
    correlation run on dout with the kernel flipped, otherwise ``D @ T_i^T`` added back
    onto rows i::s.
    """

    def __init__(self, x_shape, K, stride, padding):
        self.N, self.C, self.H, self.W = x_shape
        self.K, self.s, self.p = K, stride, padding
        self.same = is_same_stride1(K, stride, padding)
        self.Ho = conv_output_size(self.H, K, stride, padding)
        self.Wo = conv_output_size(self.W, K, stride, padding)
        self.Lo = max(-(-(self.H + padding) // stride), self.Ho)   # grid rows per image
        self.S = stride * self.Lo                                  # X rows per image
        self.L = self.N * self.Lo                                  # output grid rows
        # the last image's reads end at row s*(L - 1) + K - 1 (+ p with the lead rows)
        self.rows = max(padding + self.N * self.S, stride * (self.L - 1) + K)
        # rows of the K products: all stacked rows at stride 1 "same", the grid otherwise
        self.R_rows = self.rows if self.same else self.L
        wo = np.arange(self.Wo)                   # each tap column's (win, wo), once per call
        self._taps = []
        for j in range(K):
            win = stride * wo + j - padding
            inside = (win >= 0) & (win < self.W)
            self._taps.append((win[inside], wo[inside]))

    def tiles(self, itemsize, stacks, size):
        """Channels per tile and the (c0, c1) tiles (all samples in each): ``stacks``
        stacked buffers, the K row products and the grid of a tile fit in the budget."""
        per_channel = itemsize * (stacks * self.rows * self.W + self.L * self.Wo + self.K * (
            self.R_rows * max(self.W, self.Wo) + self.W * self.Wo))
        threads, budget = tile_budget(itemsize * self.N * self.C * self.H * self.W, size)
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
        return self._taps[j]

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

    def weight_grad(self, d, xs, DtX):
        """dw (k, K, K) from dout on the grid d (k, L, Wo) and the stacked input xs:
        ``DtX_i = D^T @ X_i`` (k, K, Wo, W) (scratch), tap j summed over the entries
        (wo, s*wo + j - p)."""
        np.matmul(d.transpose(0, 2, 1)[:, None], self.row_views(xs), out=DtX)
        dw = np.empty(DtX.shape[:2] + (self.K,), dtype=DtX.dtype)
        for j in range(self.K):
            win, wo = self.tap_columns(j)
            dw[:, :, j] = DtX[:, :, wo, win].sum(axis=-1)
        return dw


def forward(x, w, stride, padding):
    """out (N, C, Ho, Wo) of x (N, C, H, W) and w (C, 1, K, K), no bias."""
    g = BandedGeometry(x.shape, w.shape[2], stride, padding)
    size = x.size * g.K * g.K
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


def backward(dout, x, w, stride, padding):
    """(dx (N, C, H, W), dw (C, 1, K, K)) from dout (N, C, Ho, Wo)."""
    g = BandedGeometry(x.shape, w.shape[2], stride, padding)
    size = dout.size * g.K * g.K
    dx = np.empty(x.shape, dtype=dout.dtype)
    dw = np.empty((g.C, g.K, g.K), dtype=dout.dtype)
    wk = w[:, 0]
    flipped = wk[:, ::-1, ::-1]                   # stride 1, "same": dx = dout * flip
    ct, tiles = g.tiles(x.itemsize, 2, size)

    def work(chunk):
        xs = g.stacked("dwb_x", ct, x.dtype)
        R = scratch("dwb_r", (ct, g.K, g.R_rows, g.W), dout.dtype)
        grid = scratch("dwb_o", (ct, g.L, g.Wo), dout.dtype, zero=not g.same)
        DtX = scratch("dwb_g", (ct, g.K, g.Wo, g.W), dout.dtype)
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
            dw[c0:c1] = g.weight_grad(d, xs[:k], DtX[:k])
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
