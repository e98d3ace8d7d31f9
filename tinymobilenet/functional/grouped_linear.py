"""Group-wise dense layer: the 1-D analogue of a grouped (and depthwise) convolution.

Notation::

    N  batch size      D  input features      M  output features      G  groups
    Dg = D // G features in per group,  Mg = M // G features out per group

x: (N, D), w: (M, Dg), b: (M,) or None -> out: (N, M). Output feature m belongs to group
g = m // Mg and sees only the inputs of that group::

    out[n, g*Mg + j] = sum_i x[n, g*Dg + i] * w[g*Mg + j, i] + b[g*Mg + j]

This is PyTorch's ``Conv1d(D, M, kernel_size=1, groups=G)`` on a length-1 sequence, with
the weight (M, Dg, 1) squeezed to (M, Dg). G = 1 is an ordinary ``Linear``; G = D = M is a
per-feature scale (the depthwise extreme). Weights and multiply-accumulates are
``M * Dg = M * D / G``: G times fewer than a dense layer of the same shape.

The fast pair runs one batched matmul over the G groups; the naive twins loop over groups
and features and are the readable definition and the tests' oracle.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_bias, check_dout, check_float_array, check_param

__all__ = ["grouped_linear_forward", "grouped_linear_backward",
           "grouped_linear_forward_naive", "grouped_linear_backward_naive"]


def _check_grouped_args(x, w, b, groups):
    """Check grouped_linear's arguments (see :mod:`._checks` for the dtype rule); returns
    ``(w, b)`` in x's dtype."""
    if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, (int, np.integer)) \
            or groups < 1:
        raise ValueError(f"grouped_linear: groups must be an integer >= 1, got {groups!r}")
    x = check_float_array("grouped_linear", "x", x)
    w = check_param("grouped_linear", "w", w, x.dtype)
    if w.ndim != 2:
        raise ValueError(f"grouped_linear: expected weight (M, D // groups), got {w.shape}")
    M, Dg = w.shape
    if M % groups:
        raise ValueError(f"grouped_linear: groups={groups} must divide out_features={M}")
    if x.ndim != 2 or x.shape[1] != Dg * groups:
        raise ValueError(f"grouped_linear: expected input (N, {Dg * groups}) for weight "
                         f"{w.shape} with groups={groups}, got {x.shape}")
    return w, check_bias("grouped_linear", b, M, x.dtype, "output feature")


def _check_grouped_dout(fn, dout, cache):
    x, w = cache[:2]
    return check_dout(fn, dout, (x.shape[0], w.shape[0]), x.dtype)


def grouped_linear_forward(x, w, b=None, groups=1):
    """x: (N, D), w: (M, D // G), b: (M,) or None -> (out (N, M), cache)."""
    w, b = _check_grouped_args(x, w, b, groups)
    N, D = x.shape
    M, Dg = w.shape
    G, Mg = groups, M // groups
    xg = x.reshape(N, G, Dg).transpose(1, 0, 2)                  # (G, N, Dg)
    wg = w.reshape(G, Mg, Dg)                                     # (G, Mg, Dg)
    out = np.matmul(xg, wg.transpose(0, 2, 1))                    # (G, N, Dg) @ (G, Dg, Mg)
    out = out.transpose(1, 0, 2).reshape(N, M)                    # (G, N, Mg) -> (N, M)
    if b is not None:
        out += b
    return out, (x, w, groups, b is not None)


def grouped_linear_backward(dout, cache):
    """dout: (N, M) -> dx (N, D), dw (M, D // G), db (M,) or None."""
    dout = _check_grouped_dout("grouped_linear_backward", dout, cache)
    x, w, G, has_bias = cache
    N, D = x.shape
    M, Dg = w.shape
    Mg = M // G
    doutg = dout.reshape(N, G, Mg).transpose(1, 0, 2)             # (G, N, Mg)
    wg = w.reshape(G, Mg, Dg)                                     # (G, Mg, Dg)
    xg = x.reshape(N, G, Dg).transpose(1, 0, 2)                   # (G, N, Dg)
    dx = np.matmul(doutg, wg)                                     # (G, N, Mg) @ (G, Mg, Dg)
    dx = dx.transpose(1, 0, 2).reshape(N, D)
    dw = np.matmul(doutg.transpose(0, 2, 1), xg).reshape(M, Dg)   # (G, Mg, N) @ (G, N, Dg)
    db = dout.sum(axis=0) if has_bias else None
    return dx, dw, db


def grouped_linear_forward_naive(x, w, b=None, groups=1):
    """Loop version of :func:`grouped_linear_forward` (same signature and result)."""
    w, b = _check_grouped_args(x, w, b, groups)
    N, D = x.shape
    M, Dg = w.shape
    Mg = M // groups
    out = np.zeros((N, M), dtype=x.dtype)
    for n in range(N):
        for m in range(M):
            g = m // Mg                                   # the group output m belongs to
            for i in range(Dg):
                out[n, m] += x[n, g * Dg + i] * w[m, i]
            if b is not None:
                out[n, m] += b[m]
    return out, (x, w, groups, b is not None)


def grouped_linear_backward_naive(dout, cache):
    """Loop version of :func:`grouped_linear_backward`."""
    dout = _check_grouped_dout("grouped_linear_backward_naive", dout, cache)
    x, w, G, has_bias = cache
    N, D = x.shape
    M, Dg = w.shape
    Mg = M // G
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    for n in range(N):
        for m in range(M):
            g = m // Mg
            for i in range(Dg):
                dx[n, g * Dg + i] += dout[n, m] * w[m, i]
                dw[m, i] += dout[n, m] * x[n, g * Dg + i]
    db = dout.sum(axis=0) if has_bias else None
    return dx, dw, db
