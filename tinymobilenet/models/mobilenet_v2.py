"""MobileNetV2 (Sandler et al., 2018) exactly as torchvision builds it.

    input 224 x 224 x 3
    stem      conv 3x3 s2 -> BN -> ReLU6                        32 channels, 224 -> 112
    17 inverted residual blocks (t = expansion, c = channels, n = repeats, s = first stride):
        t  c    n  s
        1  16   1  1     the first block has no expansion conv (E = C_in)
        6  24   2  2
        6  32   3  2
        6  64   4  2
        6  96   3  1
        6  160  3  2
        6  320  1  1
    head      conv 1x1 -> BN -> ReLU6                          1280 channels, 7 x 7
    global average pool, dropout(0.2), fully connected 1280 -> num_classes

Width multiplier: every channel count c becomes ``make_divisible(c * width_mult, 8)``
(nearest multiple of 8, never more than 10 % below); the head keeps at least 1280
channels (``1280 * max(1, width_mult)``) so thin networks still have a wide classifier
input. The expansion width is ``round(C_in * t)`` with *no* rounding to 8, as in
torchvision.

Parameters at width 1.0: 3,504,872 (torchvision's count). State-dict keys:
``features.0`` (stem), ``features.1..17`` (``conv.0.0`` expand conv, ``conv.0.1`` its BN,
..., the projection as plain ``conv.N`` conv and ``conv.N+1`` BN), ``features.18`` (head),
``classifier.1`` (the FC layer).
"""

from __future__ import annotations

from .. import nn
from ._common import ImageClassifier, check_options
from .pretrained import with_weights

__all__ = ["MobileNetV2", "mobilenet_v2", "V2_SETTING"]

# t (expansion), c (output channels), n (repeats), s (stride of the first repeat)
V2_SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
              (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class MobileNetV2(ImageClassifier):
    """MobileNetV2: x (N, in_channels, H, W) -> logits (N, num_classes). See the module
    docstring."""

    name = "mobilenet_v2"

    def __init__(self, width_mult=1.0, num_classes=1000, dropout=0.2, *, in_channels=3,
                 rng=None, seed=0):
        super().__init__()
        check_options(self.name, num_classes, dropout, width_mult=width_mult,
                      in_channels=in_channels)
        rng = nn.make_rng(rng, seed)
        self.width_mult, self.num_classes, self.in_channels = width_mult, num_classes, in_channels
        c_in = nn.make_divisible(32 * width_mult, 8)
        last = nn.make_divisible(1280 * max(1.0, width_mult), 8)
        layers = [nn.Conv2dNormActivation(in_channels, c_in, 3, stride=2,
                                          activation_layer=nn.ReLU6, rng=rng)]
        for t, c, n, s in V2_SETTING:
            c_out = nn.make_divisible(c * width_mult, 8)
            for i in range(n):
                layers.append(nn.InvertedResidual(c_in, c_out, s if i == 0 else 1,
                                                  expand_ratio=t, activation=nn.ReLU6,
                                                  layout="v2", rng=rng))
                c_in = c_out
        layers.append(nn.Conv2dNormActivation(c_in, last, 1, activation_layer=nn.ReLU6, rng=rng))
        self.last_channel = last
        self._assemble(layers, [nn.Dropout(dropout, rng=rng),
                                nn.Linear(last, num_classes, rng=rng)], rng, linear="normal")


def mobilenet_v2(width_mult=1.0, num_classes=1000, dropout=0.2, *, weights=None,
                 progress=True, seed=0, rng=None, in_channels=3):
    """MobileNetV2 with width multiplier ``width_mult`` (torchvision's ``mobilenet_v2``).

    3,504,872 trainable parameters at width 1.0; any input size >= 1 pixel works.
    ``weights``: None (random, from ``seed``), ``"IMAGENET1K_V1"``, ``"IMAGENET1K_V2"``,
    ``"DEFAULT"`` (= V2) or a path to a ``.pth``/``.npz`` file; published weights need
    the default ``width_mult``, ``num_classes`` and ``in_channels``, are downloaded once
    into the cache (``progress``: a bar on stderr) and come back in training mode, as
    torchvision's do: call ``.eval()`` for inference. See :mod:`.pretrained`.
    """
    return with_weights("mobilenet_v2", weights, lambda: MobileNetV2(
        width_mult, num_classes, dropout, in_channels=in_channels, rng=rng, seed=seed),
        progress=progress, width_mult=width_mult, num_classes=num_classes,
        in_channels=in_channels)
