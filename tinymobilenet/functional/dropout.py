"""Inverted dropout: scale by 1/(1-p) while training so eval mode needs no rescaling."""

from __future__ import annotations

import numpy as np

from ._checks import check_dout, check_float_array

__all__ = ["dropout_forward", "dropout_backward"]


def dropout_forward(x, p, training, rng):
    """Zero each element with probability ``p`` (training only) and scale the rest by 1/(1-p).

    x: any shape; ``rng`` is a ``numpy.random.Generator`` (seeded, for reproducibility).
    Returns ``(out, mask)``, out and mask shaped like x; in eval mode or with p = 0,
    ``(x, None)`` (x itself). ``ValueError`` unless 0 <= p < 1.
    """
    check_float_array("dropout", "x", x)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x, None
    mask = (rng.random(x.shape, dtype=np.float64) >= p).astype(x.dtype)
    mask /= 1.0 - p
    return x * mask, mask


def dropout_backward(dout, cache):
    """dx = dout * mask (the forward's mask, which holds the 1/(1-p)); dout itself when
    the forward was the identity (eval mode, p = 0)."""
    mask = cache
    if mask is None:
        return check_float_array("dropout_backward", "dout", dout)
    dout = check_dout("dropout_backward", dout, mask.shape, mask.dtype)
    return dout * mask
