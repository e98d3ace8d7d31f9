"""Helpers shared by the model factories: argument checks, torchvision's weight
initialisation, and the pooled classifier head every image model ends with."""

from __future__ import annotations

import numpy as np

from .. import nn

__all__ = ["check_options", "check_positive", "torchvision_init", "ImageClassifier"]


def check_options(model: str, num_classes=1000, dropout=0.0, width_mult=None,
                  stochastic_depth_prob=None, in_channels=3, width_name="width_mult") -> None:
    """Refuse out-of-range factory arguments with a message naming the model and option
    (``width_name``: what the model calls its width multiplier, e.g. V1's ``alpha``)."""
    if not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool) \
            or num_classes < 1:
        raise ValueError(f"{model}: num_classes must be an integer >= 1, got {num_classes!r}")
    if not isinstance(in_channels, (int, np.integer)) or in_channels < 1:
        raise ValueError(f"{model}: in_channels must be an integer >= 1, got {in_channels!r}")
    if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
        raise ValueError(f"{model}: dropout must be in [0, 1), got {dropout!r}")
    if width_mult is not None:
        check_positive(model, width_name, width_mult)
    p = stochastic_depth_prob
    if p is not None and not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
        raise ValueError(f"{model}: stochastic_depth_prob must be in [0, 1], "
                         f"got {stochastic_depth_prob!r}")


def check_positive(model: str, name: str, value) -> None:
    """A multiplier must be a real number (TypeError otherwise, naming its type) above 0
    (ValueError)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{model}: {name} must be a number > 0, got {value!r} "
                        f"({type(value).__name__})")
    if not value > 0:                                  # also NaN
        raise ValueError(f"{model}: {name} must be > 0, got {value!r}")


def _normal(rng, std, like):
    """N(0, std^2) shaped and typed like ``like``, drawn directly in float32 when it is
    (half the memory traffic of drawing float64 and casting: B7 has 66 M weights)."""
    dtype = like.dtype if like.dtype in (np.float32, np.float64) else np.float64
    out = rng.standard_normal(like.shape, dtype=dtype)
    out *= std
    return out.astype(like.dtype, copy=False)


def torchvision_init(model: nn.Module, rng: np.random.Generator, linear: str = "normal"):
    """Re-draw a model's weights the way torchvision's MobileNetV2/V3 and EfficientNet do.

    conv weight   kaiming normal, mode "fan_out": N(0, 2 / (C_out * K * K)); groups do not
                  enter fan_out, so a depthwise 3x3 on C channels has std sqrt(2 / (9 C))
    conv bias     0 (only the squeeze-excitation 1x1 convs have one)
    BatchNorm     gamma 1, beta 0
    Linear        ``linear="normal"``: N(0, 0.01^2) (MobileNet); ``"uniform"``:
                  U(-1/sqrt(out_features), +1/sqrt(out_features)) (EfficientNet); bias 0

    Same distributions, not the same numbers: NumPy's generator is not torch's.
    Returns the model.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            w = m.weight.data
            fan_out = w.shape[0] * w.shape[2] * w.shape[3]
            m.weight.data = _normal(rng, np.sqrt(2.0 / fan_out), w)
            if m.bias is not None:
                m.bias.data = np.zeros_like(m.bias.data)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            m.weight.data = np.ones_like(m.weight.data)
            m.bias.data = np.zeros_like(m.bias.data)
        elif isinstance(m, nn.Linear):
            w = m.weight.data
            if linear == "normal":
                m.weight.data = _normal(rng, 0.01, w)
            else:
                bound = 1.0 / np.sqrt(w.shape[0])
                m.weight.data = rng.uniform(-bound, bound, w.shape).astype(w.dtype)
            if m.bias is not None:
                m.bias.data = np.zeros_like(m.bias.data)
    model.zero_grad()
    return model


class ImageClassifier(nn.Module):
    """features -> global average pool -> flatten -> classifier, the skeleton of every
    torchvision image model here (children ``features``, ``avgpool``, ``flatten``,
    ``classifier``; only ``features`` and ``classifier`` hold state, as in torchvision).

    x: (N, in_channels, H, W) -> logits (N, num_classes). Subclasses set the four children,
    ``name`` and ``in_channels``.
    """

    name = "model"
    in_channels = 3

    def _label(self):
        return self.name

    def _assemble(self, layers, classifier, rng, linear="normal"):
        """Set the children from the ``features`` layers and the ``classifier`` layers
        (``classifier[0]`` sees the pooled features), then draw torchvision's weights
        (``linear`` as in :func:`torchvision_init`; None keeps the layers' own initial
        weights, PyTorch's layer defaults, as MobileNetV1 has no torchvision recipe)."""
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.GlobalAvgPool2d()
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(*classifier)
        if linear is not None:
            torchvision_init(self, rng, linear)

    def forward(self, x):
        # check here so a wrong image gets an error naming the model, not its first conv
        nn.check_input(self.name, x, self.in_channels,
                       dtype=self.features[0][0].weight.data.dtype)
        return self.classifier(self.flatten(self.avgpool(self.features(x))))

    def _trace(self, shape, tracer):
        s = nn.check_shape(self.name, shape, self.in_channels)
        for m in (self.features, self.avgpool, self.flatten, self.classifier):
            s = m.trace(s, tracer)
        return s

    def backward(self, dy):
        return self.features.backward(self.avgpool.backward(
            self.flatten.backward(self.classifier.backward(dy))))


