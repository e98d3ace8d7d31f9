"""Stateful layers: thin classes that hold Parameters and call :mod:`tinymobilenet.functional`.

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
from .module import DEFAULT_DTYPE, Module, Parameter

__all__ = [
    "Conv2d", "DepthwiseConv2d", "PointwiseConv2d",
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


class Conv2d(Module):
    """2-D convolution (PyTorch ``nn.Conv2d`` with square kernels and zero padding).

    x: (N, C_in, H, W) -> y: (N, C_out, Ho, Wo),  Ho = (H + 2*padding - K) // stride + 1
    weight: (C_out, C_in // groups, K, K), bias: (C_out,)

    ``padding="same"`` is TensorFlow's SAME padding: Ho = ceil(H / stride), with the odd
    row/column of zeros (if any) at the bottom/right, what TF-trained weights expect
    (:mod:`tinymobilenet.functional.same_pad`). For stride 1 and odd K it equals
    ``padding=(K - 1) // 2``; for stride 2 on even sizes no integer padding does.

    The kernel is chosen from the shape: groups == C_in == C_out runs the depthwise kernel,
    a 1x1 stride-1 unpadded ungrouped convolution runs the pointwise matmul, anything else
    runs im2col + matmul. All three compute the same function.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 groups=1, bias=True, *, rng=None, seed=0):
        super().__init__()
        if isinstance(kernel_size, tuple):
            if len(set(kernel_size)) != 1:
                raise ValueError(f"Conv2d: only square kernels are supported, got {kernel_size}")
            kernel_size = kernel_size[0]
        for name, v, lo in (("in_channels", in_channels, 1), ("out_channels", out_channels, 1),
                            ("kernel_size", kernel_size, 1), ("stride", stride, 1),
                            ("groups", groups, 1)):
            if not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"Conv2d: {name} must be an integer >= {lo}, got {v!r}")
        if isinstance(padding, str):
            if padding != "same":
                raise ValueError(f"Conv2d: padding must be an integer >= 0 or \"same\" "
                                 f"(TensorFlow's SAME), got {padding!r}")
        elif not isinstance(padding, (int, np.integer)) or padding < 0:
            raise ValueError(f"Conv2d: padding must be an integer >= 0 or \"same\", "
                             f"got {padding!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv2d({in_channels}->{out_channels}): groups={groups} must divide both "
                f"in_channels={in_channels} and out_channels={out_channels}"
            )
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride = int(kernel_size), int(stride)
        self.padding = padding if padding == "same" else int(padding)
        self.groups = int(groups)
        rng = make_rng(rng, seed)
        fan_in = (in_channels // groups) * kernel_size * kernel_size
        bound = 1.0 / np.sqrt(fan_in)
        self.weight = Parameter(_uniform(
            rng, bound, (out_channels, in_channels // groups, kernel_size, kernel_size)))
        self.bias = Parameter(_uniform(rng, bound, (out_channels,))) if bias else None
        self._cache = None
        self._kind = self._pick_kernel()

    def _pick_kernel(self) -> str:
        if self.groups == self.in_channels == self.out_channels and self.groups > 1:
            return "depthwise"
        # a 1x1 kernel never pads under "same" either: (Ho - 1) * 1 + 1 - H = 0
        if (self.kernel_size == 1 and self.stride == 1 and self.padding in (0, "same")
                and self.groups == 1):
            return "pointwise"
        return "im2col"

    @property
    def same(self) -> bool:
        """True for TensorFlow's SAME padding (``padding="same"``)."""
        return self.padding == "same"

    def _label(self):
        return f"{type(self).__name__}({self.in_channels}->{self.out_channels})"

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding!r}")
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s

    def output_shape(self, input_shape):
        """(N, C_out, Ho, Wo) for an input of ``input_shape`` (N, C_in, H, W)."""
        N, C, H, W = check_shape(self, input_shape, self.in_channels)
        K, s, p = self.kernel_size, self.stride, self.padding
        if self.same:
            return (N, self.out_channels, F.same_output_size(H, s), F.same_output_size(W, s))
        try:
            Ho, Wo = F.conv_output_size(H, K, s, p), F.conv_output_size(W, K, s, p)
        except ValueError as e:
            raise ValueError(f"{self._label()}: input {tuple(input_shape)}: {e}") from None
        return (N, self.out_channels, Ho, Wo)

    def forward(self, x):
        check_input(self, x, self.in_channels, dtype=self.weight.data.dtype)
        self.output_shape(x.shape)                       # clear error if K > padded input
        w = self.weight.data
        b = None if self.bias is None else self.bias.data
        if self._kind == "pointwise":
            y, cache = F.pointwise_conv2d_forward(x, w, b)
        elif self._kind == "depthwise" and self.same:
            y, cache = F.depthwise_conv2d_same_forward(x, w, b, self.stride)
        elif self._kind == "depthwise":
            y, cache = F.depthwise_conv2d_forward(x, w, b, self.stride, self.padding)
        elif self.same:
            y, cache = F.conv2d_same_forward(x, w, b, self.stride, self.groups)
        else:
            y, cache = F.conv2d_forward(x, w, b, self.stride, self.padding, self.groups)
        self._cache = cache
        return y

    def backward(self, dy):
        cache = self._cached(self._cache)
        if self._kind == "pointwise":
            dx, dw, db = F.pointwise_conv2d_backward(dy, cache)
        elif self._kind == "depthwise" and self.same:
            dx, dw, db = F.depthwise_conv2d_same_backward(dy, cache)
        elif self._kind == "depthwise":
            dx, dw, db = F.depthwise_conv2d_backward(dy, cache)
        elif self.same:
            dx, dw, db = F.conv2d_same_backward(dy, cache)
        else:
            dx, dw, db = F.conv2d_backward(dy, cache)
        self.weight.grad = dw
        if self.bias is not None:
            self.bias.grad = db
        return dx


class DepthwiseConv2d(Conv2d):
    """One K x K filter per channel: ``Conv2d(C, C, K, groups=C)``, weight (C, 1, K, K).

    x: (N, C, H, W) -> y: (N, C, Ho, Wo). Cost: K*K*C*Ho*Wo multiply-accumulates, a factor
    C_out smaller than a full convolution; it mixes space but not channels.
    ``padding="same"``: TensorFlow's SAME, as in :class:`Conv2d`.
    """

    def __init__(self, channels, kernel_size, stride=1, padding=0, bias=False, *,
                 rng=None, seed=0):
        super().__init__(channels, channels, kernel_size, stride, padding, groups=channels,
                         bias=bias, rng=rng, seed=seed)
        self._kind = "depthwise"

    def _label(self):
        return f"DepthwiseConv2d({self.in_channels}, k={self.kernel_size}, s={self.stride})"

    def extra_repr(self):
        s = f"{self.in_channels}, kernel_size={self.kernel_size}, stride={self.stride}, " \
            f"padding={self.padding!r}"
        return s + (", bias=True" if self.bias is not None else "")


class PointwiseConv2d(Conv2d):
    """1 x 1 convolution ``Conv2d(C_in, C_out, 1)``, weight (C_out, C_in, 1, 1): a matmul
    over channels at every pixel. It mixes channels but not space.

    x: (N, C_in, H, W) -> y: (N, C_out, H, W)
    """

    def __init__(self, in_channels, out_channels, bias=False, *, rng=None, seed=0):
        super().__init__(in_channels, out_channels, 1, bias=bias, rng=rng, seed=seed)
        self._kind = "pointwise"

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}" + (
            ", bias=True" if self.bias is not None else "")


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

    def _normalize(self, x, clip=None):
        """The forward pass; ``clip=(lo, hi)`` also clips the output in the same pass (a
        fused ReLU/ReLU6, see :mod:`.fusion`), and backward then expects the gradient of
        the clipped output (:func:`tinymobilenet.functional.batchnorm_forward`)."""
        check_input(self, x, self.num_features, ndim=self._ndim,
                    dtype=self.weight.data.dtype, axes=self._axes)
        y, self._cache = F.batchnorm_forward(
            x, self.weight.data, self.bias.data, self.running_mean, self.running_var,
            training=self.training, momentum=self.momentum, eps=self.eps, clip=clip)
        if self.training:
            self.num_batches_tracked = self.num_batches_tracked + 1
        return y

    def backward(self, dy):
        dx, dgamma, dbeta = F.batchnorm_backward(dy, self._cached(self._cache))
        self.weight.grad, self.bias.grad = dgamma, dbeta
        return dx


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
        y, self._cache = F.linear_forward(x, self.weight.data, b)
        return y

    def backward(self, dy):
        dx, dw, db = F.linear_backward(dy, self._cached(self._cache))
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
        y, self._cache = F.global_avg_pool_forward(x, keepdims=not self.flatten)
        return y

    def backward(self, dy):
        return F.global_avg_pool_backward(dy, self._cached(self._cache))


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
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self._cached(self._shape))


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
        y, self._cache = F.dropout_forward(x, self.p, self.training, self.rng)
        self._ran = True
        return y

    def backward(self, dy):
        if not self._ran:
            raise RuntimeError("Dropout: backward called before forward (nothing cached)")
        return F.dropout_backward(dy, self._cache)


class Identity(Module):
    """y = x."""

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x):
        return x

    def backward(self, dy):
        return dy
