"""tinymobilenet: the MobileNet family in readable, hand-differentiated NumPy.

    functional  stateless forward/backward pairs (im2col convolution, depthwise,
                pointwise, batch norm, activations, pooling, linear, loss)
    nn          PyTorch-shaped layers and blocks built on functional
    models      MobileNetV1/V2/V3, EfficientNet-B0..B7, 1-D dense variants
    count       parameter and multiply-accumulate counter (``python -m tinymobilenet.count``)
    gradcheck   numerical gradient checking
"""

__version__ = "0.1.0"

from . import functional, gradcheck, models, nn  # noqa: E402,F401

__all__ = ["functional", "nn", "models", "gradcheck", "__version__"]
