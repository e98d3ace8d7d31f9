"""Stateful layers: thin classes that hold Parameters and call :mod:`tinymobilenet.functional`
(batch norm, linear, pooling, flatten, dropout, identity; the convolutions are in
:mod:`.conv`), and the input checks and random-generator rule every layer shares.

Weight layouts, constructor arguments and state-dict names follow PyTorch, so
``Conv2d(32, 64, 3).weight.data.shape == (64, 32, 3, 3)`` and a torch state dict
(as NumPy arrays) loads as it is.

Initialisation follows PyTorch's defaults (uniform in +-1/sqrt(fan_in) for convolution
and linear weights and biases; BatchNorm gamma=1, beta=0).  Every layer that draws
random numbers takes ``rng`` (a ``numpy.random.Generator``) or, failing that, ``seed``
(default 0), so the same seed always gives the same weights.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .grad_mode import is_grad_enabled
from .module import DEFAULT_DTYPE, Module, Parameter

__all__ = [
    "BatchNorm2d", "BatchNorm1d",
    "Linear", "GlobalAvgPool2d", "Flatten", "Dropout", "Identity",
    "check_input", "check_shape", "make_rng",
]


def make_rng(rng=None, seed: int = 0) -> np.random.Generator:
    """The generator a layer draws from: ``rng`` if given, else a new one from ``seed``."""
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return rng
    return np.random.default_rng(seed)


def _name(layer) -> str:
    """A layer's name for a message: the string itself, or a module's ``_label()`` (built
    only when there is an error to report: formatting it on every call costs time)."""
    return layer if isinstance(layer, str) else layer._label()


def check_shape(layer, shape, channels=None, ndim=4, axes="N, {C}, H, W"):
    """Raise a clear error if ``shape`` is not of the expected rank and channels, e.g.
    ``Conv2d(32->64): expected input (N, 32, H, W), got (8, 16, 28, 28)``. ``layer``: a
    name or the module itself."""
    shape = tuple(shape)
    if len(shape) != ndim or (channels is not None and shape[1] != channels):
        expected = "(" + axes.format(C=channels if channels is not None else "C") + ")"
        raise ValueError(f"{_name(layer)}: expected input {expected}, got {shape}")
    return shape


def check_input(layer, x, channels=None, ndim=4, dtype=None, axes="N, {C}, H, W"):
    """Raise a clear error if ``x`` is not an array of the expected rank, channels, dtype.

    The message names the layer (``layer``: a name or the module itself) and both the
    expected and the received shape or dtype, e.g.
    ``Conv2d(32->64): expected input (N, 32, H, W), got (8, 16, 28, 28)``.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{_name(layer)}: expected a numpy array, got {type(x).__name__}")
    check_shape(layer, x.shape, channels, ndim, axes)
    if dtype is not None and x.dtype != dtype:
        raise TypeError(
            f"{_name(layer)}: expected input dtype {np.dtype(dtype).name} (the dtype of its "
            f"parameters), got {x.dtype.name}; cast the input or call .to(dtype) on the model"
        )
    elif dtype is None and x.dtype.kind != "f":
        raise TypeError(f"{_name(layer)}: expected a floating-point input, got dtype "
                        f"{x.dtype.name}")


def _uniform(rng, bound, shape, dtype=DEFAULT_DTYPE):
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


class _BatchNorm(Module):
    _ndim = 4
    _axes = "N, {C}, H, W"

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        if not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ValueError(f"{type(self).__name__}: num_features must be >= 1, got {num_features!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{type(self).__name__}: momentum must be in [0, 1], got {momentum}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        self.weight = Parameter(np.ones(num_features, dtype=DEFAULT_DTYPE))     # gamma
        self.bias = Parameter(np.zeros(num_features, dtype=DEFAULT_DTYPE))      # beta
        self.register_buffer("running_mean", np.zeros(num_features, dtype=DEFAULT_DTYPE))
        self.register_buffer("running_var", np.ones(num_features, dtype=DEFAULT_DTYPE))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        self._cache = None

    def _label(self):
        return f"{type(self).__name__}({self.num_features})"

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def output_shape(self, input_shape):
        """The input's shape, (N, C, H, W) or (N, C) (after checking C)."""
        return check_shape(self, input_shape, self.num_features, self._ndim, self._axes)

    def forward(self, x):
        return self._normalize(x)

    def _normalize(self, x, activation=None):
        """The forward pass; ``activation`` ("relu", "relu6", "silu", "hardswish") is
        applied in the same pass (a fused activation, see :mod:`.fusion`), and backward
        then expects the gradient of the activation's output
        (:func:`tinymobilenet.functional.batchnorm_forward`)."""
        check_input(self, x, self.num_features, ndim=self._ndim,
                    dtype=self.weight.data.dtype, axes=self._axes)
        y, cache = F.batchnorm_forward(
            x, self.weight.data, self.bias.data, self.running_mean, self.running_var,
            training=self.training, momentum=self.momentum, eps=self.eps,
            activation=activation)
        self._cache = self._keep(cache)
        if self.training:
            self.num_batches_tracked = self.num_batches_tracked + 1
        return self._keep_output(y)

    def backward(self, dy):
        cache = self._cached(self._cache)
        dx, dgamma, dbeta = F.batchnorm_backward(self._check_dy(dy), cache)
        self.weight.grad, self.bias.grad = dgamma, dbeta
        return dx

    def affine(self, dtype=None):
        """(scale, shift) (C,): eval mode as ``y = x * scale + shift`` (running statistics)."""
        return F.batchnorm_affine(self.weight.data, self.bias.data, self.running_mean,
                                  self.running_var, self.eps, dtype)

    def _apply_affine(self, x, scale, shift, activation=None, halved=False):
        """``activation(x * scale + shift)`` (``scale`` None: 1) for ``nn.no_grad()``'s
        folded convolution, which has already applied this layer's scale (:mod:`.fusion`;
        ``halved``: see ``F.affine_activation``)."""
        return F.affine_activation(x, scale, shift, activation, halved=halved)


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, H, W) per channel, PyTorch semantics.

    x: (N, C, H, W) -> y: same shape. Train: batch statistics, running statistics updated
    with ``momentum`` and the unbiased variance. Eval: running statistics (an affine map,
    which is why it can be folded into the preceding convolution).
    """


class BatchNorm1d(_BatchNorm):
    """Batch norm of feature vectors: x (N, C) -> y (N, C), statistics over N."""
    _ndim = 2
    _axes = "N, {C}"


class Linear(Module):
    """Fully connected layer ``y = x @ weight.T + bias``.

    x: (N, in_features) -> y: (N, out_features); weight (out, in), bias (out,)
    """

    def __init__(self, in_features, out_features, bias=True, *, rng=None, seed=0):
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"Linear: {name} must be an integer >= 1, got {v!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        rng = make_rng(rng, seed)
        bound = 1.0 / np.sqrt(in_features)
        self.weight = Parameter(_uniform(rng, bound, (out_features, in_features)))
        self.bias = Parameter(_uniform(rng, bound, (out_features,))) if bias else None
        self._cache = None

    def _label(self):
        return f"Linear({self.in_features}->{self.out_features})"

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}" + (
            "" if self.bias is not None else ", bias=False")

    def output_shape(self, input_shape):
        """(N, out_features) for an input (N, in_features)."""
        N, _ = check_shape(self, input_shape, self.in_features, 2, "N, {C}")
        return (N, self.out_features)

    def forward(self, x):
        check_input(self, x, self.in_features, ndim=2,
                    dtype=self.weight.data.dtype, axes="N, {C}")
        b = None if self.bias is None else self.bias.data
        y, cache = F.linear_forward(x, self.weight.data, b)
        self._cache = self._keep(cache)
        return self._keep_output(y)

    def backward(self, dy):
        cache = self._cached(self._cache)
        dx, dw, db = F.linear_backward(self._check_dy(dy), cache)
        self.weight.grad = dw
        if self.bias is not None:
            self.bias.grad = db
        return dx


class GlobalAvgPool2d(Module):
    """Mean over the spatial axes: (N, C, H, W) -> (N, C, 1, 1), like
    ``nn.AdaptiveAvgPool2d(1)``; with ``flatten=True`` -> (N, C)."""

    def __init__(self, flatten=False):
        super().__init__()
        self.flatten = bool(flatten)
        self._cache = None

    def extra_repr(self):
        return "flatten=True" if self.flatten else ""

    def output_shape(self, input_shape):
        """(N, C) with ``flatten``, else (N, C, 1, 1)."""
        N, C, _, _ = check_shape(self, input_shape)
        return (N, C) if self.flatten else (N, C, 1, 1)

    def forward(self, x):
        check_input(self, x)
        y, cache = F.global_avg_pool_forward(x, keepdims=not self.flatten)
        self._cache = self._keep(cache)
        return self._keep_output(y)

    def backward(self, dy):
        cache = self._cached(self._cache)
        return F.global_avg_pool_backward(self._check_dy(dy), cache)


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1*d2*...), like ``nn.Flatten()``."""

    def __init__(self):
        super().__init__()
        self._shape = None

    def output_shape(self, input_shape):
        """(N, d1*d2*...)."""
        return (input_shape[0], int(np.prod(input_shape[1:], dtype=np.int64)))

    def forward(self, x):
        if not isinstance(x, np.ndarray) or x.ndim < 1:
            raise ValueError(f"Flatten: expected an array (N, ...), got {getattr(x, 'shape', x)}")
        self._shape = self._keep(x.shape)
        return self._keep_output(x.reshape(x.shape[0], -1))

    def backward(self, dy):
        shape = self._cached(self._shape)
        return self._check_dy(dy).reshape(shape)


class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability ``p`` and scale
    the survivors by 1/(1-p); identity in eval mode. Any shape in, same shape out."""

    def __init__(self, p=0.5, *, rng=None, seed=0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = make_rng(rng, seed)
        self._cache = None
        self._ran = False

    def extra_repr(self):
        return f"p={self.p}"

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x):
        y, cache = F.dropout_forward(x, self.p, self.training, self.rng)
        self._cache, self._ran = self._keep(cache), is_grad_enabled()
        return self._keep_output(y)

    def backward(self, dy):
        if not self._ran:
            raise RuntimeError("Dropout: backward called before forward (nothing cached; a "
                               "forward inside no_grad() keeps nothing)")
        return F.dropout_backward(self._check_dy(dy), self._cache)


class Identity(Module):
    """y = x."""

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x):
        return x

    def backward(self, dy):
        return dy
