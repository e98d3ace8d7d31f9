"""Worked answers to the exercises of :mod:`tinymobilenet.exercises`, for teachers.

This file lives in the repository (``notebooks/solutions/``), not in the installed package,
so a student who installs ``tinymobilenet`` does not get it; ``TEACHERS.md`` beside it has
the answer key of the questions without a checker. Each answer is written to be read, with
plain loops over kernel offsets where that is clearest, and uses NumPy only (the checkers
refuse answers that call the library's own kernels). Grade this file as a submission::

    python -m tinymobilenet.exercises grade notebooks/solutions/solutions.py

or check one answer from a Python shell started in this folder::

    import solutions
    from tinymobilenet import exercises
    exercises.check_depthwise_backward(solutions.depthwise_backward)
"""

from __future__ import annotations

import numpy as np

__all__ = ["conv_output_size", "im2col", "conv2d_forward", "conv2d_backward",
           "depthwise_forward", "depthwise_backward", "cost_ratio", "batchnorm_backward",
           "fold_batchnorm", "relu6_backward", "v1_macs", "inverted_residual_macs",
           "inverted_residual_backward", "hardswish_backward", "se_backward",
           "compound_scaling", "stochastic_depth_forward", "stochastic_depth_backward",
           "mbconv_macs", "sgd_step", "same_padding", "lite_crop_box", "saliency"]


def conv_output_size(size, kernel_size, stride, padding):
    """Number of window positions: the window's first element runs over 0, s, 2s, ... up to
    size + 2*padding - kernel_size."""
    return (size + 2 * padding - kernel_size) // stride + 1


def _pad(x, p):
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x


def im2col(x, K, stride, padding):
    """x (N, C, H, W) -> col (N, C, K, K, Ho, Wo), one strided slice per kernel offset."""
    N, C, H, W = x.shape
    Ho = conv_output_size(H, K, stride, padding)
    Wo = conv_output_size(W, K, stride, padding)
    xp = _pad(x, padding)
    col = np.empty((N, C, K, K, Ho, Wo), dtype=x.dtype)
    for p in range(K):
        for q in range(K):
            col[:, :, p, q] = xp[:, :, p:p + stride * Ho:stride, q:q + stride * Wo:stride]
    return col


def conv2d_forward(x, w, b, stride, padding):
    """im2col, then one matrix product: (Co, C*K*K) @ (N, C*K*K, Ho*Wo)."""
    N, C, H, W = x.shape
    Co, _, K, _ = w.shape
    col = im2col(x, K, stride, padding)
    Ho, Wo = col.shape[-2:]
    out = np.matmul(w.reshape(Co, -1), col.reshape(N, C * K * K, Ho * Wo))
    return out.reshape(N, Co, Ho, Wo) + b.reshape(1, Co, 1, 1)


def conv2d_backward(dout, x, w, stride, padding):
    """dw = dout @ col.T summed over the batch; dx = col2im(w.T @ dout)."""
    N, C, H, W = x.shape
    Co, _, K, _ = w.shape
    Ho, Wo = dout.shape[-2:]
    col = im2col(x, K, stride, padding).reshape(N, C * K * K, Ho * Wo)
    d2 = dout.reshape(N, Co, Ho * Wo)
    dw = np.einsum("nok,nck->oc", d2, col).reshape(w.shape)       # sum_n (Co, HoWo) @ (HoWo, CKK)
    dcol = np.matmul(w.reshape(Co, -1).T, d2).reshape(N, C, K, K, Ho, Wo)
    dxp = np.zeros((N, C, H + 2 * padding, W + 2 * padding))
    for p in range(K):
        for q in range(K):                 # += : overlapping windows add up
            dxp[:, :, p:p + stride * Ho:stride, q:q + stride * Wo:stride] += dcol[:, :, p, q]
    return dxp[:, :, padding:padding + H, padding:padding + W], dw


def depthwise_forward(x, w, stride, padding):
    """K*K multiply-accumulates of strided slices, one filter per channel."""
    N, C, H, W = x.shape
    K = w.shape[2]
    Ho = conv_output_size(H, K, stride, padding)
    Wo = conv_output_size(W, K, stride, padding)
    xp = _pad(x, padding)
    out = np.zeros((N, C, Ho, Wo))
    for p in range(K):
        for q in range(K):
            out += w[:, 0, p, q].reshape(1, C, 1, 1) * xp[:, :, p:p + stride * Ho:stride,
                                                          q:q + stride * Wo:stride]
    return out


def depthwise_backward(dout, x, w, stride, padding):
    """The forward's K*K slices in reverse: each offset gets its share of dw and sends
    w * dout back to the same strided positions of dx."""
    N, C, H, W = x.shape
    K = w.shape[2]
    Ho, Wo = dout.shape[-2:]
    xp = _pad(x, padding)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for p in range(K):
        for q in range(K):
            window = (slice(None), slice(None), slice(p, p + stride * Ho, stride),
                      slice(q, q + stride * Wo, stride))
            dw[:, 0, p, q] = np.sum(dout * xp[window], axis=(0, 2, 3))
            dxp[window] += w[:, 0, p, q].reshape(1, C, 1, 1) * dout
    return dxp[:, :, padding:padding + H, padding:padding + W], dw


def cost_ratio(C_out, K):
    """(K*K*C*Ho*Wo + C*C_out*Ho*Wo) / (K*K*C*C_out*Ho*Wo) = 1/C_out + 1/K^2."""
    return 1.0 / C_out + 1.0 / K ** 2


def batchnorm_backward(dout, x, gamma, eps):
    """Training-mode batch norm over (N, H, W) per channel."""
    axes = (0, 2, 3)
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * inv_std
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * xhat).sum(axis=axes)
    dx = gamma.reshape(1, -1, 1, 1) * inv_std * (
        dout - dout.mean(axis=axes, keepdims=True)
        - xhat * (dout * xhat).mean(axis=axes, keepdims=True))
    return dx, dgamma, dbeta


def fold_batchnorm(w, b, gamma, beta, mean, var, eps):
    """BN(conv(x, w, b)) = conv(x, w * s, (b - mean) * s + beta), s = gamma / sqrt(var + eps)."""
    s = gamma / np.sqrt(var + eps)
    b = np.zeros_like(mean) if b is None else b
    return w * s.reshape(-1, 1, 1, 1), (b - mean) * s + beta


def relu6_backward(dout, x):
    """relu6 has slope 1 on (0, 6) and 0 outside; at the kinks 0 and 6 it has no derivative,
    and, like the library and PyTorch, no gradient passes there (strict inequalities)."""
    return dout * ((x > 0) & (x < 6))


def v1_macs(alpha, resolution):
    """Stem conv, 13 depthwise separable blocks of Table 1, FC to 1000 classes."""
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
              (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
    H = conv_output_size(resolution, 3, 2, 1)
    C = int(32 * alpha)
    macs = 3 * 3 * 3 * C * H * H
    for c_out, stride in blocks:
        H = conv_output_size(H, 3, stride, 1)
        c_out = int(c_out * alpha)
        macs += 3 * 3 * C * H * H + C * c_out * H * H
        C = c_out
    return macs + C * 1000


def inverted_residual_macs(C_in, C_out, expand_ratio, K, H, W, stride):
    """Expand 1x1 on H x W, depthwise K x K with stride, project 1x1 on Ho x Wo."""
    E = int(round(C_in * expand_ratio))
    Ho = conv_output_size(H, K, stride, K // 2)
    Wo = conv_output_size(W, K, stride, K // 2)
    expand = C_in * E * H * W if E != C_in else 0
    return expand + K * K * E * Ho * Wo + E * C_out * Ho * Wo


def inverted_residual_backward(dy, x, w_expand, w_dw, w_project, stride):
    """Backward of :func:`tinymobilenet.exercises.inverted_residual_forward`, recomputing
    its forward pass; the depthwise part is the answer of chapter 3."""
    pad = w_dw.shape[2] // 2
    z1 = np.einsum("ec,nchw->nehw", w_expand, x)          # expand: (N, E, H, W)
    h = np.clip(z1, 0, 6)
    z2 = depthwise_forward(h, w_dw, stride, pad)           # (N, E, Ho, Wo)
    d = np.clip(z2, 0, 6)
    dw_project = np.einsum("nohw,nehw->oe", dy, d)         # the projection is linear
    dz2 = np.einsum("oe,nohw->nehw", w_project, dy) * ((z2 > 0) & (z2 < 6))
    dh, dw_dw = depthwise_backward(dz2, h, w_dw, stride, pad)
    dz1 = dh * ((z1 > 0) & (z1 < 6))
    dw_expand = np.einsum("nehw,nchw->ec", dz1, x)
    dx = np.einsum("ec,nehw->nchw", w_expand, dz1)
    if stride == 1 and w_project.shape[0] == x.shape[1]:
        dx = dx + dy                                       # the shortcut: y = body(x) + x
    return dx, dw_expand, dw_dw, dw_project


def hardswish_backward(dout, x):
    """d/dx [x * relu6(x + 3) / 6] = 0 below -3, (2x + 3) / 6 between, 1 above 3."""
    return dout * np.where(x < -3, 0.0, np.where(x > 3, 1.0, (2 * x + 3) / 6))


def se_backward(dy, x, w1, b1, w2, b2):
    """Backward of :func:`tinymobilenet.exercises.se_forward`, recomputing its forward."""
    N, C, H, W = x.shape
    pooled = x.mean(axis=(2, 3))                         # (N, C)
    z1 = pooled @ w1.T + b1                              # (N, S)
    h = np.maximum(z1, 0)
    z2 = h @ w2.T + b2                                   # (N, C)
    s = np.clip(z2 + 3, 0, 6) / 6
    ds = np.einsum("nchw,nchw->nc", dy, x)               # the gate multiplied H*W pixels
    dz2 = ds * ((z2 > -3) & (z2 < 3)) / 6
    dw2, db2 = dz2.T @ h, dz2.sum(axis=0)
    dz1 = (dz2 @ w2) * (z1 > 0)
    dw1, db1 = dz1.T @ pooled, dz1.sum(axis=0)
    dpooled = dz1 @ w1                                   # (N, C)
    dx = dy * s[:, :, None, None] + dpooled[:, :, None, None] / (H * W)
    return dx, dw1, db1, dw2, db2


def compound_scaling(phi):
    """EfficientNet's depth and width multipliers and input resolution for coefficient phi."""
    return 1.2 ** phi, 1.1 ** phi, int(round(224 * 1.15 ** phi))


def stochastic_depth_forward(x, p, keep, training):
    """Zero the dropped samples and scale the kept ones by 1 / (1 - p), so that the expected
    output is x; the identity in eval mode. With p = 1 every sample is dropped (no 0 / 0)."""
    if not training or p == 0:
        return x
    scale = keep / (1 - p) if p < 1 else np.zeros(len(keep))
    return x * scale.reshape((-1,) + (1,) * (x.ndim - 1))       # one factor per sample


def stochastic_depth_backward(dout, p, keep, training):
    """The forward multiplies each sample by a constant: the backward multiplies dout by it."""
    return stochastic_depth_forward(dout, p, keep, training)


def mbconv_macs(C_in, C_out, expand_ratio, K, H, W, stride):
    """The inverted residual's three convolutions with E rounded to a multiple of 8 (never
    more than 10 % down), plus SE's two 1x1 convolutions on the pooled 1x1 map."""
    v = C_in * expand_ratio
    E = max(8, int(v + 4) // 8 * 8)
    if E < 0.9 * v:
        E += 8
    S = max(1, C_in // 4)
    Ho = conv_output_size(H, K, stride, K // 2)
    Wo = conv_output_size(W, K, stride, K // 2)
    expand = C_in * E * H * W if E != C_in else 0
    return expand + K * K * E * Ho * Wo + 2 * E * S + E * C_out * Ho * Wo


def sgd_step(w, grad, velocity, lr, momentum, weight_decay):
    """One step of SGD with momentum and L2 weight decay (PyTorch's form)."""
    g = grad + weight_decay * w
    velocity = momentum * velocity + g
    return w - lr * velocity, velocity


def same_padding(size, kernel_size, stride):
    """TensorFlow's SAME: fix the output size first, ceil(size / stride), then add the
    fewest zeros that give it, the odd one after. No zeros when the windows already fit."""
    out = -(-size // stride)                                     # ceil without floats
    total = max((out - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


def lite_crop_box(width, height, size):
    """The central square the Lite evaluation keeps: size / (size + round(size / 7)) of the
    shorter side (87.5 % at 224), centred with the odd pixel above and left of it."""
    crop_padding = round(size / 7)
    side = int(size / (size + crop_padding) * min(width, height))
    return (width - side + 1) // 2, (height - side + 1) // 2, side


def saliency(x, V, W, labels):
    """d logits[n, labels[n]] / d x[n] for logits = relu(x_flat @ V.T) @ W.T: the chain rule
    backwards through the second layer (the label's row of W), the ReLU (its mask) and the
    first layer (V)."""
    N = x.shape[0]
    h = x.reshape(N, -1) @ V.T                                   # (N, Hd) pre-activations
    dh = W[labels] * (h > 0)                                     # (N, Hd): W's row, masked
    return (dh @ V).reshape(x.shape)                             # (N, Hd) @ (Hd, D) -> x's shape
