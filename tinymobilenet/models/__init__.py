"""Model factories. Every factory takes ``seed`` (default 0) so weights are reproducible.

    mobilenet_v1(alpha)                           the V1 paper's Table 1 network
    mobilenet_v2(width_mult)                      torchvision's MobileNetV2
    mobilenet_v3_small(width_mult), mobilenet_v3_large(width_mult)
    efficientnet_b0() ... efficientnet_b7()       torchvision's EfficientNet-B*
    efficientnet_lite0() ... efficientnet_lite4() TensorFlow's EfficientNet-Lite (SAME padding)
    dense.mobilenet(input_dim), dense.efficientnet(input_dim)   1-D feature-vector variants

The image models from V2 on have exactly torchvision's state-dict keys, order and shapes,
so torchvision weights load with :func:`load_weights`; the factories of the models with
published weights take ``weights="DEFAULT"`` (:mod:`.pretrained`), and ``.pth`` files are
read without torch (:mod:`.pth`). :func:`port_state_dict` renames another implementation's
state dict. :func:`fold_batchnorm` merges conv + BatchNorm pairs for inference.
:func:`get_model` builds any of them by name.
"""

from __future__ import annotations

import inspect

from . import dense, pretrained, pth
from .efficientnet import (EFFICIENTNET_PARAMS, EFFICIENTNET_STAGES, EfficientNet,
                           compound_scaling, efficientnet_b0, efficientnet_b1, efficientnet_b2,
                           efficientnet_b3, efficientnet_b4, efficientnet_b5, efficientnet_b6,
                           efficientnet_b7)
from .efficientnet_lite import (EFFICIENTNET_LITE_PARAMS, EfficientNetLite, efficientnet_lite0,
                                efficientnet_lite1, efficientnet_lite2, efficientnet_lite3,
                                efficientnet_lite4)
from .fold import fold_batchnorm
from .mobilenet_v1 import MobileNetV1, mobilenet_v1
from .mobilenet_v2 import MobileNetV2, mobilenet_v2
from .mobilenet_v3 import MobileNetV3, mobilenet_v3_large, mobilenet_v3_small
from .pretrained import (ChecksumError, WeightsUnavailableError, weights_info,
                         weights_names)
from .pth import CheckpointFormatError, UnsafeCheckpointError
from .weights import (WeightsMismatchError, load_weights, port_state_dict, read_state_dict,
                      save_weights)

# image models: (N, 3, H, W) -> (N, num_classes), all buildable with no arguments
_IMAGE_FACTORIES = {
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v2": mobilenet_v2,
    "mobilenet_v3_small": mobilenet_v3_small,
    "mobilenet_v3_large": mobilenet_v3_large,
    "efficientnet_b0": efficientnet_b0,
    "efficientnet_b1": efficientnet_b1,
    "efficientnet_b2": efficientnet_b2,
    "efficientnet_b3": efficientnet_b3,
    "efficientnet_b4": efficientnet_b4,
    "efficientnet_b5": efficientnet_b5,
    "efficientnet_b6": efficientnet_b6,
    "efficientnet_b7": efficientnet_b7,
    "efficientnet_lite0": efficientnet_lite0,
    "efficientnet_lite1": efficientnet_lite1,
    "efficientnet_lite2": efficientnet_lite2,
    "efficientnet_lite3": efficientnet_lite3,
    "efficientnet_lite4": efficientnet_lite4,
}
# feature-vector models: (N, input_dim) -> (N, num_classes or last width); need input_dim
_DENSE_FACTORIES = {
    "dense_mobilenet": dense.mobilenet,
    "dense_efficientnet": dense.efficientnet,
}

#: names of the image models, in family order (what ``get_model`` builds without arguments)
MODEL_NAMES = tuple(_IMAGE_FACTORIES)
#: names of the 1-D models (``get_model(name, input_dim=...)``)
DENSE_MODEL_NAMES = tuple(_DENSE_FACTORIES)


#: the factory arguments that scale a model's width, by family (V1, V2/V3, dense)
WIDTH_OPTIONS = ("alpha", "width_mult", "width_multiplier")


def width_option(name: str) -> str | None:
    """The argument of ``name``'s factory that scales its width: ``"alpha"`` (MobileNetV1),
    ``"width_mult"`` (V2, V3), ``"width_multiplier"`` (dense), or None (EfficientNet:
    compound scaling fixes each variant's width). ValueError for an unknown name."""
    factories = {**_IMAGE_FACTORIES, **_DENSE_FACTORIES}
    if name not in factories:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(factories)}")
    options = inspect.signature(factories[name]).parameters
    return next((k for k in WIDTH_OPTIONS if k in options), None)


def get_model(name: str, **kwargs):
    """Build a model by name: ``get_model("mobilenet_v2", width_mult=0.5, num_classes=10)``,
    ``get_model("mobilenet_v3_large", weights="DEFAULT")``.

    ``name`` is one of :data:`MODEL_NAMES` or :data:`DENSE_MODEL_NAMES`; ``kwargs`` are the
    factory's own arguments. An unknown name or option raises an error naming it and
    listing the valid ones.
    """
    factories = {**_IMAGE_FACTORIES, **_DENSE_FACTORIES}
    if name not in factories:
        raise ValueError(f"get_model: unknown model {name!r}; choose one of "
                         f"{', '.join(factories)}")
    factory = factories[name]
    options = inspect.signature(factory).parameters
    unknown = [k for k in kwargs if k not in options]
    if unknown:
        raise TypeError(f"get_model: {name} has no option {unknown[0]!r}; its options are "
                        f"{', '.join(options)}")
    return factory(**kwargs)


__all__ = [
    "MODEL_NAMES", "DENSE_MODEL_NAMES", "get_model", "width_option", "WIDTH_OPTIONS",
    "MobileNetV1", "mobilenet_v1", "MobileNetV2", "mobilenet_v2",
    "MobileNetV3", "mobilenet_v3_small", "mobilenet_v3_large",
    "EfficientNet", "EFFICIENTNET_PARAMS", "EFFICIENTNET_STAGES", "compound_scaling",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
    "efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
    "EfficientNetLite", "EFFICIENTNET_LITE_PARAMS", "efficientnet_lite0", "efficientnet_lite1",
    "efficientnet_lite2", "efficientnet_lite3", "efficientnet_lite4",
    "dense", "load_weights", "save_weights", "WeightsMismatchError", "fold_batchnorm",
    "read_state_dict", "port_state_dict", "pth", "CheckpointFormatError",
    "UnsafeCheckpointError", "pretrained", "weights_info", "weights_names",
    "WeightsUnavailableError", "ChecksumError",
]
