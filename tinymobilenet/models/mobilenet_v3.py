"""MobileNetV3 Small and Large (Howard et al., 2019) exactly as torchvision builds them.

Blocks are inverted residuals (``InvertedResidual(layout="v3")``) from the paper's Tables 1
and 2, found by architecture search, so every block has its own kernel size, expansion
width, activation and squeeze-excitation switch::

    stem   conv 3x3 s2 -> BN -> h-swish                      16 channels
    blocks (kernel, expanded E, out, SE?, activation, stride)  see V3_LARGE / V3_SMALL
    head   conv 1x1 -> BN -> h-swish                         6 x last block's channels
    global average pool, Linear -> h-swish -> dropout -> Linear(num_classes)

Details that matter for matching torchvision key for key:

- every channel count (input, expanded, output, the classifier's hidden width 1280 /
  1024) is ``make_divisible(c * width_mult, 8)``;
- the expansion conv is skipped when E equals the block input (the first Large block);
- squeeze-excitation squeezes the *expanded* width to ``make_divisible(E // 4, 8)`` with
  ReLU and a hard-sigmoid gate (EfficientNet squeezes from the block input instead);
- BatchNorm uses eps=0.001 and momentum=0.01 everywhere (TensorFlow's defaults);
- ReLU ("RE") in the early blocks, h-swish ("HS") later, where the tensors are small and
  the dearer nonlinearity pays.

Parameters at width 1.0: Small 2,542,856, Large 5,483,032 (torchvision's counts).
"""

from __future__ import annotations

from .. import nn
from ._common import ImageClassifier, check_options
from .pretrained import with_weights

__all__ = ["MobileNetV3", "mobilenet_v3_small", "mobilenet_v3_large", "V3_LARGE", "V3_SMALL"]

# (input, kernel, expanded, output, use SE, activation "RE" | "HS", stride), before width_mult
V3_LARGE = [
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
]
V3_SMALL = [
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1),
    (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
]
V3_LAST_CHANNEL = {"mobilenet_v3_large": 1280, "mobilenet_v3_small": 1024}

# TensorFlow's BatchNorm defaults, kept by torchvision for V3 (PyTorch's are 1e-5, 0.1)
V3_NORM = dict(norm_eps=1e-3, norm_momentum=0.01)


class MobileNetV3(ImageClassifier):
    """MobileNetV3: x (N, in_channels, H, W) -> logits (N, num_classes). ``arch`` is
    "mobilenet_v3_small" or "mobilenet_v3_large"; see the module docstring."""

    def __init__(self, arch="mobilenet_v3_large", width_mult=1.0, num_classes=1000,
                 dropout=0.2, *, in_channels=3, rng=None, seed=0):
        super().__init__()
        if arch not in V3_LAST_CHANNEL:
            raise ValueError(f"MobileNetV3: arch must be one of {sorted(V3_LAST_CHANNEL)}, "
                             f"got {arch!r}")
        self.name = arch
        check_options(arch, num_classes, dropout, width_mult=width_mult, in_channels=in_channels)
        rng = nn.make_rng(rng, seed)
        self.width_mult, self.num_classes, self.in_channels = width_mult, num_classes, in_channels
        setting = V3_LARGE if arch == "mobilenet_v3_large" else V3_SMALL

        def width(c):
            return nn.make_divisible(c * width_mult, 8)

        layers = [nn.Conv2dNormActivation(in_channels, width(setting[0][0]), 3, stride=2,
                                          activation_layer=nn.HardSwish, rng=rng, **V3_NORM)]
        for c_in, k, e, c_out, use_se, act, s in setting:
            E = width(e)
            layers.append(nn.InvertedResidual(
                width(c_in), width(c_out), s, kernel_size=k, expanded_channels=E,
                activation=nn.HardSwish if act == "HS" else nn.ReLU,
                se_channels=nn.make_divisible(E // 4, 8) if use_se else None,
                se_activation=nn.ReLU, se_gate=nn.HardSigmoid, layout="v3", rng=rng,
                **V3_NORM))
        c_last = width(setting[-1][3])
        head = 6 * c_last
        layers.append(nn.Conv2dNormActivation(c_last, head, 1, activation_layer=nn.HardSwish,
                                              rng=rng, **V3_NORM))
        hidden = width(V3_LAST_CHANNEL[arch])
        self.last_channel = hidden
        self._assemble(layers, [nn.Linear(head, hidden, rng=rng), nn.HardSwish(),
                                nn.Dropout(dropout, rng=rng),
                                nn.Linear(hidden, num_classes, rng=rng)], rng, linear="normal")


_WEIGHTS_DOC = """

    ``weights``: None (random, from ``seed``), {names}, ``"DEFAULT"`` (= {default}) or a
    path to a ``.pth``/``.npz`` file; published weights need the default ``width_mult``,
    ``num_classes`` and ``in_channels``, are downloaded once into the cache (``progress``:
    a bar on stderr) and come back in training mode, as torchvision's do: call ``.eval()``
    for inference. See :mod:`.pretrained`.
    """


def _v3(arch, width_mult, num_classes, dropout, weights, progress, seed, rng, in_channels):
    return with_weights(arch, weights, lambda: MobileNetV3(
        arch, width_mult, num_classes, dropout, in_channels=in_channels, rng=rng, seed=seed),
        progress=progress, width_mult=width_mult, num_classes=num_classes,
        in_channels=in_channels)


def mobilenet_v3_large(width_mult=1.0, num_classes=1000, dropout=0.2, *, weights=None,
                       progress=True, seed=0, rng=None, in_channels=3):
    """MobileNetV3-Large (torchvision's ``mobilenet_v3_large``): 5,483,032 parameters."""
    return _v3("mobilenet_v3_large", width_mult, num_classes, dropout, weights, progress,
               seed, rng, in_channels)


def mobilenet_v3_small(width_mult=1.0, num_classes=1000, dropout=0.2, *, weights=None,
                       progress=True, seed=0, rng=None, in_channels=3):
    """MobileNetV3-Small (torchvision's ``mobilenet_v3_small``): 2,542,856 parameters."""
    return _v3("mobilenet_v3_small", width_mult, num_classes, dropout, weights, progress,
               seed, rng, in_channels)


mobilenet_v3_large.__doc__ += _WEIGHTS_DOC.format(
    names='``"IMAGENET1K_V1"``, ``"IMAGENET1K_V2"``', default="V2")
mobilenet_v3_small.__doc__ += _WEIGHTS_DOC.format(names='``"IMAGENET1K_V1"``', default="V1")
