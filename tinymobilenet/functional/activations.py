"""Element-wise activations and their derivatives.

Each ``*_forward(x)`` returns ``(out, cache)``; each ``*_backward(dout, cache)`` returns
``dx = dout * f'(x)`` (the chain rule, element by element). x, out, dout and dx all have
the same shape, any shape, and the input's dtype (float32 in, float32 out).

Kinks: ReLU at 0, ReLU6 at 0 and 6, hard-sigmoid and hard-swish at -3 and +3. Exactly at
a kink the derivative is a convention; we follow PyTorch's: 0 at the clip points of ReLU,
ReLU6 and hard-sigmoid, and for hard-swish 0 at x = -3 and 1 at x = +3.
"""

from __future__ import annotations

import numpy as np

from .tiling import elementwise

__all__ = [
    "relu_forward", "relu_backward",
    "relu6_forward", "relu6_backward",
    "sigmoid_forward", "sigmoid_backward",
    "hardsigmoid_forward", "hardsigmoid_backward",
    "hardswish_forward", "hardswish_backward",
    "silu_forward", "silu_backward",
    "sigmoid",
]


def sigmoid(x):
    """Numerically stable logistic function 1 / (1 + exp(-x)), dtype preserved."""
    # exp of a non-positive number never overflows: use exp(-|x|) for both signs.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


# ReLU and ReLU6 run in every block of V1/V2, so they are computed on the tile threads
# (``elementwise``) with the result written in place: one pass, no temporaries.

def relu_forward(x):
    """``max(x, 0)``; caches x (its sign is the derivative)."""
    out = np.empty(x.shape, dtype=x.dtype)
    return elementwise(lambda o, a: np.maximum(a, 0, out=o), out, x), x


def relu_backward(dout, cache):
    """``dx = dout * [x > 0]``: the derivative is 1 where the unit is on, 0 where it is off
    (and, by convention, 0 at x = 0)."""
    x = cache

    def grad(o, d, a):
        np.multiply(d, a > 0, out=o)

    return elementwise(grad, np.empty(dout.shape, dtype=dout.dtype), dout, x)


def relu6_forward(x):
    """``min(max(x, 0), 6)``: ReLU capped at 6, robust in low precision (MobileNetV1/V2)."""
    out = np.empty(x.shape, dtype=x.dtype)
    return elementwise(lambda o, a: np.clip(a, 0, 6, out=o), out, x), x


def relu6_backward(dout, cache):
    """``dx = dout * [0 < x < 6]``: 1 between the kinks, 0 on both flat parts (and at the
    kinks 0 and 6 themselves, PyTorch's convention)."""
    x = cache

    def grad(o, d, a):
        inside = a > 0
        inside &= a < 6
        np.multiply(d, inside, out=o)

    return elementwise(grad, np.empty(dout.shape, dtype=dout.dtype), dout, x)


def sigmoid_forward(x):
    """``s = 1 / (1 + exp(-x))``; caches s, since the derivative is written in s."""
    out = sigmoid(x)
    return out, out


def sigmoid_backward(dout, cache):
    """``dx = dout * s * (1 - s)``: the sigmoid's derivative, from its own output."""
    s = cache
    return dout * s * (1 - s)


def hardsigmoid_forward(x):
    """relu6(x + 3) / 6: a piecewise-linear sigmoid, cheap on mobile hardware (MobileNetV3)."""
    out = np.clip(x + 3, 0, 6) / 6
    return out.astype(x.dtype, copy=False), x


def hardsigmoid_backward(dout, cache):
    """``dx = dout / 6`` for -3 < x < 3, 0 outside (and at the kinks -3 and 3)."""
    x = cache
    return dout * ((x > -3) & (x < 3)) / 6


def hardswish_forward(x):
    """x * relu6(x + 3) / 6: the piecewise swish of MobileNetV3."""
    out = x * np.clip(x + 3, 0, 6) / 6
    return out.astype(x.dtype, copy=False), x


def hardswish_backward(dout, cache):
    """``dx = dout * (2x + 3) / 6`` for -3 < x < 3, 0 below -3 and 1 above 3 (at x = -3
    the derivative is 0 and at x = 3 it is 1, PyTorch's convention)."""
    x = cache
    # d/dx [x (x + 3) / 6] = (2x + 3) / 6 in the middle, 0 below -3, 1 above 3
    grad = np.where(x <= -3, 0, np.where(x < 3, (2 * x + 3) / 6, 1)).astype(dout.dtype, copy=False)
    return dout * grad


def silu_forward(x):
    """``x * sigmoid(x)`` (swish with beta = 1), EfficientNet's activation; caches x and
    s = sigmoid(x)."""
    s = sigmoid(x)
    return x * s, (x, s)


def silu_backward(dout, cache):
    """``dx = dout * s * (1 + x * (1 - s))`` with s = sigmoid(x): the product rule on
    x * s, since ds/dx = s * (1 - s)."""
    x, s = cache
    return dout * (s * (1 + x * (1 - s)))
