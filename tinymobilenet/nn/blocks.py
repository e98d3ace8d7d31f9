"""The building blocks of the MobileNet family, laid out as torchvision builds them.

    Conv2dNormActivation  conv -> BN -> activation               (torchvision.ops)
    DepthwiseSeparable    depthwise 3x3 -> BN -> act -> pointwise 1x1 -> BN -> act   (V1)
    SqueezeExcitation     x * gate(fc2(act(fc1(avgpool(x)))))    (V3, EfficientNet)
    InvertedResidual      expand 1x1 -> depthwise -> [SE] -> project 1x1 (linear), + x
                          (V2 with ``layout="v2"``, V3 with ``layout="v3"``)
    MBConv                EfficientNet's inverted residual: SiLU, SE, stochastic depth
    StochasticDepth       drop a whole residual branch per sample while training

Child names match torchvision's, so the state-dict keys do too.
"""

from __future__ import annotations

from .. import functional as F
from .activations import HardSigmoid, HardSwish, ReLU, ReLU6, Sigmoid, SiLU, get_activation
from .grad_mode import is_grad_enabled
from .conv import Conv2d, DepthwiseConv2d, PointwiseConv2d
from .layers import BatchNorm2d, check_input, check_shape, make_rng
from .module import Module, Sequential

__all__ = ["Conv2dNormActivation", "DepthwiseSeparable", "SqueezeExcitation",
           "InvertedResidual", "MBConv", "StochasticDepth", "make_divisible"]


# activation layers whose arithmetic the no_grad gate of SqueezeExcitation runs directly
_GATE_ACTIVATIONS = (ReLU, ReLU6, SiLU, Sigmoid, HardSigmoid, HardSwish)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to the nearest multiple of ``divisor`` without going more
    than 10 % below ``v`` (the rule of the TensorFlow MobileNet code, used by torchvision).
    """
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:          # rounding down must not remove more than 10 %
        new_v += divisor
    return new_v


class Conv2dNormActivation(Sequential):
    """conv(K, stride, groups, padding (K-1)//2) -> BatchNorm2d -> activation.

    ``padding`` overrides the conv's padding (an integer, or ``"same"`` for TensorFlow's
    SAME).

    x: (N, C_in, H, W) -> (N, C_out, Ho, Wo). Children "0" (conv), "1" (BN), "2"
    (activation, absent when ``activation_layer`` is None), as in torchvision. The conv has
    no bias because the BN's beta plays that role.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, groups=1,
                 activation_layer=ReLU, norm_eps=1e-5, norm_momentum=0.1, padding=None,
                 *, rng=None, seed=0):
        rng = make_rng(rng, seed)
        if padding is None:
            padding = (kernel_size - 1) // 2
        layers = [Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                         groups=groups, bias=False, rng=rng),
                  BatchNorm2d(out_channels, eps=norm_eps, momentum=norm_momentum)]
        activation_layer = get_activation(activation_layer)
        if activation_layer is not None:
            layers.append(activation_layer())
        super().__init__(*layers)
        self.out_channels = out_channels


class DepthwiseSeparable(Module):
    """MobileNetV1's block: depthwise K x K -> BN -> act, then pointwise 1x1 -> BN -> act.

    x: (N, C_in, H, W) -> (N, C_out, Ho, Wo), Ho = (H + 2*((K-1)//2) - K) // stride + 1.
    Children ``depthwise`` and ``pointwise`` (each a conv/BN/act Sequential).

    Cost against a full K x K convolution of the same shape (multiply-accumulates)::

        (K*K*C_in*Ho*Wo + C_in*C_out*Ho*Wo) / (K*K*C_in*C_out*Ho*Wo) = 1/C_out + 1/K^2
    """

    def __init__(self, in_channels, out_channels, stride=1, kernel_size=3,
                 activation_layer=ReLU, norm_eps=1e-5, norm_momentum=0.1, *, rng=None, seed=0):
        super().__init__()
        rng = make_rng(rng, seed)
        act = get_activation(activation_layer)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.depthwise = Sequential(
            DepthwiseConv2d(in_channels, kernel_size, stride, (kernel_size - 1) // 2, rng=rng),
            BatchNorm2d(in_channels, eps=norm_eps, momentum=norm_momentum),
            act())
        self.pointwise = Sequential(
            PointwiseConv2d(in_channels, out_channels, rng=rng),
            BatchNorm2d(out_channels, eps=norm_eps, momentum=norm_momentum),
            act())

    def _label(self):
        return f"DepthwiseSeparable({self.in_channels}->{self.out_channels}, s={self.stride})"

    def forward(self, x):
        return self.pointwise(self.depthwise(x))

    def _trace(self, shape, tracer):
        return self.pointwise.trace(self.depthwise.trace(shape, tracer), tracer)

    def backward(self, dy):
        return self.depthwise.backward(self.pointwise.backward(dy))


class SqueezeExcitation(Module):
    """Squeeze-and-excitation (torchvision layout): a per-channel gate from global context.

    x: (N, C, H, W) -> y = x * s, with s: (N, C, 1, 1) =
    scale_activation(fc2(activation(fc1(mean_{H,W} x)))), fc1: C -> S and fc2: S -> C as
    1x1 convolutions with bias (children ``fc1``, ``fc2``).
    """

    def __init__(self, input_channels, squeeze_channels, activation=ReLU,
                 scale_activation=Sigmoid, *, rng=None, seed=0):
        super().__init__()
        rng = make_rng(rng, seed)
        self.input_channels, self.squeeze_channels = input_channels, squeeze_channels
        self.fc1 = Conv2d(input_channels, squeeze_channels, 1, rng=rng)
        self.fc2 = Conv2d(squeeze_channels, input_channels, 1, rng=rng)
        self.activation = get_activation(activation)()
        self.scale_activation = get_activation(scale_activation)()
        self._cache = None

    def _label(self):
        return f"SqueezeExcitation({self.input_channels}->{self.squeeze_channels})"

    def forward(self, x):
        check_input(self, x, self.input_channels, dtype=self.fc1.weight.data.dtype)
        if not is_grad_enabled() and self._plain():
            # (through the class: the profiler times the instance's _gate_no_grad, which
            # no_grad's fusion calls on its own, and forward already includes this call)
            scale = SqueezeExcitation._gate_no_grad(self, x)
            self._forget()                  # the gate's layers were not called: no caches
            return F.excite_forward(x, scale)[0]
        pooled, pool_cache = F.global_avg_pool_forward(x, keepdims=True)    # (N, C, 1, 1)
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(pooled))))
        y, excite_cache = F.excite_forward(x, scale)                        # x * scale
        self._cache = self._keep((pool_cache, excite_cache))
        return self._keep_output(y)

    def _plain(self):
        """Are the four gate layers the library's own (a subclass may change forward)?"""
        return (type(self.fc1) is Conv2d and type(self.fc2) is Conv2d
                and type(self.activation) in _GATE_ACTIVATIONS
                and type(self.scale_activation) in _GATE_ACTIVATIONS)

    def _gate_no_grad(self, x):
        """The gate (N, C, 1, 1) of x inside ``nn.no_grad()``: the four child layers'
        arithmetic on the pooled (N, C) values, with fc1 and fc2 as plain matrix products,
        and without the layers' per-call checks and bookkeeping, which cost more than the
        arithmetic on a few hundred values. Measured at batch 1, 224 px, one thread: the
        gate in ~22 instead of ~30 us; EfficientNet-B0 in 0.991x the time, MobileNetV3-Large
        0.984x (in-process A/B, medians of 21 rounds)."""
        N, C = x.shape[:2]
        pooled, _ = F.global_avg_pool_forward(x)                           # (N, C)
        fc1, fc2 = self.fc1, self.fc2
        h = pooled @ fc1.weight.data.reshape(fc1.out_channels, C).T
        if fc1.bias is not None:
            h += fc1.bias.data
        h = type(self.activation)._forward(h)[0]
        s = h @ fc2.weight.data.reshape(C, fc2.in_channels).T
        if fc2.bias is not None:
            s += fc2.bias.data
        return type(self.scale_activation)._forward(s)[0].reshape(N, C, 1, 1)

    def _trace(self, shape, tracer):
        N, C, _, _ = check_shape(self, shape, self.input_channels)
        s = self.fc1.trace((N, C, 1, 1), tracer)                    # on the pooled (N, C, 1, 1)
        for m in (self.activation, self.fc2, self.scale_activation):
            s = m.trace(s, tracer)
        return shape                                                # x * gate

    def backward(self, dy):
        pool_cache, excite_cache = self._cached(self._cache)
        dy = self._check_dy(dy)
        dx, dscale = F.excite_backward(dy, excite_cache)                    # the product's path
        dpooled = self.fc1.backward(self.activation.backward(
            self.fc2.backward(self.scale_activation.backward(dscale))))     # (N, C, 1, 1)
        return F.global_avg_pool_backward(dpooled, pool_cache, out=dx)      # + the gate's path


class StochasticDepth(Module):
    """Drop the residual branch of whole samples with probability ``p`` while training
    ("row" mode of torchvision.ops.stochastic_depth), scaling survivors by 1/(1-p).

    x: (N, ...) -> same shape. Identity in eval mode or when p == 0.
    """

    def __init__(self, p: float, *, rng=None, seed=0):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"StochasticDepth: p must be in [0, 1], got {p}")
        self.p = float(p)
        self.rng = make_rng(rng, seed)
        self._mask = None

    def extra_repr(self):
        return f"p={self.p}"

    @property
    def mask(self):
        """The per-sample mask (N, 1, ...) of the last forward: 0 for a dropped branch,
        1/(1-p) for a kept one; None when that forward was the identity (eval, p = 0)."""
        return self._cached(self._mask, "mask")[0]

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x):
        y, mask = F.stochastic_depth_forward(x, self.p, self.training, self.rng)
        self._mask = self._keep((mask,))         # a tuple: None is a valid (eval) mask
        return self._keep_output(y)

    def backward(self, dy):
        (mask,) = self._cached(self._mask)
        return F.stochastic_depth_backward(self._check_dy(dy), mask)


class InvertedResidual(Module):
    """Inverted residual with linear bottleneck (MobileNetV2, and V3 with ``layout="v3"``).

    x: (N, C_in, H, W) -> (N, C_out, Ho, Wo)

        expand 1x1 C_in -> E (BN, act)       skipped when E == C_in
        depthwise KxK, stride (BN, act)
        [squeeze-excitation on E channels]   when ``se_channels`` is given
        project 1x1 E -> C_out (BN, *no activation*)
        + x                                  only when stride == 1 and C_in == C_out

    No activation after the projection: the bottleneck is low-dimensional and a ReLU there
    would destroy information (the V2 paper's argument); the residual connects the thin
    bottlenecks, not the wide expansions.

    ``expanded_channels`` E defaults to ``round(C_in * expand_ratio)`` (torchvision V2).
    ``stride`` must be 1 or 2 and ``layout`` "v2" or "v3" (``ValueError`` otherwise).
    ``padding`` of every conv: None for PyTorch's symmetric (K - 1) // 2, ``"same"`` for
    TensorFlow's SAME (what TF-trained weights such as EfficientNet-Lite's need).
    ``layout="v2"`` names the children ``conv.{0,1,...}`` with the projection as separate
    conv and BN entries (torchvision's MobileNetV2); ``layout="v3"`` names them
    ``block.{0,1,...}`` with the projection as a Conv2dNormActivation (MobileNetV3,
    EfficientNet).
    """

    def __init__(self, in_channels, out_channels, stride=1, expand_ratio=6.0, kernel_size=3,
                 activation=ReLU6, se_channels=None, se_activation=ReLU,
                 se_gate=HardSigmoid, expanded_channels=None, norm_eps=1e-5,
                 norm_momentum=0.1, layout="v2", padding=None, *, rng=None, seed=0):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride must be 1 or 2, got {stride}")
        if layout not in ("v2", "v3"):
            raise ValueError(f"InvertedResidual: layout must be 'v2' or 'v3', got {layout!r}")
        rng = make_rng(rng, seed)
        E = expanded_channels if expanded_channels is not None else int(
            round(in_channels * expand_ratio))
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.expanded_channels = E
        self.use_res_connect = stride == 1 and in_channels == out_channels
        bn = dict(norm_eps=norm_eps, norm_momentum=norm_momentum, padding=padding)
        layers = []
        if E != in_channels:
            layers.append(Conv2dNormActivation(in_channels, E, 1, activation_layer=activation,
                                               rng=rng, **bn))
        layers.append(Conv2dNormActivation(E, E, kernel_size, stride, groups=E,
                                           activation_layer=activation, rng=rng, **bn))
        if se_channels:
            layers.append(SqueezeExcitation(E, se_channels, se_activation, se_gate, rng=rng))
        if layout == "v2":
            layers += [Conv2d(E, out_channels, 1, padding=padding or 0, bias=False, rng=rng),
                       BatchNorm2d(out_channels, eps=norm_eps, momentum=norm_momentum)]
            self.conv = Sequential(*layers)
            object.__setattr__(self, "_body", self.conv)      # an alias, not a child
        else:
            layers.append(Conv2dNormActivation(E, out_channels, 1, activation_layer=None,
                                               rng=rng, **bn))
            self.block = Sequential(*layers)
            object.__setattr__(self, "_body", self.block)
        object.__setattr__(self, "_skip", None)   # MBConv's stochastic depth

    def _label(self):
        return (f"{type(self).__name__}({self.in_channels}->{self.expanded_channels}->"
                f"{self.out_channels}, s={self.stride})")

    def forward(self, x):
        check_input(self, x, self.in_channels)
        y = self._body(x)
        if self.use_res_connect:
            if self._skip is not None:
                y = self._skip(y)
            y = y + x
        return y

    def _trace(self, shape, tracer):
        check_shape(self, shape, self.in_channels)
        y = self._body.trace(shape, tracer)
        if self.use_res_connect and self._skip is not None:
            y = self._skip.trace(y, tracer)
        return y

    def backward(self, dy):
        if self.use_res_connect:
            dbranch = self._skip.backward(dy) if self._skip is not None else dy
            return self._body.backward(dbranch) + dy      # the identity path adds dy
        return self._body.backward(dy)


class MBConv(InvertedResidual):
    """EfficientNet's mobile inverted bottleneck (torchvision layout, children ``block``
    and ``stochastic_depth``).

    E = make_divisible(C_in * expand_ratio, 8); SE squeezes to max(1, int(C_in * se_ratio))
    channels (C_in // 4 at the default 0.25) with the block's activation and a sigmoid
    gate (sized from the block *input*, not from E as in MobileNetV3); ``activation``
    SiLU; stochastic depth on the residual branch, so it only acts when the block has a
    residual (stride 1 and C_in == C_out).

    EfficientNet-Lite's variant: ``se_ratio=None`` (no squeeze-and-excitation),
    ``activation=ReLU6``, ``padding="same"``; the block is then expand -> depthwise ->
    project (children ``block.0 ... block.2``, or two without the expansion).

    BatchNorm: torchvision's EfficientNet-B0..B4 use PyTorch's defaults (eps=1e-5,
    momentum=0.1), B5..B7 use eps=1e-3, momentum=0.01; the model passes the right pair.
    """

    def __init__(self, in_channels, out_channels, stride=1, expand_ratio=6.0, kernel_size=3,
                 stochastic_depth_prob=0.0, se_ratio=0.25, norm_eps=1e-5, norm_momentum=0.1,
                 activation=SiLU, padding=None, *, rng=None, seed=0):
        rng = make_rng(rng, seed)
        E = make_divisible(in_channels * expand_ratio, 8)
        se_channels = max(1, int(in_channels * se_ratio)) if se_ratio else None
        super().__init__(in_channels, out_channels, stride, kernel_size=kernel_size,
                         activation=activation, se_channels=se_channels,
                         se_activation=activation, se_gate=Sigmoid, expanded_channels=E,
                         norm_eps=norm_eps, norm_momentum=norm_momentum, layout="v3",
                         padding=padding, rng=rng)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, rng=rng)
        object.__setattr__(self, "_skip", self.stochastic_depth)
