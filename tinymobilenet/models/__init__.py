"""Model factories. Every factory takes ``seed`` (default 0) so weights are reproducible."""

from .mobilenet_v1 import MobileNetV1, mobilenet_v1  # noqa: F401

__all__ = ["MobileNetV1", "mobilenet_v1"]
