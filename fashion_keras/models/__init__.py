"""SE-ResNet and keras.applications backbones and the multi-head classifier (Keras 3,
backend-agnostic).

``create_model`` builds a classifier from a backbone name, a head spec and a weights source
(see ``fashion_keras/models/README.md``); ``checkpoints`` reads timm / PyTorch checkpoints.
"""

from fashion_keras.models.applications import APPLICATIONS, ApplicationBackbone, ApplicationInfo
from fashion_keras.models.backbones import Backbone, get_backbone
from fashion_keras.models.classifier import MultiHeadClassifier, build_model
from fashion_keras.models.factory import create_model
from fashion_keras.models.keypoint_layers import KeypointHeatmapHead, SpatialSoftmaxArgmax
from fashion_keras.models.layers import ImageNormalization, SqueezeExcite, make_divisible
from fashion_keras.models.presets import (
    BACKBONE_PRESETS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PRETRAINED,
    PretrainedInfo,
)

__all__ = [
    "APPLICATIONS",
    "BACKBONE_PRESETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PRETRAINED",
    "ApplicationBackbone",
    "ApplicationInfo",
    "Backbone",
    "ImageNormalization",
    "KeypointHeatmapHead",
    "MultiHeadClassifier",
    "PretrainedInfo",
    "SpatialSoftmaxArgmax",
    "SqueezeExcite",
    "build_model",
    "create_model",
    "get_backbone",
    "make_divisible",
]
