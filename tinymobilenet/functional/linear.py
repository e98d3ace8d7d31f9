"""Fully connected layer, PyTorch layout: ``y = x @ w.T + b`` with w (M, D)."""

from __future__ import annotations

from ._checks import check_bias, check_dout, check_float_array, check_param

__all__ = ["linear_forward", "linear_backward"]


def linear_forward(x, w, b=None):
    """x: (N, D)   w: (M, D)   b: (M,) or None   ->   out: (N, M)."""
    x = check_float_array("linear", "x", x)
    w = check_param("linear", "w", w, x.dtype)
    if w.ndim != 2:
        raise ValueError(f"linear: expected weight (M, D), got shape {w.shape}")
    if x.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"linear: expected input (N, {w.shape[1]}), got shape {x.shape}")
    b = check_bias("linear", b, w.shape[0], x.dtype, "output feature")
    out = x @ w.T                      # (N, D) @ (D, M)
    if b is not None:
        out += b
    return out, (x, w, b is not None)


def linear_backward(dout, cache):
    """dout: (N, M) -> dx (N, D), dw (M, D), db (M,) or None."""
    x, w, has_bias = cache
    dout = check_dout("linear_backward", dout, (x.shape[0], w.shape[0]), x.dtype)
    dx = dout @ w                      # (N, M) @ (M, D)
    dw = dout.T @ x                    # (M, N) @ (N, D)
    db = dout.sum(axis=0) if has_bias else None
    return dx, dw, db
