"""Softmax cross-entropy, numerically stable, with optional label smoothing."""

from __future__ import annotations

import numpy as np

from ._checks import check_float_array

__all__ = ["log_softmax", "softmax_cross_entropy_forward", "softmax_cross_entropy_backward"]


def log_softmax(logits):
    """log(softmax(z)) along the last axis, stable for any magnitude (e.g. logits of 1e4).

    Subtracting the row maximum makes every exponent <= 0, so exp never overflows and
    the largest term is exactly 1, so the log-sum never underflows to log(0).
    """
    check_float_array("log_softmax", "logits", logits)
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax_cross_entropy_forward(logits, targets, label_smoothing=0.0):
    """Mean cross-entropy between softmax(logits) and integer targets.

    logits: (N, K) floats   targets: (N,) ints in [0, K)   ->   ``(loss, cache)``, loss a
    Python float, cache ``(logp, q)`` (N, K) each

    With label smoothing e (PyTorch's definition) the target distribution is
    ``(1 - e) * onehot + e / K``. ``TypeError`` for non-integer targets, ``ValueError``
    for a wrong shape, a target outside [0, K) or e outside [0, 1].
    """
    check_float_array("cross_entropy", "logits", logits)
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: expected logits (N, K), got shape {logits.shape}")
    N, K = logits.shape
    targets = np.asarray(targets)
    if targets.shape != (N,):
        raise ValueError(f"cross_entropy: expected targets ({N},), got shape {targets.shape}")
    if not np.issubdtype(targets.dtype, np.integer):
        raise TypeError(f"cross_entropy: targets must be integers, got dtype {targets.dtype}")
    if N and (targets.min() < 0 or targets.max() >= K):
        bad = targets[(targets < 0) | (targets >= K)][0]
        raise ValueError(f"cross_entropy: target {bad} out of range for {K} classes [0, {K})")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    logp = log_softmax(logits)                                     # (N, K)
    q = np.full((N, K), label_smoothing / K, dtype=logits.dtype)   # target distribution
    q[np.arange(N), targets] += 1.0 - label_smoothing
    loss = -(q * logp).sum() / N
    return float(loss), (logp, q)


def softmax_cross_entropy_backward(cache):
    """dL/dlogits = (softmax(logits) - q) / N, shape (N, K), from the forward's cache
    ``(logp, q)`` (no dout: the loss is where backpropagation starts)."""
    logp, q = cache
    return (np.exp(logp) - q) / logp.shape[0]
