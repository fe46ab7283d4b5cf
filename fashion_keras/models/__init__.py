"""SE-ResNet backbones and the multi-head classifier (Keras 3, backend-agnostic)."""

from fashion_keras.models.backbones import BACKBONE_PRESETS, Backbone, get_backbone
from fashion_keras.models.classifier import MultiHeadClassifier, build_model
from fashion_keras.models.layers import ImageNormalization, SqueezeExcite, make_divisible

__all__ = [
    "BACKBONE_PRESETS",
    "Backbone",
    "ImageNormalization",
    "MultiHeadClassifier",
    "SqueezeExcite",
    "build_model",
    "get_backbone",
    "make_divisible",
]
