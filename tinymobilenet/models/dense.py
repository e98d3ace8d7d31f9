"""1-D (feature-vector) variants of MobileNet and EfficientNet: [N, input_dim] ->
[N, num_classes] (or [N, last width] without a classifier).

These keep the *ideas* of the image networks for tabular or embedded features, where there
is no spatial axis: a cheap group-wise "depthwise" layer beside a dense "pointwise" one,
inverted bottlenecks with squeeze-excitation, width and depth multipliers.

``mobilenet(input_dim, hidden_dims=(64, 128, 256), ...)``::

    stem     Linear(input_dim -> w(hidden_dims[0])) -> BN -> act
    blocks   per hidden dim h: DenseDepthwiseSeparable(prev -> w(h)): group-wise dense
             "depthwise" (prev -> prev), dense "pointwise" (prev -> w(h)), BN, act
    head     dropout -> Linear(-> num_classes)          (dropout alone without a classifier)

``efficientnet(input_dim, base_dim=32, ...)``::

    stem        Linear(input_dim -> w(base_dim)) -> BN -> SiLU
    stages      DENSE_EFFICIENTNET_STAGES: (width factor f, repeats n) = (1, 1), (2, 2), (4, 2);
                stage i has ceil(n * depth_multiplier) DenseMBConv blocks to w(f * base_dim)
                (``expand_ratio`` 6, ``se_ratio`` 0.25 (0: no squeeze-excitation), residual
                when input and output widths match)
    head_dense  with ``head_dim``: Linear(-> w(head_dim)) -> BN -> SiLU, the "Head Dense"
                before the classifier (the 1-D twin of EfficientNet's 1x1 head convolution)
    head        dropout -> Linear(-> num_classes)

Choices the seed descriptions leave open, made here:

- **Rounding of scaled widths**: ``w(c) = make_divisible(c * width_multiplier, 8)``, the
  rule of the image networks (nearest multiple of 8, at least 8, never more than 10 % below).
  So ``width_multiplier=0.5`` turns (64, 128, 256) into (32, 64, 128), and a width of 12
  becomes 16. ``divisor=1`` keeps the seed descriptions' own rule instead,
  ``max(1, round(c * width_multiplier))`` (a width of 12 stays 12; the group-wise layers
  then take the largest group count that divides the width, see ``dense_groups``).
  Depth: ``ceil(repeats * depth_multiplier)``, torchvision's EfficientNet rule.
- **Group count** of the group-wise layers: groups of ``group_size=8`` features
  (``dense_groups``): ``D // 8`` groups for a width D (a multiple of 8 after rounding), one
  group (a plain dense layer) below 8. Group size 1 would make the layer a per-feature scale,
  which BN right after it could absorb; 8 keeps it a real, cheap mixing step.
- **Activation**: ``activation`` applies to the stem and every block (default ReLU6, as the
  stem "dense-BN-ReLU6" of the description); the EfficientNet variant always uses SiLU.
- **One BN and activation per separable block**, after the pointwise layer, as described
  (not after each half as in the 2-D MobileNetV1 block).
- EfficientNet's 1x1 head convolution (4 x wider) is optional (``head_dim``, default none,
  so the default network is the one the seed describes); stochastic depth is left out.
"""

from __future__ import annotations

import inspect
import math

from .. import nn
from ._common import check_options, check_positive

__all__ = ["mobilenet", "efficientnet", "mobilenet_output_size", "efficientnet_output_size",
           "DenseMobileNet", "DenseEfficientNet", "DENSE_EFFICIENTNET_STAGES"]

# (width as a multiple of base_dim, repeats) of the dense EfficientNet's stages
DENSE_EFFICIENTNET_STAGES = ((1, 1), (2, 2), (4, 2))


def _width(c, multiplier, divisor=8):
    """A scaled width: a multiple of ``divisor`` (the image networks' rule), or with
    ``divisor=1`` the seed descriptions' ``max(1, round(c * multiplier))``."""
    if divisor == 1:
        return max(1, round(c * multiplier))
    return nn.make_divisible(c * multiplier, divisor)


def _check_common(model, input_dim, width_multiplier, num_classes, dropout, divisor=8):
    if not isinstance(input_dim, int) or isinstance(input_dim, bool) or input_dim < 1:
        raise ValueError(f"{model}: input_dim must be an integer >= 1, got {input_dim!r}")
    check_positive(model, "width_multiplier", width_multiplier)
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < 1:
        raise ValueError(f"{model}: divisor must be an integer >= 1, got {divisor!r}")
    check_options(model, 1 if num_classes is None else num_classes, dropout)


def _check_efficientnet(model, base_dim, depth_multiplier, expand_ratio, se_ratio, head_dim):
    if not isinstance(base_dim, int) or base_dim < 1:
        raise ValueError(f"{model}: base_dim must be an integer >= 1, got {base_dim!r}")
    check_positive(model, "depth_multiplier", depth_multiplier)
    if not (isinstance(expand_ratio, (int, float)) and expand_ratio >= 1):
        raise ValueError(f"{model}: expand_ratio must be >= 1, got {expand_ratio!r}")
    if not (isinstance(se_ratio, (int, float)) and 0 <= se_ratio <= 1):
        raise ValueError(f"{model}: se_ratio must be in [0, 1] (0: no squeeze-excitation), "
                         f"got {se_ratio!r}")
    if head_dim is not None and (not isinstance(head_dim, int) or head_dim < 1):
        raise ValueError(f"{model}: head_dim must be None or an integer >= 1, got {head_dim!r}")


def _head(features, num_classes, dropout, rng):
    """dropout -> Linear, or dropout alone without a classifier."""
    layers = [nn.Dropout(dropout, rng=rng)]
    if num_classes is not None:
        layers.append(nn.Linear(features, num_classes, rng=rng))
    return nn.Sequential(*layers)


class _DenseNet(nn.Module):
    """stem -> blocks -> head_dense (an Identity unless there is one) -> head on
    (N, input_dim) feature vectors."""

    name = "dense"

    def _label(self):
        return self.name

    def forward(self, x):
        nn.check_input(self.name, x, self.input_dim, ndim=2, axes="N, {C}",
                       dtype=self.stem[0].weight.data.dtype)
        return self.head(self.head_dense(self.blocks(self.stem(x))))

    def _trace(self, shape, tracer):
        s = nn.check_shape(self.name, shape, self.input_dim, 2, "N, {C}")
        for m in (self.stem, self.blocks, self.head_dense, self.head):
            s = m.trace(s, tracer)
        return s

    def backward(self, dy):
        return self.stem.backward(self.blocks.backward(
            self.head_dense.backward(self.head.backward(dy))))


class DenseMobileNet(_DenseNet):
    """The 1-D MobileNet; see the module docstring."""

    name = "dense.mobilenet"

    def __init__(self, input_dim, hidden_dims=(64, 128, 256), width_multiplier=1.0,
                 num_classes=None, activation="relu6", dropout=0.0, *,
                 group_size=nn.DEFAULT_GROUP_SIZE, divisor=8, rng=None, seed=0):
        super().__init__()
        _check_common(self.name, input_dim, width_multiplier, num_classes, dropout, divisor)
        hidden_dims = tuple(hidden_dims)
        if not hidden_dims or any(not isinstance(h, int) or h < 1 for h in hidden_dims):
            raise ValueError(f"{self.name}: hidden_dims must be a non-empty sequence of "
                             f"integers >= 1, got {hidden_dims!r}")
        act = nn.get_activation(activation)
        rng = nn.make_rng(rng, seed)
        self.input_dim, self.num_classes = input_dim, num_classes
        widths = [_width(h, width_multiplier, divisor) for h in hidden_dims]
        self.stem = nn.Sequential(nn.Linear(input_dim, widths[0], bias=False, rng=rng),
                                  nn.BatchNorm1d(widths[0]), act())
        blocks, prev = [], widths[0]
        for w in widths:
            blocks.append(nn.DenseDepthwiseSeparable(prev, w, act, group_size, rng=rng))
            prev = w
        self.blocks = nn.Sequential(*blocks)
        self.head_dense = nn.Identity()
        self.head = _head(prev, num_classes, dropout, rng)
        self.out_features = num_classes if num_classes is not None else prev


class DenseEfficientNet(_DenseNet):
    """The 1-D EfficientNet; see the module docstring."""

    name = "dense.efficientnet"

    def __init__(self, input_dim, base_dim=32, depth_multiplier=1.0, width_multiplier=1.0,
                 num_classes=None, dropout=0.0, *, expand_ratio=6, se_ratio=0.25,
                 head_dim=None, group_size=nn.DEFAULT_GROUP_SIZE, divisor=8, rng=None,
                 seed=0):
        super().__init__()
        _check_common(self.name, input_dim, width_multiplier, num_classes, dropout, divisor)
        _check_efficientnet(self.name, base_dim, depth_multiplier, expand_ratio, se_ratio,
                            head_dim)
        rng = nn.make_rng(rng, seed)
        self.input_dim, self.num_classes = input_dim, num_classes
        prev = _width(base_dim, width_multiplier, divisor)
        self.stem = nn.Sequential(nn.Linear(input_dim, prev, bias=False, rng=rng),
                                  nn.BatchNorm1d(prev), nn.SiLU())
        stages = []
        for factor, repeats in DENSE_EFFICIENTNET_STAGES:
            w = _width(factor * base_dim, width_multiplier, divisor)
            stage = []
            for _ in range(int(math.ceil(repeats * depth_multiplier))):
                stage.append(nn.DenseMBConv(prev, w, expand_ratio=expand_ratio,
                                            se_ratio=se_ratio, group_size=group_size, rng=rng))
                prev = w
            stages.append(nn.Sequential(*stage))
        self.blocks = nn.Sequential(*stages)
        if head_dim is None:
            self.head_dense = nn.Identity()
        else:
            width = _width(head_dim, width_multiplier, divisor)
            self.head_dense = nn.Sequential(nn.Linear(prev, width, bias=False, rng=rng),
                                            nn.BatchNorm1d(width), nn.SiLU())
            prev = width
        self.head = _head(prev, num_classes, dropout, rng)
        self.out_features = num_classes if num_classes is not None else prev


def mobilenet(input_dim, hidden_dims=(64, 128, 256), width_multiplier=1.0, num_classes=None,
              activation="relu6", dropout=0.0, *, seed=0, rng=None,
              group_size=nn.DEFAULT_GROUP_SIZE, divisor=8):
    """1-D MobileNet: (N, input_dim) -> (N, num_classes or w(hidden_dims[-1])).
    ``divisor``: scaled widths are multiples of it (1: ``max(1, round(h * width_multiplier))``)."""
    return DenseMobileNet(input_dim, hidden_dims, width_multiplier, num_classes, activation,
                          dropout, group_size=group_size, divisor=divisor, rng=rng, seed=seed)


def efficientnet(input_dim, base_dim=32, depth_multiplier=1.0, width_multiplier=1.0,
                 num_classes=None, dropout=0.0, *, expand_ratio=6, se_ratio=0.25,
                 head_dim=None, seed=0, rng=None, group_size=nn.DEFAULT_GROUP_SIZE,
                 divisor=8):
    """1-D EfficientNet: (N, input_dim) -> (N, num_classes, or w(head_dim) with a head
    dense layer, or w(4 * base_dim)). ``expand_ratio`` and ``se_ratio`` of every MBConv
    block; ``head_dim`` the width of the "Head Dense" layer before the classifier (None:
    no such layer); ``divisor`` as in :func:`mobilenet`."""
    return DenseEfficientNet(input_dim, base_dim, depth_multiplier, width_multiplier,
                             num_classes, dropout, expand_ratio=expand_ratio,
                             se_ratio=se_ratio, head_dim=head_dim, group_size=group_size,
                             divisor=divisor, rng=rng, seed=seed)


def _bind(factory, opts):
    """The factory's arguments with defaults filled in; unknown options refused by name."""
    sig = inspect.signature(factory)
    unknown = [k for k in opts if k not in sig.parameters]
    if unknown:
        raise TypeError(f"{factory.__name__}_output_size: unknown option {unknown[0]!r}; "
                        f"options are {list(sig.parameters)}")
    try:
        bound = sig.bind(**opts)
    except TypeError as e:
        raise TypeError(f"{factory.__name__}_output_size: {e}") from None
    bound.apply_defaults()
    return bound.arguments


def mobilenet_output_size(**opts) -> int:
    """Output features of ``mobilenet(**opts)`` without building it: ``num_classes`` if
    given, else the rounded last hidden width."""
    a = _bind(mobilenet, opts)
    _check_common("dense.mobilenet", a["input_dim"], a["width_multiplier"], a["num_classes"],
                  a["dropout"], a["divisor"])
    if a["num_classes"] is not None:
        return a["num_classes"]
    return _width(tuple(a["hidden_dims"])[-1], a["width_multiplier"], a["divisor"])


def efficientnet_output_size(**opts) -> int:
    """Output features of ``efficientnet(**opts)`` without building it: ``num_classes`` if
    given, else the rounded width of the head dense layer if there is one, else of the
    last stage."""
    a = _bind(efficientnet, opts)
    _check_common("dense.efficientnet", a["input_dim"], a["width_multiplier"],
                  a["num_classes"], a["dropout"], a["divisor"])
    _check_efficientnet("dense.efficientnet", a["base_dim"], a["depth_multiplier"],
                        a["expand_ratio"], a["se_ratio"], a["head_dim"])
    if a["num_classes"] is not None:
        return a["num_classes"]
    last = a["head_dim"] if a["head_dim"] is not None else (
        DENSE_EFFICIENTNET_STAGES[-1][0] * a["base_dim"])
    return _width(last, a["width_multiplier"], a["divisor"])
