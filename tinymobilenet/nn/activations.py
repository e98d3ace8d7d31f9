"""Activation layers (no parameters). Any shape in, same shape and dtype out.

Each layer calls its pair in :mod:`tinymobilenet.functional.activations`, whose
docstrings give the derivative."""

from __future__ import annotations

from .. import functional as F
from .layers import check_input
from .module import Module

__all__ = ["ReLU", "ReLU6", "Sigmoid", "HardSigmoid", "HardSwish", "SiLU",
           "Hardsigmoid", "Hardswish", "ACTIVATIONS", "get_activation"]


class _Activation(Module):
    _forward = _backward = None
    kinks: tuple = ()      # inputs where the derivative jumps (gradient checks avoid them)

    def __init__(self, inplace: bool = False):
        # ``inplace`` is accepted for PyTorch compatibility; NumPy layers here never
        # overwrite their input because backward may still need it.
        super().__init__()
        self._cache = None

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x):
        check_input(self, x, ndim=x.ndim if hasattr(x, "ndim") else -1)
        y, cache = type(self)._forward(x)
        self._cache = self._keep(cache)
        return self._keep_output(y)

    def backward(self, dy):
        cache = self._cached(self._cache)
        return type(self)._backward(self._check_dy(dy), cache)


class ReLU(_Activation):
    """``max(x, 0)``; derivative 1 where x > 0, else 0."""
    kinks = (0.0,)
    _forward, _backward = staticmethod(F.relu_forward), staticmethod(F.relu_backward)


class ReLU6(_Activation):
    """``min(max(x, 0), 6)`` (MobileNetV1/V2); derivative 1 on 0 < x < 6, else 0."""
    kinks = (0.0, 6.0)
    _forward, _backward = staticmethod(F.relu6_forward), staticmethod(F.relu6_backward)


class Sigmoid(_Activation):
    """``s = 1 / (1 + exp(-x))`` (EfficientNet's squeeze-and-excitation gate);
    derivative s (1 - s)."""
    _forward, _backward = staticmethod(F.sigmoid_forward), staticmethod(F.sigmoid_backward)


class HardSigmoid(_Activation):
    """``relu6(x + 3) / 6`` (MobileNetV3's SE gate); derivative 1/6 on -3 < x < 3, else 0."""
    kinks = (-3.0, 3.0)
    _forward, _backward = staticmethod(F.hardsigmoid_forward), staticmethod(F.hardsigmoid_backward)


class HardSwish(_Activation):
    """``x * relu6(x + 3) / 6`` (MobileNetV3); derivative 0 below -3, (2x + 3)/6 between,
    1 above 3."""
    kinks = (-3.0, 3.0)
    _forward, _backward = staticmethod(F.hardswish_forward), staticmethod(F.hardswish_backward)


class SiLU(_Activation):
    """``x * sigmoid(x)``, a.k.a. swish (EfficientNet); derivative s (1 + x (1 - s)),
    s = sigmoid(x)."""
    _forward, _backward = staticmethod(F.silu_forward), staticmethod(F.silu_backward)


# PyTorch spells these two with a lower-case s
Hardsigmoid = HardSigmoid
Hardswish = HardSwish

ACTIVATIONS = {
    "relu": ReLU, "relu6": ReLU6, "sigmoid": Sigmoid, "hardsigmoid": HardSigmoid,
    "hardswish": HardSwish, "silu": SiLU, "swish": SiLU,
}


def get_activation(name_or_class):
    """Activation class from a name ("relu6", "hardswish", ...) or a class; None stays None."""
    if name_or_class is None or isinstance(name_or_class, type):
        return name_or_class
    key = str(name_or_class).lower().replace("_", "").replace("-", "")
    if key not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name_or_class!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[key]
