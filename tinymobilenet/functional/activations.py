"""Element-wise activations and their derivatives.

Each ``*_forward(x)`` returns ``(out, cache)``; each ``*_backward(dout, cache)`` returns
``dx = dout * f'(x)`` (the chain rule, element by element). x, out, dout and dx all have
the same shape, any shape, and the input's dtype (float32 in, float32 out).

Kinks: ReLU at 0, ReLU6 at 0 and 6, hard-sigmoid and hard-swish at -3 and +3. Exactly at
a kink the derivative is a convention; we follow PyTorch's: 0 at the clip points of ReLU,
ReLU6 and hard-sigmoid, and for hard-swish 0 at x = -3 and 1 at x = +3.
"""

from __future__ import annotations

import threading

import numpy as np

from ._checks import check_dout, check_float_array
from .tiling import CHUNK, elementwise, scratch

__all__ = [
    "relu_forward", "relu_backward",
    "relu6_forward", "relu6_backward",
    "sigmoid_forward", "sigmoid_backward",
    "hardsigmoid_forward", "hardsigmoid_backward",
    "hardswish_forward", "hardswish_backward",
    "silu_forward", "silu_backward",
    "sigmoid",
]


# In float32 the sigmoid and SiLU below go through tanh, not exp, where that is faster:
# sigmoid(a) = (1 + tanh(a/2)) / 2, the same function (no overflow for any a). Which of
# the two NumPy computes faster depends on the machine: on an AMD EPYC Zen 5 with NumPy
# 2.4's AVX-512 loops, tanh takes half the time of exp (64k values in cache: 11 against
# 23 us), but with its AVX2 loops (NPY_DISABLE_CPU_FEATURES, as on a CPU without AVX-512)
# 1.7x the time (59 against 35 us). So the choice follows the loops NumPy runs: tanh where
# its AVX-512 (x86-64-v4) loops are on, exp elsewhere (:func:`uses_tanh`). It used to be
# timed once per process; but a timing on a busy machine can come out either way, and two
# processes on one machine (a run and its resumed continuation) must compute the same
# numbers. The price of tanh is relative precision near 0, where
# 1 + tanh cancels: against float64, on [-40, 40], the sigmoid is off by at most 6e-8
# and SiLU by 1.4e-6 (the exp formula: 1.3e-6, the rounding of the largest outputs), but
# SiLU's relative error reaches 2.6e-4 where |y| > 1e-3 (exp: 2e-7), and outputs below
# ~1e-6 (a < -17) are right only to that absolute precision (sigmoid(-20) comes out as
# 0). Other dtypes keep exp (float64's is the faster of the two on the EPYC too, 36
# against 50 us, and the gradient checks need its full relative precision).
_tanh_faster = None
_deciding = threading.Lock()


def _avx512_loops() -> bool:
    """Does NumPy run its AVX-512 (x86-64-v4) loops here? The CPU has them and
    NPY_DISABLE_CPU_FEATURES has not switched them off (NumPy 2 names the group X86_V4,
    NumPy 1 AVX512_SKX); False where NumPy does not say (another architecture)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:                               # NumPy 1.x
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return False
    return bool(features.get("X86_V4", features.get("AVX512_SKX", False)))


def uses_tanh(dtype) -> bool:
    """Do the sigmoid and SiLU of ``dtype`` go through tanh: float32 where NumPy runs its
    AVX-512 loops, whose tanh is the faster (see above). Fixed by the machine and NumPy,
    not by a timing, so every process on one machine computes the same numbers."""
    global _tanh_faster
    if dtype != np.float32:
        return False
    if _tanh_faster is None:
        with _deciding:                  # once, even when threads ask at the same time
            if _tanh_faster is None:
                _tanh_faster = _avx512_loops()
    return _tanh_faster


def _sigmoid_into(o, a):
    """o = sigmoid(a) in place, four passes: ``(1 + tanh(a/2)) / 2`` where
    :func:`uses_tanh` (float32, on machines where NumPy's tanh is the faster), else
    ``1 / (1 + exp(-a))`` (where exp(-a) overflows to inf the result is exactly 0, the
    correctly rounded value, so the warning is silenced)."""
    if uses_tanh(a.dtype):
        np.multiply(a, 0.5, out=o)
        np.tanh(o, out=o)
        o *= 0.5
        o += 0.5
        return
    np.negative(a, out=o)
    with np.errstate(over="ignore"):
        np.exp(o, out=o)
    o += 1
    np.reciprocal(o, out=o)


def sigmoid(x):
    """Logistic function ``1 / (1 + exp(-x))``, any shape, dtype preserved; computed in
    cache-sized chunks (see :func:`.tiling.elementwise`). x: a float32 or float64 array."""
    check_float_array("sigmoid", "x", x)
    return elementwise(_sigmoid_into, np.empty(x.shape, dtype=x.dtype), x, chunk=CHUNK)


# ReLU and ReLU6 run in every block of V1/V2, so they are computed on the tile threads
# (``elementwise``) with the result written in place: one pass, no temporaries.

def relu_forward(x):
    """``max(x, 0)``; caches x (its sign is the derivative)."""
    check_float_array("relu_forward", "x", x)
    out = np.empty(x.shape, dtype=x.dtype)
    # as a clip to [0, inf]: NumPy's maximum with a scalar runs no SIMD loop (NumPy 2.4,
    # float32 in cache: 0.31 ns a value against 0.10 for the clip); NaN stays NaN
    return elementwise(lambda o, a: np.clip(a, 0, np.inf, out=o), out, x), x


def relu_backward(dout, cache):
    """``dx = dout * [x > 0]``: the derivative is 1 where the unit is on, 0 where it is off
    (and, by convention, 0 at x = 0)."""
    x = cache
    dout = check_dout("relu_backward", dout, x.shape, x.dtype)

    def grad(o, d, a):
        np.multiply(d, a > 0, out=o)

    return elementwise(grad, np.empty(dout.shape, dtype=dout.dtype), dout, x)


def relu6_forward(x):
    """``min(max(x, 0), 6)``: ReLU capped at 6, robust in low precision (MobileNetV1/V2)."""
    check_float_array("relu6_forward", "x", x)
    out = np.empty(x.shape, dtype=x.dtype)
    return elementwise(lambda o, a: np.clip(a, 0, 6, out=o), out, x), x


def relu6_backward(dout, cache):
    """``dx = dout * [0 < x < 6]``: 1 between the kinks, 0 on both flat parts (and at the
    kinks 0 and 6 themselves, PyTorch's convention)."""
    x = cache
    dout = check_dout("relu6_backward", dout, x.shape, x.dtype)

    def grad(o, d, a):
        inside = a > 0
        inside &= a < 6
        np.multiply(d, inside, out=o)

    return elementwise(grad, np.empty(dout.shape, dtype=dout.dtype), dout, x)


def sigmoid_forward(x):
    """``s = 1 / (1 + exp(-x))``; caches s, since the derivative is written in s."""
    check_float_array("sigmoid_forward", "x", x)
    out = sigmoid(x)
    return out, out


def sigmoid_backward(dout, cache):
    """``dx = dout * s * (1 - s)``: the sigmoid's derivative, from its own output."""
    s = cache
    dout = check_dout("sigmoid_backward", dout, s.shape, s.dtype)

    def grad(o, d, s):
        np.subtract(1, s, out=o)
        o *= s
        o *= d

    return elementwise(grad, np.empty(dout.shape, dtype=dout.dtype), dout, s, chunk=CHUNK)


# The other activations below are chains of a few NumPy passes; run chunk by chunk
# (CHUNK values) each pass after the first reads from cache, and no full-size
# temporary is allocated. Measured against whole-array expressions: SiLU 0.1-0.3x the
# time at 224 px sizes (the numbers: tinymobilenet.bench's documentation).

def hardsigmoid_forward(x):
    """``relu6(x + 3) / 6``: a piecewise-linear sigmoid, cheap on mobile hardware
    (MobileNetV3); caches x."""
    check_float_array("hardsigmoid_forward", "x", x)

    def fwd(o, a):
        np.add(a, 3, out=o)
        np.clip(o, 0, 6, out=o)
        o /= 6

    return elementwise(fwd, np.empty(x.shape, dtype=x.dtype), x, chunk=CHUNK), x


def hardsigmoid_backward(dout, cache):
    """``dx = dout / 6`` for -3 < x < 3, 0 outside (and at the kinks -3 and 3)."""
    x = cache
    dout = check_dout("hardsigmoid_backward", dout, x.shape, x.dtype)

    def grad(o, d, a):
        inside = a > -3
        inside &= a < 3
        np.multiply(d, inside, out=o)
        o /= 6

    return elementwise(grad, np.empty(dout.shape, dtype=dout.dtype), dout, x, chunk=CHUNK)


def hardswish_forward(x):
    """``x * relu6(x + 3) / 6``: the piecewise swish of MobileNetV3; caches x."""
    check_float_array("hardswish_forward", "x", x)

    def fwd(o, a):
        np.add(a, 3, out=o)
        np.clip(o, 0, 6, out=o)
        o *= a
        o /= 6

    return elementwise(fwd, np.empty(x.shape, dtype=x.dtype), x, chunk=CHUNK), x


def hardswish_backward(dout, cache):
    """``dx = dout * (2x + 3) / 6`` for -3 < x < 3, 0 below -3 and 1 above 3 (at x = -3
    the derivative is 0 and at x = 3 it is 1, PyTorch's convention)."""
    x = cache
    dout = check_dout("hardswish_backward", dout, x.shape, x.dtype)

    def grad(o, d, a):
        np.multiply(a, 2, out=o)
        o += 3
        o /= 6
        np.putmask(o, a <= -3, 0)
        np.putmask(o, a >= 3, 1)
        o *= d

    return elementwise(grad, np.empty(dout.shape, dtype=dout.dtype), dout, x, chunk=CHUNK)


def _silu_of_half(o, h):
    """o = 2h * sigmoid(2h) = (1 + tanh(h)) * h, three passes, from h = a/2 (not o): the
    tail of SiLU's tanh chain, shared with batch norm's fused SiLU."""
    np.tanh(h, out=o)
    o += 1
    o *= h


def _silu_into(o, a, tmp):
    """o = a * sigmoid(a), four passes, ``tmp`` a scratch of a's shape (neither o nor a):
    ``(1 + tanh(h)) * h`` with h = a/2 where :func:`uses_tanh`, else ``a / (1 + exp(-a))``.
    For a -> -inf: -0, the limit from below."""
    if uses_tanh(a.dtype):
        np.multiply(a, 0.5, out=tmp)
        _silu_of_half(o, tmp)
        return
    np.negative(a, out=tmp)
    with np.errstate(over="ignore"):
        np.exp(tmp, out=tmp)
    tmp += 1
    np.divide(a, tmp, out=o)


def silu_forward(x):
    """``y = x * sigmoid(x) = x / (1 + exp(-x))`` (swish with beta = 1), EfficientNet's
    activation; caches x and y (see :func:`silu_backward`).

    Four passes per chunk (:func:`_silu_into`) and only y written out, not sigmoid(x)."""
    check_float_array("silu_forward", "x", x)
    out = elementwise(lambda o, a: _silu_into(o, a, scratch("silu_h", a.shape, a.dtype)),
                      np.empty(x.shape, dtype=x.dtype), x, chunk=CHUNK)
    return out, (x, out)


def silu_backward(dout, cache):
    """``dx = dout * s * (1 + x * (1 - s))`` with s = sigmoid(x): the product rule on
    x * s, since ds/dx = s * (1 - s). Written as ``dout * (s + y * (1 - s))`` with the
    cached y = x * s; s is recomputed from x chunk by chunk, in cache (the forward pass,
    run for inference far more often, then writes nothing but y)."""
    x, y = cache
    dout = check_dout("silu_backward", dout, x.shape, x.dtype)

    def grad(o, d, a, y):
        s = scratch("silu_s", a.shape, a.dtype)
        _sigmoid_into(s, a)
        np.subtract(1, s, out=o)
        o *= y
        o += s
        o *= d

    return elementwise(grad, np.empty(dout.shape, dtype=dout.dtype), dout, x, y, chunk=CHUNK)
