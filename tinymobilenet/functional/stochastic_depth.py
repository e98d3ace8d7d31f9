"""Stochastic depth ("row" mode of torchvision.ops.stochastic_depth): drop the residual
branch of whole samples while training.

Each sample's branch output is kept with probability 1 - p and scaled by 1/(1 - p), so
its expectation is unchanged and eval mode is the identity (as inverted dropout, but one
coin per sample instead of one per value). In a residual block ``y = x + branch(x)``, a
dropped branch makes the block the identity for that sample: the network is, per sample,
shallower while training.
"""

from __future__ import annotations


from ._checks import check_dout, check_float_array

__all__ = ["stochastic_depth_forward", "stochastic_depth_backward"]


def stochastic_depth_forward(x, p, training, rng):
    """x (N, ...) -> (out, mask): out = x * mask with mask (N, 1, ...), 0 for dropped
    samples and 1/(1-p) for kept ones (p = 1 drops every sample); identity (mask None) in
    eval mode or when p == 0. ``rng``: a ``numpy.random.Generator``, one draw per sample."""
    check_float_array("stochastic_depth", "x", x)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"stochastic depth: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x, None
    survival = 1.0 - p
    keep = rng.random(x.shape[0]) < survival
    mask = keep.astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
    if survival > 0:
        mask /= survival
    return x * mask, mask


def stochastic_depth_backward(dout, mask):
    """dx = dout * mask (the same per-sample mask as forward), dout itself without one."""
    check_float_array("stochastic_depth_backward", "dout", dout)
    if mask is None:
        return dout
    if dout.ndim != mask.ndim or dout.shape[0] != mask.shape[0]:
        raise ValueError(f"stochastic_depth_backward: dout must have the shape of the "
                         f"forward's output ({mask.shape[0]}, ...) with {mask.ndim} axes, "
                         f"got {dout.shape}")
    dout = check_dout("stochastic_depth_backward", dout, dout.shape, mask.dtype)
    return dout * mask
