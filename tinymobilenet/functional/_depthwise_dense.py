"""Depthwise convolution of tiny maps as one dense matrix per channel (a student can skip
this file; :mod:`.depthwise` has the definition and says when this path runs).

On an H x W map, channel c's whole convolution is a linear map from its H*W input values
to its Ho*Wo outputs: a matrix ``M_c`` (H*W, Ho*Wo) whose nonzero entries are the
kernel's taps, ``M_c[(h, w), (ho, wo)] = w[c, 0, h - s*ho + p, w - s*wo + p]`` (zero where
that is outside the kernel, which also plays the zero padding). A batch is then one
batched matrix product over the channels, each image a row::

    out[:, c] = x[:, c] @ M_c          (N, H*W) @ (H*W, Ho*Wo)

It spends H*W / (K*K) times the multiply-adds (1x at 3x3 maps with a 3x3 kernel, 4x at
6x6), all in BLAS, instead of K*K NumPy passes over rows of 3 to 7 values, where a pass
costs more in per-row overhead than in arithmetic. So it pays only on the smallest maps
of a batch (the 3x3 to 7x7 layers of a 96 px training step, the 7x7 ones at 224 px).

Building ``M`` from w is a product too, with a fixed 0/1 matrix ``G`` (H*W*Ho*Wo, K*K)
that says which tap each entry holds: ``M = w @ G^T`` per channel. Backward::

    dx[:, c] = dout[:, c] @ M_c^T      dM_c = x[:, c]^T @ dout[:, c]      dw_c = dM_c @ G

Channels run in tiles whose matrices fit in the cache budget (see :mod:`.tiling`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .conv_geometry import conv_output_size
from .tiling import run_tiles, scratch, split_rows, tile_budget

__all__ = ["forward", "backward", "tap_matrix"]


@lru_cache(maxsize=64)
def _taps(H, W, K, stride, padding, dtype):
    G = tap_matrix(H, W, K, stride, padding).astype(dtype)
    G.flags.writeable = False
    return G


def tap_matrix(H, W, K, stride, padding):
    """G (H*W*Ho*Wo, K*K): G[(h, w, ho, wo), (i, j)] = 1 where input pixel (h, w) meets
    kernel tap (i, j) for output pixel (ho, wo), that is h = s*ho + i - p and
    w = s*wo + j - p; so that ``M = w.reshape(C, K*K) @ G.T`` is every channel's matrix."""
    Ho, Wo = conv_output_size(H, K, stride, padding), conv_output_size(W, K, stride, padding)
    G = np.zeros((H, W, Ho, Wo, K, K), dtype=np.float64)
    ho, wo = np.arange(Ho), np.arange(Wo)
    for i in range(K):
        h = stride * ho + i - padding
        hi = (h >= 0) & (h < H)
        for j in range(K):
            w = stride * wo + j - padding
            wi = (w >= 0) & (w < W)
            G[h[hi][:, None], w[wi][None, :], ho[hi][:, None], wo[wi][None, :], i, j] = 1
    return G.reshape(H * W * Ho * Wo, K * K)


def _geometry(x_shape, K, stride, padding, itemsize, arrays, size):
    """Shapes and channel tiles of a call that hands ``size`` to ``run_tiles`` (so that
    the tiles are balanced for the threads the call runs on)."""
    N, C, H, W = x_shape
    Ho, Wo = conv_output_size(H, K, stride, padding), conv_output_size(W, K, stride, padding)
    # a tile's matrices (and dM in backward) plus its rows of x and out stay in cache
    per_channel = itemsize * (arrays * H * W * Ho * Wo + N * (H * W + Ho * Wo))
    threads, budget = tile_budget(itemsize * N * C * H * W, size=size)
    ct = split_rows(C, per_channel, budget, balance=threads > 1)
    return N, C, H, W, Ho, Wo, ct, [(c0, min(C, c0 + ct)) for c0 in range(0, C, ct)]


def forward(x, w, stride, padding):
    """out (N, C, Ho, Wo) of x (N, C, H, W) and w (C, 1, K, K), no bias."""
    K = w.shape[2]
    size = x.size * K * K
    N, C, H, W, Ho, Wo, ct, tiles = _geometry(x.shape, K, stride, padding, x.itemsize, 1, size)
    G = _taps(H, W, K, stride, padding, x.dtype)
    out = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    xs = x.reshape(N, C, H * W).transpose(1, 0, 2)           # (C, N, H*W), a view
    outs = out.reshape(N, C, Ho * Wo).transpose(1, 0, 2)     # (C, N, Ho*Wo), a view
    wk = w.reshape(C, K * K)

    def work(chunk):
        M = scratch("dwd_m", (ct, H * W, Ho * Wo), x.dtype)
        for c0, c1 in chunk:
            m = M[:c1 - c0]
            np.matmul(wk[c0:c1], G.T, out=m.reshape(c1 - c0, -1))
            np.matmul(xs[c0:c1], m, out=outs[c0:c1])

    run_tiles(work, tiles, size=size)
    return out


def backward(dout, x, w, stride, padding):
    """(dx (N, C, H, W), dw (C, 1, K, K)) from dout (N, C, Ho, Wo)."""
    K = w.shape[2]
    size = dout.size * K * K
    N, C, H, W, Ho, Wo, ct, tiles = _geometry(x.shape, K, stride, padding, x.itemsize, 2, size)
    G = _taps(H, W, K, stride, padding, dout.dtype)
    dout = np.ascontiguousarray(dout)
    dx = np.empty(x.shape, dtype=dout.dtype)
    dw = np.empty((C, K * K), dtype=dout.dtype)
    xs = x.reshape(N, C, H * W).transpose(1, 0, 2)            # (C, N, H*W)
    ds = dout.reshape(N, C, Ho * Wo).transpose(1, 0, 2)       # (C, N, Ho*Wo)
    dxs = dx.reshape(N, C, H * W).transpose(1, 0, 2)
    wk = w.reshape(C, K * K)

    def work(chunk):
        M = scratch("dwd_m", (ct, H * W, Ho * Wo), dout.dtype)
        dM = scratch("dwd_dm", (ct, H * W, Ho * Wo), dout.dtype)
        for c0, c1 in chunk:
            k = c1 - c0
            m, dm = M[:k], dM[:k]
            np.matmul(wk[c0:c1], G.T, out=m.reshape(k, -1))
            np.matmul(ds[c0:c1], m.transpose(0, 2, 1), out=dxs[c0:c1])
            np.matmul(xs[c0:c1].transpose(0, 2, 1), ds[c0:c1], out=dm)
            np.matmul(dm.reshape(k, -1), G, out=dw[c0:c1])

    run_tiles(work, tiles, size=size)
    return dx, dw.reshape(C, 1, K, K)
