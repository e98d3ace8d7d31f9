"""Pooling over the spatial axes."""

from __future__ import annotations

import numpy as np

from ._checks import check_dout, check_float_array
from .reductions import row_sums

__all__ = ["global_avg_pool_forward", "global_avg_pool_backward"]


def global_avg_pool_forward(x, keepdims=False):
    """Mean over H and W.

    x: (N, C, H, W) -> out: (N, C) or, with ``keepdims``, (N, C, 1, 1)
    """
    check_float_array("global_avg_pool", "x", x)
    if x.ndim != 4:
        raise ValueError(f"global_avg_pool: expected input (N, C, H, W), got shape {x.shape}")
    N, C, H, W = x.shape
    # each row's sum as a matrix-vector product with a vector of ones (BLAS): 3-7x
    # faster than x.mean(axis=(2, 3)) at batch 1 on 7x7 to 56x56 maps (one thread)
    out = (row_sums(x.reshape(N * C, H * W)) / max(H * W, 1)).astype(x.dtype, copy=False)
    out = out.reshape((N, C, 1, 1) if keepdims else (N, C))
    return out, (x.shape, keepdims, x.dtype)


def global_avg_pool_backward(dout, cache, out=None):
    """Each of the H*W inputs of a channel receives 1/(H*W) of its gradient.

    dout: (N, C) or (N, C, 1, 1) -> dx (N, C, H, W). With ``out`` (N, C, H, W) given,
    the gradient is *added* into it in place (no full-size temporary) and ``out`` returned:
    how a block whose input also feeds another path sums the two.
    """
    x_shape, keepdims, dtype = cache
    N, C, H, W = x_shape
    shape = (N, C, 1, 1) if keepdims else (N, C)
    if getattr(dout, "shape", None) in ((N, C), (N, C, 1, 1)):      # either form is fine
        shape = dout.shape
    dout = check_dout("global_avg_pool_backward", dout, shape, dtype)
    d = dout.reshape(N, C, 1, 1) / (H * W)
    if out is not None:
        out += d                                   # broadcast over H, W
        return out
    return np.broadcast_to(d, x_shape).astype(dout.dtype, copy=True)
