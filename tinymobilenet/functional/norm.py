"""Batch normalization over (N, H, W) for each channel, PyTorch semantics.

x: (N, C, H, W) or (N, C)   gamma, beta, running_mean, running_var: (C,)

Train mode normalizes with the batch statistics (biased variance, as in the paper) and
updates the running statistics in place with ``momentum`` using the *unbiased* variance
(Bessel's correction, n / (n - 1)), exactly as ``torch.nn.BatchNorm2d`` does.
Eval mode normalizes with the running statistics and makes BN an affine map.
"""

from __future__ import annotations

import numpy as np

__all__ = ["batchnorm_forward", "batchnorm_backward"]


def _axes(x):
    if x.ndim == 4:
        return (0, 2, 3), (1, -1, 1, 1)
    if x.ndim == 2:
        return (0,), (1, -1)
    raise ValueError(f"batchnorm: expected input (N, C, H, W) or (N, C), got shape {x.shape}")


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training=True,
                      momentum=0.1, eps=1e-5):
    """Forward pass of batch norm.

    Returns ``(out, cache)`` with ``out`` shaped like ``x``. In training mode
    ``running_mean`` and ``running_var`` (C,) are updated in place.
    """
    axes, bshape = _axes(x)
    if training:
        m = x.size // x.shape[1]                       # values per channel: N*H*W
        if m < 2:
            raise ValueError(
                f"batchnorm: training needs more than one value per channel, got input {x.shape}"
            )
        mean = x.mean(axis=axes)                       # (C,)
        xc = x - mean.reshape(bshape)
        var = np.mean(xc * xc, axis=axes)              # biased: what normalizes the batch
        # the running variance estimates the population variance: unbiased, n/(n-1)
        running_mean *= 1 - momentum
        running_mean += momentum * mean
        running_var *= 1 - momentum
        running_var += momentum * var * (m / (m - 1))
    else:
        mean, var = running_mean, running_var
        xc = x - mean.reshape(bshape)
    inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype, copy=False)   # (C,)
    xhat = xc
    xhat *= inv_std.reshape(bshape)                    # in place: xc is not needed again
    out = xhat * gamma.reshape(bshape) + beta.reshape(bshape)
    cache = (xhat, gamma, inv_std, training, axes, bshape)
    return out, cache


def batchnorm_backward(dout, cache):
    """Backward pass of batch norm: ``(dx, dgamma, dbeta)``.

    With m = N*H*W values per channel and xhat = (x - mean) * inv_std, train mode gives::

        dx = gamma * inv_std * (dout - mean(dout) - xhat * mean(dout * xhat))

    because the batch mean and variance depend on x too. In eval mode the statistics are
    constants and ``dx = gamma * inv_std * dout``.
    """
    xhat, gamma, inv_std, training, axes, bshape = cache
    dbeta = dout.sum(axis=axes)                                  # (C,)
    dgamma = np.einsum("nchw,nchw->c", dout, xhat) if dout.ndim == 4 else np.einsum("nc,nc->c", dout, xhat)
    scale = (gamma * inv_std).reshape(bshape)
    if training:
        m = dout.size // dout.shape[1]
        dx = dout - (dbeta / m).reshape(bshape)
        dx -= xhat * (dgamma / m).reshape(bshape)
        dx *= scale
    else:
        dx = dout * scale
    return dx, dgamma, dbeta
