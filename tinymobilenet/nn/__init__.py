"""Stateful layers and blocks with PyTorch names, layouts and state-dict keys.

Every module has ``forward(x) -> y`` (also ``module(x)``) and ``backward(dy) -> dx``,
which stores dL/dparam in each parameter's ``.grad``. ``with no_grad():`` runs forward
passes that keep nothing for backward (faster inference, :mod:`.grad_mode`).
"""

from .module import DEFAULT_DTYPE, Module, Parameter, Sequential, StateDictError
from .grad_mode import is_grad_enabled, no_grad
from .layers import (BatchNorm1d, BatchNorm2d, Dropout, Flatten, GlobalAvgPool2d, Identity,
                     Linear, check_input, check_shape, make_rng)
from .conv import Conv2d, DepthwiseConv2d, PointwiseConv2d
from .activations import (ACTIVATIONS, HardSigmoid, Hardsigmoid, HardSwish, Hardswish, ReLU,
                          ReLU6, Sigmoid, SiLU, get_activation)
from .loss import CrossEntropyLoss
from .blocks import (Conv2dNormActivation, DepthwiseSeparable, InvertedResidual, MBConv,
                     SqueezeExcitation, StochasticDepth, make_divisible)
from .dense import *  # noqa: F401,F403  (GroupedLinear and the 1-D blocks)
from .fusion import (BatchNormAct1d, BatchNormAct2d, fuse_batchnorm_activation, fused,
                     unfuse_batchnorm_activation, unfused)

__all__ = [
    "DEFAULT_DTYPE", "Module", "Parameter", "Sequential", "StateDictError", "no_grad",
    "is_grad_enabled",
    "BatchNormAct1d", "BatchNormAct2d", "fuse_batchnorm_activation",
    "unfuse_batchnorm_activation", "fused", "unfused",
    "Conv2d", "DepthwiseConv2d", "PointwiseConv2d", "BatchNorm2d", "BatchNorm1d",
    "Linear", "GlobalAvgPool2d", "Flatten", "Dropout", "Identity",
    "ReLU", "ReLU6", "Sigmoid", "HardSigmoid", "HardSwish", "SiLU", "Hardsigmoid", "Hardswish",
    "ACTIVATIONS", "get_activation", "CrossEntropyLoss",
    "Conv2dNormActivation", "DepthwiseSeparable", "SqueezeExcitation", "InvertedResidual",
    "MBConv", "StochasticDepth", "make_divisible", "check_input", "check_shape", "make_rng",
]
