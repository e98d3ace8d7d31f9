"""Convolutions: standard (any ``groups``), depthwise and pointwise, forward and backward.

Notation (used in every docstring and shape comment below)::

    N   batch size            C   input channels        Co  output channels
    H,W input height/width    K   kernel size (square)  G   groups
    Ho,Wo output height/width:  Ho = (H + 2*pad - K) // stride + 1

Arrays are NCHW and weights follow PyTorch's layout ``(Co, C // G, K, K)``.

Every fast kernel has a *naive* twin with the same signature, written with plain
Python loops.  The naive twins are the readable definition of the operation and the
oracle the tests compare the fast kernels against; they are far too slow for real use.

Each ``*_forward`` returns ``(out, cache)`` and each ``*_backward(dout, cache)`` returns
``(dx, dw, db)`` (``db`` is ``None`` when there is no bias).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "conv_output_size",
    "pad2d",
    "im2col",
    "col2im",
    "conv2d_forward",
    "conv2d_backward",
    "conv2d_forward_naive",
    "conv2d_backward_naive",
    "depthwise_conv2d_forward",
    "depthwise_conv2d_backward",
    "depthwise_conv2d_forward_naive",
    "depthwise_conv2d_backward_naive",
    "pointwise_conv2d_forward",
    "pointwise_conv2d_backward",
    "pointwise_conv2d_forward_naive",
    "pointwise_conv2d_backward_naive",
]


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------

def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution along one axis.

    ``out = (size + 2*padding - kernel_size) // stride + 1``

    Raises ``ValueError`` when the kernel does not fit in the padded input.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    padded = size + 2 * padding
    if kernel_size > padded:
        raise ValueError(
            f"kernel size {kernel_size} is larger than the padded input "
            f"({size} + 2*{padding} = {padded})"
        )
    return (padded - kernel_size) // stride + 1


def pad2d(x: np.ndarray, padding: int) -> np.ndarray:
    """Zero-pad the two spatial axes of ``x`` (N, C, H, W) by ``padding`` on each side."""
    if padding == 0:
        return x
    N, C, H, W = x.shape
    xp = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=x.dtype)
    xp[:, :, padding:padding + H, padding:padding + W] = x
    return xp


def _window(xp: np.ndarray, i: int, j: int, Ho: int, Wo: int, stride: int) -> np.ndarray:
    """The strided view ``xp[:, :, i + stride*ho, j + stride*wo]`` for all (ho, wo).

    This is the input each output pixel sees at kernel offset (i, j): shape (N, C, Ho, Wo).
    """
    return xp[:, :, i:i + stride * (Ho - 1) + 1:stride, j:j + stride * (Wo - 1) + 1:stride]


def im2col(x: np.ndarray, K: int, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Unfold the K x K patches of ``x`` into columns.

    x:   (N, C, H, W)
    out: (N, C, K, K, Ho, Wo), C-contiguous, so ``out.reshape(N, C*K*K, Ho*Wo)`` is free
         and each column ``[:, :, :, :, ho, wo]`` is the patch under output pixel (ho, wo).

    Built from K*K strided views of the padded input (one copy per kernel offset,
    no loop over pixels or batch).
    """
    N, C, H, W = x.shape
    Ho = conv_output_size(H, K, stride, padding)
    Wo = conv_output_size(W, K, stride, padding)
    xp = pad2d(x, padding)
    col = np.empty((N, C, K, K, Ho, Wo), dtype=x.dtype)
    for i in range(K):
        for j in range(K):
            col[:, :, i, j] = _window(xp, i, j, Ho, Wo, stride)  # (N, C, Ho, Wo)
    return col


def col2im(col: np.ndarray, H: int, W: int, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Adjoint of :func:`im2col`: scatter-add columns back to an image.

    col: (N, C, K, K, Ho, Wo)
    out: (N, C, H, W); an input pixel covered by several patches receives the sum
         of all their entries, which is exactly the gradient of im2col.
    """
    N, C, K, _, Ho, Wo = col.shape
    dxp = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=col.dtype)
    for i in range(K):
        for j in range(K):
            _window(dxp, i, j, Ho, Wo, stride)[...] += col[:, :, i, j]  # strided +=
    if padding:
        return dxp[:, :, padding:padding + H, padding:padding + W]
    return dxp


def _check_conv_args(x, w, groups):
    if x.ndim != 4:
        raise ValueError(f"conv2d: expected input (N, C, H, W), got shape {x.shape}")
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise ValueError(f"conv2d: expected square weight (Co, C/groups, K, K), got {w.shape}")
    C = x.shape[1]
    Co, Cg = w.shape[:2]
    if groups < 1 or C % groups or Co % groups:
        raise ValueError(
            f"conv2d: groups={groups} must divide in_channels={C} and out_channels={Co}"
        )
    if Cg != C // groups:
        raise ValueError(
            f"conv2d: weight {w.shape} expects {Cg * groups} input channels "
            f"with groups={groups}, got input {x.shape}"
        )


# ----------------------------------------------------------------------------------------
# standard convolution (any groups) via im2col
# ----------------------------------------------------------------------------------------

def conv2d_forward(x, w, b=None, stride=1, padding=0, groups=1):
    """Standard 2-D convolution (cross-correlation, as in PyTorch) with ``groups``.

    x: (N, C, H, W)   w: (Co, C // G, K, K)   b: (Co,) or None
    out: (N, Co, Ho, Wo)

    im2col turns the convolution into one (batched) matrix product::

        out[n, g] = w[g] @ col[n, g]      (Co/G, C/G*K*K) @ (C/G*K*K, Ho*Wo)
    """
    _check_conv_args(x, w, groups)
    N, C, H, W = x.shape
    Co, Cg, K, _ = w.shape
    G = groups
    col = im2col(x, K, stride, padding)                       # (N, C, K, K, Ho, Wo)
    Ho, Wo = col.shape[-2:]
    col_g = col.reshape(N, G, Cg * K * K, Ho * Wo)            # free: col is contiguous
    w_g = w.reshape(G, Co // G, Cg * K * K)
    out = np.matmul(w_g, col_g)                               # (G, Co/G, CgKK) @ (N, G, CgKK, HoWo)
    out = out.reshape(N, Co, Ho, Wo)                          # -> (N, G, Co/G, HoWo), free
    if b is not None:
        out += b.reshape(1, Co, 1, 1)
    cache = (x.shape, w, b is not None, stride, padding, groups, col)
    return out, cache


def conv2d_backward(dout, cache):
    """Backward of :func:`conv2d_forward`.

    dout: (N, Co, Ho, Wo)  ->  dx (N, C, H, W), dw (Co, C/G, K, K), db (Co,) or None
    """
    x_shape, w, has_bias, stride, padding, G = cache[:6]
    col = cache[6]
    N, C, H, W = x_shape
    Co, Cg, K, _ = w.shape
    Ho, Wo = dout.shape[-2:]
    dout_g = dout.reshape(N, G, Co // G, Ho * Wo)
    col_g = col.reshape(N, G, Cg * K * K, Ho * Wo)
    # dw[g] = sum_n dout[n, g] @ col[n, g].T   (Co/G, HoWo) @ (HoWo, CgKK); BLAS transposes
    dw = np.matmul(dout_g, col_g.transpose(0, 1, 3, 2)).sum(axis=0)  # (G, Co/G, CgKK)
    dw = dw.reshape(w.shape)
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    # dcol[n, g] = w[g].T @ dout[n, g]        (CgKK, Co/G) @ (Co/G, HoWo)
    w_g = w.reshape(G, Co // G, Cg * K * K)
    dcol = np.matmul(w_g.transpose(0, 2, 1), dout_g)          # (N, G, CgKK, HoWo)
    dx = col2im(dcol.reshape(N, C, K, K, Ho, Wo), H, W, stride, padding)
    return dx, dw, db


def conv2d_forward_naive(x, w, b=None, stride=1, padding=0, groups=1):
    """Readable loop definition of :func:`conv2d_forward` (same signature and result)::

        out[n, o, i, j] = b[o] + sum_{c in group(o), p, q}
                          w[o, c - c0(o), p, q] * xpad[n, c, i*stride + p, j*stride + q]
    """
    _check_conv_args(x, w, groups)
    N, C, H, W = x.shape
    Co, Cg, K, _ = w.shape
    Ho = conv_output_size(H, K, stride, padding)
    Wo = conv_output_size(W, K, stride, padding)
    xp = pad2d(x, padding)
    out = np.zeros((N, Co, Ho, Wo), dtype=x.dtype)
    Cog = Co // groups
    for n in range(N):
        for o in range(Co):
            c0 = (o // Cog) * Cg              # first input channel of this output's group
            for i in range(Ho):
                for j in range(Wo):
                    patch = xp[n, c0:c0 + Cg, i * stride:i * stride + K, j * stride:j * stride + K]
                    out[n, o, i, j] = np.sum(patch * w[o])
            if b is not None:
                out[n, o] += b[o]
    cache = (x, w, b is not None, stride, padding, groups)
    return out, cache


def conv2d_backward_naive(dout, cache):
    """Readable loop definition of :func:`conv2d_backward`."""
    x, w, has_bias, stride, padding, groups = cache
    N, C, H, W = x.shape
    Co, Cg, K, _ = w.shape
    Ho, Wo = dout.shape[-2:]
    xp = pad2d(x, padding)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    Cog = Co // groups
    for n in range(N):
        for o in range(Co):
            c0 = (o // Cog) * Cg
            for i in range(Ho):
                for j in range(Wo):
                    hs, ws = i * stride, j * stride
                    dw[o] += dout[n, o, i, j] * xp[n, c0:c0 + Cg, hs:hs + K, ws:ws + K]
                    dxp[n, c0:c0 + Cg, hs:hs + K, ws:ws + K] += dout[n, o, i, j] * w[o]
    dx = dxp[:, :, padding:padding + H, padding:padding + W]
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db


# ----------------------------------------------------------------------------------------
# depthwise convolution: one K x K filter per channel (groups == C == Co)
# ----------------------------------------------------------------------------------------

def _check_depthwise_args(x, w):
    if x.ndim != 4:
        raise ValueError(f"depthwise_conv2d: expected input (N, C, H, W), got shape {x.shape}")
    if w.ndim != 4 or w.shape[1] != 1 or w.shape[2] != w.shape[3]:
        raise ValueError(f"depthwise_conv2d: expected weight (C, 1, K, K), got {w.shape}")
    if w.shape[0] != x.shape[1]:
        raise ValueError(
            f"depthwise_conv2d: weight {w.shape} expects {w.shape[0]} channels, got input {x.shape}"
        )


def depthwise_conv2d_forward(x, w, b=None, stride=1, padding=0):
    """Depthwise convolution as K*K strided multiply-accumulates.

    x: (N, C, H, W)   w: (C, 1, K, K)   b: (C,) or None   ->   out: (N, C, Ho, Wo)

    Each channel is convolved with its own K x K filter::

        out = sum_{i, j} w[:, 0, i, j] * xpad[:, :, i::stride, j::stride]

    No patch matrix is built: im2col would make a K*K-times larger copy of the input for
    an operation that does only K*K multiply-adds per output value.
    """
    _check_depthwise_args(x, w)
    N, C, H, W = x.shape
    K = w.shape[2]
    Ho = conv_output_size(H, K, stride, padding)
    Wo = conv_output_size(W, K, stride, padding)
    xp = pad2d(x, padding)
    wk = w.reshape(C, K, K)
    out = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    tmp = np.empty_like(out)
    for i in range(K):
        for j in range(K):
            wij = wk[:, i, j].reshape(1, C, 1, 1)
            if i == 0 and j == 0:
                np.multiply(_window(xp, i, j, Ho, Wo, stride), wij, out=out)
            else:
                np.multiply(_window(xp, i, j, Ho, Wo, stride), wij, out=tmp)
                out += tmp
    if b is not None:
        out += b.reshape(1, C, 1, 1)
    cache = (x.shape, xp, w, b is not None, stride, padding)
    return out, cache


def depthwise_conv2d_backward(dout, cache):
    """Backward of :func:`depthwise_conv2d_forward`.

    dout: (N, C, Ho, Wo) -> dx (N, C, H, W), dw (C, 1, K, K), db (C,) or None

        dw[c, 0, i, j] = sum_{n, ho, wo} dout[n, c, ho, wo] * xpad[n, c, i + s*ho, j + s*wo]
        dxpad[:, :, i::s, j::s] += w[:, 0, i, j] * dout
    """
    x_shape, xp, w, has_bias, stride, padding = cache
    N, C, H, W = x_shape
    K = w.shape[2]
    Ho, Wo = dout.shape[-2:]
    wk = w.reshape(C, K, K)
    dw = np.empty((C, K, K), dtype=w.dtype)
    dxp = np.zeros(xp.shape, dtype=dout.dtype)
    tmp = np.empty_like(dout)
    for i in range(K):
        for j in range(K):
            win = _window(xp, i, j, Ho, Wo, stride)                    # (N, C, Ho, Wo)
            dw[:, i, j] = np.einsum("nchw,nchw->c", dout, win)          # no product array
            np.multiply(dout, wk[:, i, j].reshape(1, C, 1, 1), out=tmp)
            _window(dxp, i, j, Ho, Wo, stride)[...] += tmp
    dx = dxp[:, :, padding:padding + H, padding:padding + W] if padding else dxp
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw.reshape(C, 1, K, K), db


def depthwise_conv2d_forward_naive(x, w, b=None, stride=1, padding=0):
    """Readable loop definition of :func:`depthwise_conv2d_forward`::

        out[n, c, i, j] = b[c] + sum_{p, q} w[c, 0, p, q] * xpad[n, c, i*stride + p, j*stride + q]
    """
    _check_depthwise_args(x, w)
    N, C, H, W = x.shape
    K = w.shape[2]
    Ho = conv_output_size(H, K, stride, padding)
    Wo = conv_output_size(W, K, stride, padding)
    xp = pad2d(x, padding)
    out = np.zeros((N, C, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    patch = xp[n, c, i * stride:i * stride + K, j * stride:j * stride + K]
                    out[n, c, i, j] = np.sum(patch * w[c, 0])
            if b is not None:
                out[n, c] += b[c]
    cache = (x, w, b is not None, stride, padding)
    return out, cache


def depthwise_conv2d_backward_naive(dout, cache):
    """Readable loop definition of :func:`depthwise_conv2d_backward`."""
    x, w, has_bias, stride, padding = cache
    N, C, H, W = x.shape
    K = w.shape[2]
    Ho, Wo = dout.shape[-2:]
    xp = pad2d(x, padding)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    hs, ws = i * stride, j * stride
                    dw[c, 0] += dout[n, c, i, j] * xp[n, c, hs:hs + K, ws:ws + K]
                    dxp[n, c, hs:hs + K, ws:ws + K] += dout[n, c, i, j] * w[c, 0]
    dx = dxp[:, :, padding:padding + H, padding:padding + W]
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db


# ----------------------------------------------------------------------------------------
# pointwise (1 x 1) convolution: a matrix product over channels
# ----------------------------------------------------------------------------------------

def _check_pointwise_args(x, w):
    if x.ndim != 4:
        raise ValueError(f"pointwise_conv2d: expected input (N, C, H, W), got shape {x.shape}")
    if w.ndim != 4 or w.shape[2:] != (1, 1) or w.shape[1] != x.shape[1]:
        raise ValueError(
            f"pointwise_conv2d: expected weight (Co, {x.shape[1]}, 1, 1) for input {x.shape}, "
            f"got {w.shape}"
        )


def pointwise_conv2d_forward(x, w, b=None):
    """1 x 1 convolution: ``out[n] = w @ x[n]`` on (C, H*W) views, no im2col.

    x: (N, C, H, W)   w: (Co, C, 1, 1)   b: (Co,) or None   ->   out: (N, Co, H, W)
    """
    _check_pointwise_args(x, w)
    N, C, H, W = x.shape
    Co = w.shape[0]
    x2 = x.reshape(N, C, H * W)                   # free for contiguous x
    out = np.matmul(w.reshape(Co, C), x2)         # (Co, C) @ (N, C, HW) -> (N, Co, HW)
    out = out.reshape(N, Co, H, W)
    if b is not None:
        out += b.reshape(1, Co, 1, 1)
    return out, (x2, w, b is not None, (N, C, H, W))


def pointwise_conv2d_backward(dout, cache):
    """Backward of :func:`pointwise_conv2d_forward`.

    dout: (N, Co, H, W) -> dx (N, C, H, W), dw (Co, C, 1, 1), db (Co,) or None
    """
    x2, w, has_bias, x_shape = cache
    N, C, H, W = x_shape
    Co = w.shape[0]
    d2 = dout.reshape(N, Co, H * W)
    dw = np.matmul(d2, x2.transpose(0, 2, 1)).sum(axis=0)    # sum_n (Co, HW) @ (HW, C)
    dx = np.matmul(w.reshape(Co, C).T, d2)                   # (C, Co) @ (N, Co, HW)
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx.reshape(x_shape), dw.reshape(Co, C, 1, 1), db


def pointwise_conv2d_forward_naive(x, w, b=None):
    """Readable loop definition of :func:`pointwise_conv2d_forward`::

        out[n, o, h, w] = b[o] + sum_c w[o, c, 0, 0] * x[n, c, h, w]
    """
    _check_pointwise_args(x, w)
    N, C, H, W = x.shape
    Co = w.shape[0]
    out = np.zeros((N, Co, H, W), dtype=x.dtype)
    for n in range(N):
        for o in range(Co):
            for c in range(C):
                out[n, o] += w[o, c, 0, 0] * x[n, c]
            if b is not None:
                out[n, o] += b[o]
    return out, (x, w, b is not None)


def pointwise_conv2d_backward_naive(dout, cache):
    """Readable loop definition of :func:`pointwise_conv2d_backward`."""
    x, w, has_bias = cache
    N, C, H, W = x.shape
    Co = w.shape[0]
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    for n in range(N):
        for o in range(Co):
            for c in range(C):
                dw[o, c, 0, 0] += np.sum(dout[n, o] * x[n, c])
                dx[n, c] += dout[n, o] * w[o, c, 0, 0]
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db
