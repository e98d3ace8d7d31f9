"""EfficientNet-Lite0 ... Lite4: TensorFlow's edge variant of EfficientNet.

TensorFlow's ``efficientnet/lite/efficientnet_lite_builder.py`` builds them from B0's
block table (:data:`~tinymobilenet.models.efficientnet.EFFICIENTNET_STAGES`) with three
changes for phones and accelerators that handle few operations well or quantize:

- no squeeze-and-excitation (poorly supported on many mobile accelerators);
- ReLU6 instead of SiLU everywhere (a bounded range quantizes to 8 bits with less loss);
- the stem (32 channels) and the head (1280) are not widened, and the first and last
  stage's repeats are not deepened, as the model scales up (keeps it small and fast).

Width and depth still scale the other layers as in EfficientNet (channels
``make_divisible(c * width, 8)``, repeats ``ceil(n * depth)``). The multipliers, input
size and dropout of each (:data:`EFFICIENTNET_LITE_PARAMS`)::

    model  width  depth  resolution  dropout
    lite0  1.0    1.0    224         0.2
    lite1  1.0    1.1    240         0.2
    lite2  1.1    1.2    260         0.3
    lite3  1.2    1.4    280         0.3
    lite4  1.4    1.8    300         0.3

Everything else is what TensorFlow-trained weights need: every convolution pads with
TensorFlow's "SAME" rule (``padding="same"``: for stride 2 the extra row and column of
zeros at the bottom and right, see :mod:`tinymobilenet.functional.same_pad`);
BatchNorm eps 1e-3 and TensorFlow's momentum 0.99, which is PyTorch's 0.01; stochastic
depth with the rate growing linearly to 0.2 (TensorFlow's ``survival_prob=0.8``); the
input is ``(x - 127) / 128`` on 0..255 pixels (:func:`tinymobilenet.data.lite_transform`).

The layout and state-dict names are torchvision's EfficientNet (``features.0`` stem,
``features.1 ... 7`` the stages of MBConv blocks, ``features.8`` head, ``classifier.1``),
so a checkpoint of another implementation (such as efficientnet_pytorch's ``_conv_stem``,
``_blocks.N...``, ``_fc``) maps onto it entry by entry in order, every shape equal.
Random initialisation follows torchvision's EfficientNet (same distributions as
TensorFlow's except the depthwise convs, whose fan-out TensorFlow counts as K*K, not
C*K*K; it only sets the scale of untrained weights).
"""

from __future__ import annotations

from .. import nn
from .efficientnet import EfficientNet, scaled_factory

__all__ = ["EfficientNetLite", "EFFICIENTNET_LITE_PARAMS", "efficientnet_lite0",
           "efficientnet_lite1", "efficientnet_lite2", "efficientnet_lite3",
           "efficientnet_lite4"]

# (width multiplier, depth multiplier, resolution, dropout): efficientnet_lite_params()
# of TensorFlow's efficientnet_lite_builder.py
EFFICIENTNET_LITE_PARAMS = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
    "efficientnet_lite3": (1.2, 1.4, 280, 0.3),
    "efficientnet_lite4": (1.4, 1.8, 300, 0.3),
}


class EfficientNetLite(EfficientNet):
    """EfficientNet-Lite: x (N, in_channels, H, W) -> logits (N, num_classes).

    An :class:`EfficientNet` with ReLU6, no squeeze-and-excitation, SAME padding, a fixed
    stem and head and BatchNorm(eps=1e-3, momentum=0.01); see the module docstring.
    """

    def __init__(self, width_mult=1.0, depth_mult=1.0, num_classes=1000, dropout=0.2,
                 stochastic_depth_prob=0.2, *, name="efficientnet_lite", in_channels=3,
                 rng=None, seed=0):
        super().__init__(width_mult, depth_mult, num_classes, dropout, stochastic_depth_prob,
                         norm_eps=1e-3, norm_momentum=0.01, name=name,
                         in_channels=in_channels, activation=nn.ReLU6, se_ratio=None,
                         padding="same", fix_stem_head=True, rng=rng, seed=seed)


def _factory(name, published):
    width, depth, resolution, dropout = EFFICIENTNET_LITE_PARAMS[name]
    doc = (f"EfficientNet-Lite{name[-1]}, TensorFlow's edge variant (width {width}, depth "
           f"{depth}, {resolution} px, dropout {dropout}); {published} in TensorFlow's release "
           f"table. Input: (N, 3, {resolution}, {resolution}) images preprocessed with "
           f"``data.lite_transform({resolution})``; output (N, num_classes) logits.")
    # a published checkpoint uses another implementation's names: mapped by order, every
    # shape checked (see models.port_state_dict)
    return scaled_factory(name, EFFICIENTNET_LITE_PARAMS, EfficientNetLite, doc,
                          weights_options={"by_order": True})


# the published sizes are the TensorFlow README's (tensorflow/tpu, efficientnet/lite)
efficientnet_lite0 = _factory("efficientnet_lite0", "4.7 M parameters and 407 M Mult-Adds")
efficientnet_lite1 = _factory("efficientnet_lite1", "5.4 M parameters and 631 M Mult-Adds")
efficientnet_lite2 = _factory("efficientnet_lite2", "6.1 M parameters and 899 M Mult-Adds")
efficientnet_lite3 = _factory("efficientnet_lite3", "8.2 M parameters and 1.44 B Mult-Adds")
efficientnet_lite4 = _factory("efficientnet_lite4", "13.0 M parameters and 2.64 B Mult-Adds")
