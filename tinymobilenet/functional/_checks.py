"""Argument checks shared by the public functions of :mod:`tinymobilenet.functional` (and
the layers of :mod:`tinymobilenet.nn`): what each function expects, said in the error.

They run once per call, on shapes and dtypes only (microseconds), never on the values.

The dtype rule of the functional API:

- every array argument (x, the weights, the bias, dout) is a NumPy array of float32 or
  float64; anything else (a list, ints, float16, bool, object) raises ``TypeError``
  naming the function, the argument, the dtype given and the fix;
- the computation runs in x's dtype: weights, bias and dout of the *other* one of the
  two float dtypes are cast to it (a copy of that argument, made only when the dtypes
  differ), so the output and every gradient have x's dtype, whatever the kernel.

float16 is refused: NumPy has no fast float16 matmul and its 3 digits break the kernels'
accumulations. Mixing float32 and float64 is allowed (a float32 experiment with float64
weights, as chapter 2's numerical-gradient plot runs) because the result is well defined;
the layers of :mod:`tinymobilenet.nn` are stricter: their input and ``dy`` must have the
dtype of their parameters (``check_dout(..., strict=True)``).
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["FLOAT_DTYPES", "check_float_array", "check_param", "check_bias", "check_int",
           "check_padding", "check_dout"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_float_array(fn: str, name: str, a) -> np.ndarray:
    """``a`` itself if it is a float32 or float64 ndarray, else a TypeError that says so
    (``fn``: the function for the message, ``name``: the argument)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(
            f"{fn}: {name} must be a NumPy array of float32 or float64, got "
            f"{type(a).__name__}; convert it with np.asarray({name}, dtype=np.float32)")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{fn}: {name} must be float32 or float64, got {a.dtype.name}; cast with "
            f"{name}.astype(np.float32) (or np.float64 for gradient checks)")
    return a


def check_param(fn: str, name: str, a, dtype) -> np.ndarray:
    """A float32/float64 array argument (weights, bias) in the compute dtype ``dtype``
    (x's): cast when it is the other one of the two, unchanged (no copy) otherwise."""
    if type(a) is np.ndarray and a.dtype == dtype:  # the usual case, without a further call
        return a
    check_float_array(fn, name, a)
    return a if a.dtype == dtype else a.astype(dtype)


def check_bias(fn: str, b, n: int, dtype, what: str = "output channel"):
    """None, or a float32/float64 bias of shape (n,) in ``dtype``."""
    if b is None:
        return None
    b = check_param(fn, "b", b, dtype)
    if b.shape != (n,):
        raise ValueError(f"{fn}: bias b must have shape ({n},) (one per {what}), "
                         f"got {b.shape}")
    return b


def check_int(fn: str, name: str, v, low: int) -> int:
    """An integer (Python or NumPy, not bool) >= ``low``."""
    if type(v) is int and v >= low:                 # the usual case, without the ABC check
        return v
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{fn}: {name} must be an integer >= {low}, got {v!r} "
                        f"({type(v).__name__})")
    if v < low:
        raise ValueError(f"{fn}: {name} must be an integer >= {low}, got {v!r}")
    return v


def check_padding(fn: str, padding, same_fn: str) -> int:
    """An integer padding >= 0 (the functional kernels take no strings: TensorFlow's
    SAME padding is ``same_fn``, or ``nn.Conv2d(..., padding="same")``)."""
    if type(padding) is int and padding >= 0:      # the usual case, without a further call
        return padding
    if isinstance(padding, str):
        raise TypeError(f"{fn}: padding must be an integer >= 0, got {padding!r}; for "
                        f"TensorFlow's SAME padding call {same_fn} (or use "
                        f"nn.Conv2d(..., padding=\"same\"))")
    return check_int(fn, "padding", padding, 0)


def _fn(fn) -> str:
    """The name for a message: ``fn`` itself, or a layer's ``_label()`` (the layers of
    :mod:`tinymobilenet.nn` pass themselves; their label is built only for an error)."""
    return fn if isinstance(fn, str) else fn._label()


def check_dout(fn, dout, shape, dtype, *, name="dout", strict=False) -> np.ndarray:
    """dout of a backward pass: a float32/float64 array of the forward output's ``shape``,
    returned in the forward's ``dtype``: cast when it is the other float dtype, or with
    ``strict`` (the layers, whose input dtype is fixed too) a TypeError; ``dtype`` None:
    left as it is. ``fn``: the function's name or the layer, ``name``: the argument's."""
    if type(dout) is np.ndarray and dout.shape == shape and dout.dtype == dtype:
        return dout                                       # the usual case, in ~0.3 us
    if not isinstance(dout, np.ndarray):
        raise TypeError(
            f"{_fn(fn)}: {name} must be a NumPy array of the forward's output shape "
            f"{tuple(shape)}, got {type(dout).__name__}")
    if dout.shape != tuple(shape):
        raise ValueError(f"{_fn(fn)}: {name} must have the shape of the forward's output "
                         f"{tuple(shape)}, got {dout.shape}")
    fix = "float32" if dtype is None else np.dtype(dtype).name
    if strict and dout.dtype != dtype:
        raise TypeError(f"{_fn(fn)}: {name} must be {fix}, the dtype of the forward's "
                        f"output, got {dout.dtype.name}; cast with {name}.astype(np.{fix})")
    if dout.dtype not in FLOAT_DTYPES:
        ran = "" if dtype is None else f" (the forward's output is {fix})"
        raise TypeError(f"{_fn(fn)}: {name} must be float32 or float64{ran}, got "
                        f"{dout.dtype.name}; cast with {name}.astype(np.{fix})")
    return dout if dtype is None or dout.dtype == dtype else dout.astype(dtype)

