"""Batch normalization over (N, H, W) for each channel, PyTorch semantics.

x: (N, C, H, W) or (N, C)   gamma, beta, running_mean, running_var: (C,)

Train mode normalizes with the batch statistics (biased variance, as in the paper) and
updates the running statistics in place with ``momentum`` using the *unbiased* variance
(Bessel's correction, n / (n - 1)), exactly as ``torch.nn.BatchNorm2d`` does.
Eval mode normalizes with the running statistics and makes BN an affine map.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_dout, check_float_array, check_param
from .activations import _sigmoid_into, _silu_of_half, uses_tanh
from .reductions import SHORT_ROW, row_dots, row_sums
from .tiling import run_tiles, scratch, split_rows, threads_for

__all__ = ["batchnorm_forward", "batchnorm_backward", "batchnorm_affine", "affine_activation"]


def _check(x, fn="batchnorm"):
    check_float_array(fn, "x", x)
    if x.ndim not in (2, 4):
        raise ValueError(f"{fn}: expected input (N, C, H, W) or (N, C), got shape {x.shape}")


def _check_vectors(x, gamma, beta, running_mean, running_var):
    """gamma and beta (C,) in x's dtype (see :mod:`._checks`); the running statistics
    float arrays (C,), left as they are (train mode updates them in place)."""
    C = x.shape[1]
    vectors = {"gamma": gamma, "beta": beta, "running_mean": running_mean,
               "running_var": running_var}
    for name, v in vectors.items():
        check_float_array("batchnorm", name, v)
        if v.shape != (C,):
            raise ValueError(f"batchnorm: {name} must have shape ({C},) (one per channel) "
                             f"for input {x.shape}, got {v.shape}")
    return check_param("batchnorm", "gamma", gamma, x.dtype), \
        check_param("batchnorm", "beta", beta, x.dtype)


def _channel_tiles(x):
    """Channels per tile and the ``(c0, c1)`` tiles of ``x``: N x ct x H x W values,
    times the ~4 arrays a pass touches, fit in TILE_BYTES, so every pass over a tile
    stays in cache."""
    N, C = x.shape[:2]
    # tiles in multiples of the thread count only when the call runs on the threads
    ct = split_rows(C, 4 * x.itemsize * (x.size // C), balance=threads_for(x.size) > 1)
    return ct, [(c0, min(C, c0 + ct)) for c0 in range(0, C, ct)]


# Two shapes of a tile's rows. (N, ct*L): one contiguous run per sample, per-channel
# vectors repeated to (ct*L,), so a 7x7 map is not N*ct loops of 49 values; but the
# repeated vector is read beside the data in every pass, and making it costs a pass too,
# both 1/N of the data. (N, ct, L) with (ct, 1) vectors: loops of L values, nothing
# repeated. The second wins for L >= LONG_ROW * N. Measured, batch norm at one thread,
# eval / train forward + backward: batch 1 at 96 x 112 x 112 2.2x / 1.3x faster, at
# 144 x 56 x 56 1.3x / 1.0x; batch 4 at 32 x 96 x 96 1.5x / 1.2x; while batch 8 at
# 96 x 48 x 48 (L < 8192, repeated) would be 0.7x / 0.9x.
LONG_ROW = 1024


def _broadcast(N, L):
    return L >= LONG_ROW * N


def _shape(rows, k, L):
    """(N, k*L) values as (N, k, L) when vectors broadcast (:func:`_broadcast`)."""
    N = rows.shape[0]
    return rows.reshape(N, k, L) if _broadcast(N, L) else rows.reshape(N, -1)


def _rows(a, c0, c1, L):
    """Channels c0:c1 of ``a`` (N, C, ...) as one contiguous run per sample, (N, ct*L),
    or (N, ct, L) for long rows (see LONG_ROW)."""
    return _shape(a[:, c0:c1], c1 - c0, L)


def _tile(buf, k, L):
    """The first k channels of a tile buffer (N, ct*L), shaped like :func:`_rows`."""
    return _shape(buf[:, :k * L], k, L)


def _per_value(v, L, N):
    """A per-channel vector (ct,) shaped to broadcast against :func:`_rows`: (ct, 1)
    for long rows, else repeated to (ct*L,)."""
    return v[:, None] if _broadcast(N, L) else np.repeat(v, L)


def _channel_sum(rows, ct):
    """Rows of :func:`_rows` -> (ct,): each sample's run of L values summed in BLAS
    (:func:`.reductions.row_sums`: the training step of MobileNetV2, batch 8, 96 px,
    with this and :func:`_channel_dot`: 0.97x the time), then the sum over samples."""
    return row_sums(rows.reshape(rows.shape[0], ct, -1)).sum(axis=0)


def _channel_dot(a, b, ct):
    """Rows of :func:`_rows` x2 -> (ct,): per-channel ``sum(a * b)`` without the product
    array: one BLAS dot product per sample and channel (:func:`.reductions.row_dots`),
    or on runs shorter than SHORT_ROW values one einsum summing over the samples first
    (on MobileNetV2's 6x6 maps 0.6x the time of a BLAS dot per run)."""
    N = a.shape[0]
    a3 = a.reshape(N, ct, -1)
    if a3.shape[2] >= SHORT_ROW:
        return row_dots(a3, b.reshape(N, ct, -1)).sum(axis=0)
    return np.einsum("n...,n...->...", a, b).reshape(ct, -1).sum(axis=1)


# The activations batch norm can apply in its own pass over each tile (see
# batchnorm_forward): ReLU and ReLU6 as clips, SiLU and h-swish as short chains.
ACTIVATIONS = ("relu", "relu6", "silu", "hardswish")


def _check_activation(activation, clip):
    """The fused activation as ("clip", (lo, hi)) / ("silu", None) / ("hardswish", None)
    or None; ``clip=(lo, hi)`` is the older spelling of a clip."""
    if clip is not None:
        if activation is not None:
            raise ValueError("batchnorm: give activation= or clip=, not both")
        lo, hi = clip
        if hi is not None and not hi > lo:
            raise ValueError(f"batchnorm: clip must be (lo, hi) with hi > lo or hi None, "
                             f"got {clip}")
        return "clip", (float(lo), None if hi is None else float(hi))
    if activation is None:
        return None
    if activation not in ACTIVATIONS:
        raise ValueError(f"batchnorm: activation must be one of {', '.join(ACTIVATIONS)}, "
                         f"got {activation!r}")
    if activation in ("relu", "relu6"):
        return "clip", (0.0, None if activation == "relu" else 6.0)
    return activation, None


def _activate(act, z, saved, tmp):
    """Apply the fused activation to a tile z in place; ``saved`` (rows like z) receives
    what its backward needs in train mode: sigmoid(z) for SiLU, z itself for h-swish
    (None in eval mode, where :func:`_affine_activate` runs SiLU itself)."""
    kind, clip = act
    if kind == "clip":
        lo, hi = clip
        if hi is None:                  # a clip, not np.maximum: see relu_forward
            np.clip(z, lo, np.inf, out=z)
        else:
            np.clip(z, lo, hi, out=z)
    elif kind == "silu":                                # y = z * sigmoid(z)
        _sigmoid_into(saved, z)
        z *= saved
    else:                                               # h-swish: y = z * relu6(z + 3) / 6
        if saved is not None:
            saved[...] = z
        np.add(z, 3, out=tmp)
        np.clip(tmp, 0, 6, out=tmp)
        z *= tmp
        z /= 6


def _activation_grad(act, dy, y, saved, out, masks):
    """dz = dy * f'(z) of the fused activation for one tile, written into ``out``."""
    kind, clip = act
    if kind == "clip":                                  # 1 where lo < y < hi
        lo, hi = clip
        ins, below = masks
        np.greater(y, lo, out=ins)
        if hi is not None:
            np.logical_and(ins, np.less(y, hi, out=below), out=ins)
        return np.multiply(dy, ins, out=out)
    if kind == "silu":                                  # dy * (s + y * (1 - s))
        np.subtract(1, saved, out=out)
        out *= y
        out += saved
        out *= dy
        return out
    z = saved                                           # h-swish: (2z + 3) / 6 inside
    np.multiply(z, 2, out=out)
    out += 3
    out /= 6
    np.putmask(out, z <= -3, 0)
    np.putmask(out, z >= 3, 1)
    out *= dy
    return out


def batchnorm_affine(gamma, beta, mean, var, eps, dtype=None):
    """(scale, shift) (C,) of eval-mode batch norm, ``y = x * scale + shift``:
    scale = gamma / sqrt(var + eps), shift = beta - mean * scale; in ``dtype`` (default
    gamma's)."""
    dtype = gamma.dtype if dtype is None else dtype
    scale = (gamma * (1 / np.sqrt(var + eps))).astype(dtype, copy=False)
    return scale, (beta - mean * scale).astype(dtype, copy=False)


def _affine_activate(act, xr, outr, scale, shift, sscale, sshift, tmp, halved=False):
    """``outr = f(xr * scale + shift)`` for one tile (``scale`` None: ``f(xr + shift)``),
    f the fused activation ``act`` or None; the vectors shaped by :func:`_per_value`. SiLU
    reads only ``sscale``, ``sshift`` (:func:`_silu_vectors`), the halves (the tanh chain)
    or negatives of scale and shift (``sscale`` None: no scale).

    Each chain is as short as the algebra allows, since every pass over a tile costs.
    SiLU through tanh (float32 where that is faster: :func:`.activations.uses_tanh`)
    computes ``h = z / 2`` (two passes), ``outr = tanh(h)``,
    ``outr += 1`` and ``outr *= h``: z * sigmoid(z), five passes; otherwise ``t = -z``
    (one pass without a scale, two with),
    ``outr = -1 - exp(t)`` and ``outr = t / outr``: four or five; z first and then
    :func:`.activations._silu_into` would take six. (For z -> -inf both give -0, the
    limit from below.) The others compute z (one or two passes) and then the activation
    on it in place. ``halved``: xr already holds ``z/2 - shift/2`` and ``sshift`` is the
    half shift, so ``h`` is one add (see :func:`affine_activation`)."""
    kind = None if act is None else act[0]
    if kind == "silu" and uses_tanh(xr.dtype):
        if halved:
            np.add(xr, sshift, out=tmp)                              # h = z / 2
        else:
            np.multiply(xr, 0.5 if sscale is None else sscale, out=tmp)  # h = z / 2
            tmp += sshift
        _silu_of_half(outr, tmp)
        return
    if kind == "silu":
        if sscale is None:
            np.subtract(sshift, xr, out=tmp)                       # t = -shift - x = -z
        else:
            np.multiply(xr, sscale, out=tmp)
            tmp += sshift
        with np.errstate(over="ignore"):
            np.exp(tmp, out=outr)
        np.subtract(-1, outr, out=outr)
        np.divide(tmp, outr, out=outr)
        return
    if scale is None:
        np.add(xr, shift, out=outr)
    else:
        np.multiply(xr, scale, out=outr)
        outr += shift
    if act is not None:
        _activate(act, outr, None, tmp)


def _silu_vectors(scale, shift):
    """The per-channel vectors :func:`_affine_activate`'s SiLU chain takes in place of
    (scale, shift): halves for the tanh chain, negatives for the exp one."""
    factor = 0.5 if uses_tanh(shift.dtype) else -1
    return None if scale is None else scale * factor, shift * factor


def affine_activation(x, scale, shift, activation=None, *, halved=False):
    """``y = f(x * scale + shift)`` with ``scale`` and ``shift`` per channel (C,) and f one
    of batch norm's fused activations (``activation``: "relu", "relu6", "silu",
    "hardswish" or None); ``scale=None`` means 1.

    x: (N, C, H, W) or (N, C) -> y: same shape, x's dtype.

    This is eval-mode batch norm (``batchnorm_affine`` gives its scale and shift) and, with
    no scale, a convolution's bias, each with the activation after it, applied per channel
    tile while the tile is in cache: what ``nn.no_grad()`` runs after a convolution whose
    weights it has multiplied by the batch norm's scale (or that already carry it, after
    ``models.fold_batchnorm``). Inference only: the gradient of the same map is
    :func:`batchnorm_backward` in eval mode.

    ``halved=True`` (with ``scale=None``, SiLU and :func:`.activations.uses_tanh`): x holds
    half of the pre-activation and ``shift`` is half the shift, ``y = silu(2 * (x +
    shift))``. SiLU through tanh starts from ``h = z/2``; a caller that folds the 1/2 into
    its convolution's weights, as ``nn.no_grad()`` does, saves this function a pass.
    """
    _check(x, "affine_activation")
    act = _check_activation(activation, None)
    if halved and not (scale is None and act == ("silu", None) and uses_tanh(x.dtype)):
        raise ValueError("affine_activation: halved=True needs scale=None, activation='silu' "
                         "and a dtype whose SiLU goes through tanh (activations.uses_tanh)")
    C = x.shape[1]
    x = np.ascontiguousarray(x)
    shift = check_param("affine_activation", "shift", shift, x.dtype)
    scale = None if scale is None else check_param("affine_activation", "scale", scale, x.dtype)
    for name, v in (("shift", shift), ("scale", scale)):
        if v is not None and v.shape != (C,):
            raise ValueError(f"affine_activation: {name} must have shape ({C},) for input "
                             f"{x.shape}, got {v.shape}")
    return _affine_forward(x, scale, shift, act, *_channel_tiles(x), halved=halved)


def _affine_forward(x, scale, shift, act, ct, tiles, halved=False):
    """:func:`affine_activation` on checked arguments: contiguous x, vectors of x's dtype,
    ``act`` parsed by :func:`_check_activation`, the channel tiles of x."""
    N, C = x.shape[:2]
    L = x.size // (N * C) if x.size else 1
    out = np.empty(x.shape, dtype=x.dtype)
    silu = act is not None and act[0] == "silu"
    # SiLU's chain reads only its own vectors: the others are not repeated for nothing
    # (on narrow maps a repeat costs ~6 us a tile at batch 1)
    if not silu:
        sscale = sshift = None
    elif halved:                         # x holds z/2 - shift/2; shift is the half shift
        sscale, sshift = None, shift
    else:
        sscale, sshift = _silu_vectors(scale, shift)
    if silu:
        scale = shift = None

    def work(chunk):
        tmp = scratch("bn_xc", (N, ct * L), x.dtype) if act is not None else None
        for c0, c1 in chunk:
            k = c1 - c0

            def per_value(v):
                return None if v is None else _per_value(v[c0:c1], L, N)

            _affine_activate(act, _rows(x, c0, c1, L), _rows(out, c0, c1, L),
                             per_value(scale), per_value(shift), per_value(sscale),
                             per_value(sshift), None if tmp is None else _tile(tmp, k, L),
                             halved)

    run_tiles(work, tiles, size=x.size)
    return out


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training=True,
                      momentum=0.1, eps=1e-5, clip=None, activation=None):
    """Forward pass of batch norm, optionally fused with the activation after it.

    x: (N, C, H, W) or (N, C)   gamma, beta, running_mean, running_var: (C,)
    -> ``(out, cache)``, out shaped like x, in x's dtype. In training mode
    ``running_mean`` and ``running_var`` are updated in place. ``ValueError`` for a
    wrong shape, an unknown activation, or training on one value per channel (N*H*W = 1).

    ``activation`` ("relu", "relu6", "silu" or "hardswish") is applied to each tile while
    it is in cache, without writing and re-reading the BN output in between
    (``clip=(lo, hi)`` is a clip to [lo, hi], ``hi=None`` no upper bound: ``(0, 6)`` is
    ReLU6). The backward pass then takes the gradient with respect to the activation's
    output and applies the activation's derivative first (PyTorch's conventions at the
    kinks). In train mode SiLU keeps sigmoid(z) and h-swish keeps z (one activation-sized
    array each); in eval mode they keep nothing and the backward pass rebuilds z from x
    tile by tile; ReLU/ReLU6 need only the output.

    Per channel tile (see :func:`_channel_tiles`): the mean, ``xc = x - mean`` in a
    tile-sized scratch buffer, the biased variance from ``xc`` (two passes, no
    cancellation), then ``out = xc * (gamma*inv_std) + beta``. The cache holds ``x`` itself
    (a reference: the previous layer's output, alive anyway), the statistics and, with a
    fused activation, ``out`` (a reference too: the next layer's input) and in train mode
    SiLU's sigmoid(z) or h-swish's z; backward rebuilds ``xc`` tile by tile in cache. So
    the only activation-sized allocation is ``out`` (and that kept array, if any).
    """
    _check(x)
    gamma, beta = _check_vectors(x, gamma, beta, running_mean, running_var)
    act = _check_activation(activation, clip)
    N, C = x.shape[:2]
    L = x.size // (N * C) if x.size else 1           # values per channel per sample: H*W
    m = N * L                                        # values per channel: N*H*W
    if training and m < 2:
        raise ValueError(
            f"batchnorm: training needs more than one value per channel, got input {x.shape}"
        )
    x = np.ascontiguousarray(x)                      # so _rows are views
    mean = np.empty(C, dtype=x.dtype) if training else running_mean.astype(x.dtype)
    var = np.empty(C, dtype=x.dtype) if training else running_var.astype(x.dtype)
    inv_std = np.empty(C, dtype=x.dtype)
    ct, tiles = _channel_tiles(x)
    if not training:
        # eval: an affine map out = x * scale + shift, no x - mean buffer (the form
        # PyTorch's CPU kernel uses too), with the activation in the same short chain
        inv_std[:] = 1 / np.sqrt(var + eps)
        scale, shift = batchnorm_affine(gamma, beta, mean, var, eps, x.dtype)
        out = _affine_forward(x, scale, shift, act, ct, tiles)
        fused = None if act is None else (act, out, None, (scale, shift))
        return out, (x, gamma, inv_std, training, mean, ct, tiles, fused)

    # train mode (eval returned above): the statistics, the normalisation and the fused
    # activation, which keeps what its backward needs (sigmoid(z) or z; in eval mode the
    # backward pass rebuilds z = x * scale + shift per tile instead, so inference writes
    # nothing but the output: EfficientNet-B0 fused, batch 1 at 224 px, one thread: 69-71
    # ms a forward pass, 73-76 ms when eval kept sigmoid(z))
    out = np.empty(x.shape, dtype=x.dtype)
    saved = np.empty(x.shape, dtype=x.dtype) if act and act[0] != "clip" else None

    def work(chunk):
        buf = scratch("bn_xc", (N, ct * L), x.dtype)
        for c0, c1 in chunk:
            k = c1 - c0
            xr, outr = _rows(x, c0, c1, L), _rows(out, c0, c1, L)
            xc = _tile(buf, k, L)
            mean[c0:c1] = _channel_sum(xr, k) / m
            np.subtract(xr, _per_value(mean[c0:c1], L, N), out=xc)
            var[c0:c1] = _channel_dot(xc, xc, k) / m           # biased: normalizes the batch
            inv_std[c0:c1] = 1 / np.sqrt(var[c0:c1] + eps)
            np.multiply(xc, _per_value(gamma[c0:c1] * inv_std[c0:c1], L, N), out=outr)
            outr += _per_value(beta[c0:c1], L, N)
            if act is not None:                                # the fused activation
                _activate(act, outr, None if saved is None else _rows(saved, c0, c1, L), xc)

    run_tiles(work, tiles, size=x.size)
    # the running variance estimates the population variance: unbiased, n/(n-1)
    running_mean *= 1 - momentum
    running_mean += momentum * mean
    running_var *= 1 - momentum
    running_var += momentum * var * (m / (m - 1))
    fused = None if act is None else (act, out, saved, None)
    return out, (x, gamma, inv_std, training, mean, ct, tiles, fused)


def batchnorm_backward(dout, cache):
    """Backward pass of batch norm: ``(dx, dgamma, dbeta)``.

    dout: the gradient of ``out`` (the fused activation's output, if any), shaped like x;
    ``cache`` from :func:`batchnorm_forward` -> dx (like x), dgamma (C,), dbeta (C,).

    With m = N*H*W values per channel and xhat = (x - mean) * inv_std, train mode gives::

        dx = gamma * inv_std * (dout - mean(dout) - xhat * mean(dout * xhat))

    because the batch mean and variance depend on x too. In eval mode the statistics are
    constants and ``dx = gamma * inv_std * dout``. With xc = x - mean (rebuilt per channel
    tile) the train-mode formula is computed as
    ``dx = k * (dout - mean(dout) - xc * (inv_std**2 * mean(dout * xc)))``, k = gamma * inv_std.
    After a fused activation (see :func:`batchnorm_forward`) ``dout`` first goes through
    the activation's backward, per tile.
    """
    x, gamma, inv_std, training, mean, ct, tiles, fused = cache
    dout = check_dout("batchnorm_backward", dout, x.shape, x.dtype)
    N, C = x.shape[:2]
    L = x.size // (N * C) if x.size else 1
    m = N * L
    dout = np.ascontiguousarray(dout)
    dx = np.empty(dout.shape, dtype=dout.dtype)
    dgamma = np.empty(C, dtype=dout.dtype)
    dbeta = np.empty(C, dtype=dout.dtype)

    def work(chunk):
        buf = scratch("bn_xc", (N, ct * L), x.dtype)
        if fused is not None:
            act, out, saved, affine = fused
            inside = scratch("bn_inside", (N, ct * L), bool)
            below = scratch("bn_below", (N, ct * L), bool)
            rebuild = saved is None and act[0] != "clip"   # eval: z from x, per tile
            zbuf = scratch("bn_z", (N, ct * L), x.dtype) if rebuild else None
        for c0, c1 in chunk:
            k = c1 - c0
            dr, xr, dxr = _rows(dout, c0, c1, L), _rows(x, c0, c1, L), _rows(dx, c0, c1, L)
            if fused is not None:                      # the activation's backward first,
                kept = None if saved is None else _rows(saved, c0, c1, L)
                if rebuild:                            # z = x * scale + shift, as forward
                    kept = _tile(zbuf, k, L)
                    np.multiply(xr, _per_value(affine[0][c0:c1], L, N), out=kept)
                    kept += _per_value(affine[1][c0:c1], L, N)
                    if act[0] == "silu":               # sigmoid(z), in place
                        _sigmoid_into(kept, kept)
                dr = _activation_grad(                 # into dx's rows
                    act, dr, _rows(out, c0, c1, L), kept,
                    dxr, (_tile(inside, k, L), _tile(below, k, L)))
            xc = _tile(buf, k, L)
            np.subtract(xr, _per_value(mean[c0:c1], L, N), out=xc)
            scale = gamma[c0:c1] * inv_std[c0:c1]                   # (k,)
            dbeta[c0:c1] = _channel_sum(dr, k)
            dxc = _channel_dot(dr, xc, k)                           # sum(dout * xc)
            dgamma[c0:c1] = dxc * inv_std[c0:c1]                    # sum(dout * xhat)
            if training:                       # xc is not needed any more: reused in place
                xc *= _per_value(inv_std[c0:c1] ** 2 * dxc / m, L, N)
                xc += _per_value(dbeta[c0:c1] / m, L, N)
                np.subtract(dr, xc, out=dxr)
                dxr *= _per_value(scale, L, N)
            else:
                np.multiply(dr, _per_value(scale, L, N), out=dxr)

    run_tiles(work, tiles, size=dout.size)
    return dx, dgamma, dbeta
