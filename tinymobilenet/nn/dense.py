"""Layers and blocks for feature vectors (N, D): the 1-D counterparts of the conv blocks.

    GroupedLinear            group-wise dense layer, the 1-D "depthwise" (Conv1d with groups
                             and kernel 1): x (N, D) -> (N, M), weight (M, D // groups)
    DenseSqueezeExcitation   x * sigmoid(fc2(SiLU(fc1(x))))  (there is no spatial axis to
                             squeeze, so the gate reads the vector itself)
    DenseDepthwiseSeparable  grouped "depthwise" D -> D, dense "pointwise" D -> M, BN, act
    DenseMBConv              expand -> grouped transform -> SE -> project (+ x)
    dense_groups             the group count used for a width

What carries over from 2-D and what does not: a depthwise 3x3 convolution is cheap because
each filter sees K*K pixels of one channel. A vector has no pixels, so the only thing left to
separate is *which features talk to each other*: the group-wise layer mixes features inside
groups of ``group_size`` only, costing D * group_size weights instead of D * D.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .activations import ReLU6, Sigmoid, SiLU, get_activation
from .layers import BatchNorm1d, Linear, _uniform, check_input, check_shape, make_rng
from .module import Module, Parameter, Sequential

__all__ = ["GroupedLinear", "DenseSqueezeExcitation", "DenseDepthwiseSeparable",
           "DenseMBConv", "dense_groups", "DEFAULT_GROUP_SIZE"]

DEFAULT_GROUP_SIZE = 8


def dense_groups(features: int, group_size: int = DEFAULT_GROUP_SIZE) -> int:
    """Groups for a group-wise layer on ``features`` features: as many groups as give each
    at least ``group_size`` features, and dividing ``features`` exactly.

    ``features`` a multiple of ``group_size`` (the usual case: widths are rounded to
    multiples of 8) gives ``features // group_size`` groups of exactly ``group_size``;
    fewer features than ``group_size`` give one group (an ordinary dense layer).
    """
    if group_size < 1:
        raise ValueError(f"dense_groups: group_size must be >= 1, got {group_size}")
    for g in range(max(1, features // group_size), 0, -1):
        if features % g == 0:
            return g
    return 1


class GroupedLinear(Module):
    """Group-wise dense layer ``y = grouped(x) @ weight.T + bias``
    (see :mod:`tinymobilenet.functional.grouped_linear`).

    x: (N, in_features) -> y: (N, out_features); weight (out_features, in_features // groups),
    bias (out_features,). Initialised like PyTorch's ``Conv1d``: U(+-1/sqrt(fan_in)) with
    fan_in = in_features // groups.
    """

    def __init__(self, in_features, out_features, groups=1, bias=True, *, rng=None, seed=0):
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features),
                        ("groups", groups)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"GroupedLinear: {name} must be an integer >= 1, got {v!r}")
        if in_features % groups or out_features % groups:
            raise ValueError(f"GroupedLinear({in_features}->{out_features}): groups={groups} "
                             f"must divide both in_features and out_features")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.groups = int(groups)
        rng = make_rng(rng, seed)
        bound = 1.0 / np.sqrt(in_features // groups)
        self.weight = Parameter(_uniform(rng, bound, (out_features, in_features // groups)))
        self.bias = Parameter(_uniform(rng, bound, (out_features,))) if bias else None
        self._cache = None

    def _label(self):
        return f"GroupedLinear({self.in_features}->{self.out_features}, groups={self.groups})"

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"groups={self.groups}" + ("" if self.bias is not None else ", bias=False"))

    def output_shape(self, input_shape):
        """(N, out_features) for an input (N, in_features)."""
        N, _ = check_shape(self, input_shape, self.in_features, 2, "N, {C}")
        return (N, self.out_features)

    def forward(self, x):
        check_input(self, x, self.in_features, ndim=2,
                    dtype=self.weight.data.dtype, axes="N, {C}")
        b = None if self.bias is None else self.bias.data
        y, cache = F.grouped_linear_forward(x, self.weight.data, b, self.groups)
        self._cache = self._keep(cache)
        return self._keep_output(y)

    def backward(self, dy):
        cache = self._cached(self._cache)
        dx, dw, db = F.grouped_linear_backward(self._check_dy(dy), cache)
        self.weight.grad = dw
        if self.bias is not None:
            self.bias.grad = db
        return dx


def _dense_norm_act(layer, features, activation):
    """Sequential(layer, BatchNorm1d, activation) with children "0", "1", "2" (no "2" when
    ``activation`` is None), the 1-D Conv2dNormActivation; the layer has no bias because
    BN's beta plays that role (and BN folding gives it one back)."""
    layers = [layer, BatchNorm1d(features)]
    if activation is not None:
        layers.append(get_activation(activation)())
    return Sequential(*layers)


class DenseSqueezeExcitation(Module):
    """Squeeze-and-excitation for vectors: y = x * s, s = gate(fc2(act(fc1(x)))).

    x: (N, C) -> (N, C); fc1: C -> S and fc2: S -> C are Linear layers with bias.
    With no spatial axis the "squeeze" (global pooling) is the identity, so the gate is a
    small bottleneck MLP that rescales each feature from all of them.
    """

    def __init__(self, input_features, squeeze_features, activation=SiLU,
                 scale_activation=Sigmoid, *, rng=None, seed=0):
        super().__init__()
        rng = make_rng(rng, seed)
        self.input_features, self.squeeze_features = input_features, squeeze_features
        self.fc1 = Linear(input_features, squeeze_features, rng=rng)
        self.fc2 = Linear(squeeze_features, input_features, rng=rng)
        self.activation = get_activation(activation)()
        self.scale_activation = get_activation(scale_activation)()
        self._cache = None

    def _label(self):
        return f"DenseSqueezeExcitation({self.input_features}->{self.squeeze_features})"

    def _trace(self, shape, tracer):
        s = check_shape(self, shape, self.input_features, 2, "N, {C}")
        for m in (self.fc1, self.activation, self.fc2, self.scale_activation):
            s = m.trace(s, tracer)
        return shape                                                # x * gate

    def forward(self, x):
        check_input(self, x, self.input_features, ndim=2,
                    dtype=self.fc1.weight.data.dtype, axes="N, {C}")
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(x))))   # (N, C)
        self._cache = self._keep((x, scale))
        return self._keep_output(x * scale)

    def backward(self, dy):
        x, scale = self._cached(self._cache)
        dy = self._check_dy(dy)
        # x reaches y twice: directly (times the gate) and through the gate itself
        dscale = dy * x
        dx = dy * scale
        dx += self.fc1.backward(self.activation.backward(
            self.fc2.backward(self.scale_activation.backward(dscale))))
        return dx


class DenseDepthwiseSeparable(Sequential):
    """The 1-D depthwise-separable block:

        "0"  GroupedLinear(D -> D, groups)   the "depthwise" part, mixes within groups
        "1"  Linear(D -> M)                  the "pointwise" part, mixes across all features
        "2"  BatchNorm1d(M)
        "3"  activation

    x: (N, D) -> (N, M). One BN and activation close the block (no nonlinearity between
    the two dense layers), so the pair is a factorised linear map ``W_pw @ W_dw``.
    Unlike in 2-D it does not save weights: D*D/G + D*M against D*M for one dense layer,
    because the 2-D saving comes from the K*K spatial kernel, which vectors do not have.
    """

    def __init__(self, in_features, out_features, activation=ReLU6,
                 group_size=DEFAULT_GROUP_SIZE, *, rng=None, seed=0):
        rng = make_rng(rng, seed)
        groups = dense_groups(in_features, group_size)
        super().__init__(GroupedLinear(in_features, in_features, groups, bias=False, rng=rng),
                         Linear(in_features, out_features, bias=False, rng=rng),
                         BatchNorm1d(out_features),
                         get_activation(activation)())
        self.in_features, self.out_features, self.groups = in_features, out_features, groups

    def _label(self):
        return f"DenseDepthwiseSeparable({self.in_features}->{self.out_features})"


class DenseMBConv(Module):
    """EfficientNet's MBConv for vectors (child ``block``, like torchvision's MBConv):

        expand     Linear D -> E, BN, SiLU          skipped when E == D
        transform  GroupedLinear E -> E, BN, SiLU   the "depthwise" step
        SE         DenseSqueezeExcitation(E, max(1, int(D * se_ratio)))   none if se_ratio 0
        project    Linear E -> M, BN, no activation (a linear bottleneck)
        + x        when D == M

    x: (N, D) -> (N, M); E = D * expand_ratio (a multiple of 8 when D is).
    """

    def __init__(self, in_features, out_features, expand_ratio=6, se_ratio=0.25,
                 group_size=DEFAULT_GROUP_SIZE, *, rng=None, seed=0):
        super().__init__()
        rng = make_rng(rng, seed)
        E = int(round(in_features * expand_ratio))
        self.in_features, self.out_features, self.expanded_features = in_features, out_features, E
        self.use_res_connect = in_features == out_features
        layers = []
        if E != in_features:
            layers.append(_dense_norm_act(Linear(in_features, E, bias=False, rng=rng), E, SiLU))
        layers.append(_dense_norm_act(
            GroupedLinear(E, E, dense_groups(E, group_size), bias=False, rng=rng), E, SiLU))
        if se_ratio > 0:
            layers.append(DenseSqueezeExcitation(E, max(1, int(in_features * se_ratio)),
                                                 rng=rng))
        layers.append(_dense_norm_act(Linear(E, out_features, bias=False, rng=rng),
                                      out_features, None))
        self.block = Sequential(*layers)

    def _label(self):
        return (f"DenseMBConv({self.in_features}->{self.expanded_features}->"
                f"{self.out_features})")

    def _trace(self, shape, tracer):
        check_shape(self, shape, self.in_features, 2, "N, {C}")
        return self.block.trace(shape, tracer)

    def forward(self, x):
        check_input(self, x, self.in_features, ndim=2, axes="N, {C}")
        y = self.block(x)
        return y + x if self.use_res_connect else y

    def backward(self, dy):
        dx = self.block.backward(dy)
        return dx + dy if self.use_res_connect else dx      # the identity path adds dy
