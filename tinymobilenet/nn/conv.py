"""Convolution layers: ``Conv2d`` (any ``groups``, integer or TensorFlow "same" padding),
``DepthwiseConv2d`` and ``PointwiseConv2d``, thin classes over :mod:`tinymobilenet.functional`.

Weights in PyTorch's layout (Co, C // groups, K, K) and PyTorch's default initialisation
(uniform in +-1/sqrt(fan_in)); ``rng`` or ``seed`` as every layer (see :mod:`.layers`).
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .layers import _uniform, check_input, check_shape, make_rng
from .module import Module, Parameter

__all__ = ["Conv2d", "DepthwiseConv2d", "PointwiseConv2d"]


class Conv2d(Module):
    """2-D convolution (PyTorch ``nn.Conv2d`` with square kernels and zero padding).

    x: (N, C_in, H, W) -> y: (N, C_out, Ho, Wo),  Ho = (H + 2*padding - K) // stride + 1
    weight: (C_out, C_in // groups, K, K), bias: (C_out,)

    ``padding="same"`` is TensorFlow's SAME padding: Ho = ceil(H / stride), with the odd
    row/column of zeros (if any) at the bottom/right, what TF-trained weights expect
    (:mod:`tinymobilenet.functional.same_pad`). For stride 1 and odd K it equals
    ``padding=(K - 1) // 2``; for stride 2 on even sizes no integer padding does.

    The kernel is chosen from the shape: groups == C_in == C_out > 1 runs the depthwise kernel,
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
        b = None if self.bias is None else self.bias.data
        y, cache = self._run(x, self.weight.data, b)
        self._cache = self._keep(cache)
        return self._keep_output(y)

    def _run(self, x, w, b):
        """(y, cache): this layer's kernel on ``x`` with weights ``w`` and bias ``b`` (its
        own, or derived from them: ``nn.no_grad()`` folds a batch norm's scale into w)."""
        check_input(self, x, self.in_channels, dtype=w.dtype)
        self.output_shape(x.shape)                       # clear error if K > padded input
        if self._kind == "pointwise":
            return F.pointwise_conv2d_forward(x, w, b)
        if self._kind == "depthwise" and self.same:
            return F.depthwise_conv2d_same_forward(x, w, b, self.stride)
        if self._kind == "depthwise":
            return F.depthwise_conv2d_forward(x, w, b, self.stride, self.padding)
        if self.same:
            return F.conv2d_same_forward(x, w, b, self.stride, self.groups)
        return F.conv2d_forward(x, w, b, self.stride, self.padding, self.groups)

    def backward(self, dy):
        cache = self._cached(self._cache)
        dy = self._check_dy(dy)
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
