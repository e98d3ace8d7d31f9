"""MobileNetV1 (Howard et al., 2017), the network of the paper's Table 1.

    layer                       stride  channels (x alpha)   input (224 x 224 x 3)
    conv 3x3                    2       32                   224 -> 112
    13 depthwise separable blocks, each dw 3x3 -> BN -> ReLU -> pw 1x1 -> BN -> ReLU:
        dw s1 -> 64,   dw s2 -> 128,  dw s1 -> 128,  dw s2 -> 256,  dw s1 -> 256,
        dw s2 -> 512,  5 x (dw s1 -> 512),  dw s2 -> 1024,  dw s1 -> 1024
    global average pool 7x7, fully connected 1024 -> num_classes (softmax in the loss)

Table 1 prints the last depthwise layer with stride 2, but its input and output are both
7 x 7: the stride there is 1, as in every released implementation.

The width multiplier ``alpha`` thins every layer to ``int(channels * alpha)`` channels,
cutting Mult-Adds and parameters roughly by alpha^2. The resolution multiplier rho is
simply the input size (224 rho: 192, 160, 128, ...): the network is fully convolutional
up to the global pool, so any size works, and Mult-Adds scale by rho^2.

State-dict keys: ``features.0`` (stem conv/BN), ``features.1`` ... ``features.13``
(``depthwise.{0,1}``, ``pointwise.{0,1}``), ``classifier.1`` (the FC layer; ``classifier.0``
is dropout, as in torchvision's MobileNetV2).
"""

from __future__ import annotations

from .. import nn
from ._common import ImageClassifier, check_options

__all__ = ["MobileNetV1", "mobilenet_v1", "V1_BLOCKS"]

# (output channels, stride) of the 13 depthwise separable blocks (Table 1)
V1_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
             (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


class MobileNetV1(ImageClassifier):
    """MobileNetV1: x (N, in_channels, H, W) -> logits (N, num_classes). See the module
    docstring. ``last_channel`` is the width of the features the classifier sees."""

    name = "mobilenet_v1"

    def __init__(self, alpha=1.0, num_classes=1000, dropout=0.0, in_channels=3, *,
                 rng=None, seed=0):
        super().__init__()
        check_options(self.name, num_classes, dropout, width_mult=alpha, in_channels=in_channels,
                      width_name="alpha")
        rng = nn.make_rng(rng, seed)
        self.alpha, self.num_classes, self.in_channels = alpha, num_classes, in_channels

        def width(c):
            return max(1, int(c * alpha))

        c_in = width(32)
        layers = [nn.Conv2dNormActivation(in_channels, c_in, 3, stride=2,
                                          activation_layer=nn.ReLU, rng=rng)]
        for c, s in V1_BLOCKS:
            layers.append(nn.DepthwiseSeparable(c_in, width(c), stride=s,
                                                activation_layer=nn.ReLU, rng=rng))
            c_in = width(c)
        self.last_channel = c_in
        # the layers' own initial weights (PyTorch's defaults): the paper gives no recipe
        self._assemble(layers, [nn.Dropout(dropout, rng=rng),
                                nn.Linear(c_in, num_classes, rng=rng)], rng, linear=None)


def mobilenet_v1(alpha=1.0, num_classes=1000, dropout=0.0, *, seed=0, rng=None, in_channels=3):
    """MobileNetV1 of the paper's Table 1 with width multiplier ``alpha``:
    x (N, in_channels, H, W) -> logits (N, num_classes).

    At alpha=1 it has 4,231,976 trainable parameters and, at 224 x 224, 569 M Mult-Adds.
    """
    return MobileNetV1(alpha, num_classes, dropout, in_channels, rng=rng, seed=seed)
