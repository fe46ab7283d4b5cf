"""The head taxonomy: the single source of truth for heads, class names and loss weights.

A *head* is one softmax output of the model: a name, its ordered class names, a default loss
weight and optional per-class weights (for imbalanced classes). A *head spec* is an ordered
tuple of heads. Datasets, the model builder, losses, metrics, export and clients all ask this
module for class counts and names.

Presets (class lists and orders as in the dataset releases, see the README):

- ``deepfashion6``: the six DeepFashion fine-grained attribute types, in ``Anno_fine`` order.
- ``fashionai8``: the eight FashionAI 2018 attribute tasks (54 classes).
- ``deepfashion_category``: the 50-entry DeepFashion category list (1-based ids in the files).

A user's own heads load from a YAML or JSON file::

    heads:
      - name: sleeve
        classes: [long, short, none]
        loss_weight: 0.9        # optional, default 1.0
        class_weights: [1, 1, 4]  # optional: per-class weights of the loss (none = equal)
        region: sleeves         # optional: the part of the photo it is about (REGIONS)

A *keypoint head* (:class:`KeypointHead`, ``type: keypoints``) regresses garment keypoints: its
ordered keypoint names, left/right ``flip_pairs`` (swapped when an image is mirrored) and, per
garment category, the keypoints the category defines and the pair whose distance normalises the
error (``normaliser``; ``null`` when the error is normalised by the image size instead)::

      - name: shoe_keypoints
        type: keypoints
        keypoints: [toe, heel_left, heel_right]
        flip_pairs: [[heel_left, heel_right]]
        categories:
          sneaker: {keypoints: [toe, heel_left, heel_right], normaliser: [heel_left, heel_right]}
        loss_weight: 1.0        # optional, default 1.0
        skeleton: [[toe, heel_left], [toe, heel_right]]  # optional: edges drawn in figures

The model gives a keypoint head two outputs, ``<head>`` (heatmaps) and ``<head>_visibility``
(:func:`visibility_output`).

Keypoint presets (in :data:`KEYPOINT_PRESETS`, resolved by :func:`get_heads` like the others and
combinable in comma lists): ``fashionai_keypoints`` (the 24 FashionAI 2018 keypoints, 5
categories) and ``deepfashion_landmarks`` (the 8 DeepFashion landmarks, 3 clothes types).
Softmax-only code selects its heads with :func:`softmax_heads`; :func:`require_softmax` rejects a
spec with keypoint heads with a clear message.

*Regions* (:mod:`~fashion_keras.heads.regions`): a :class:`Region` is the part of the photo an
attribute is about, the box around some keypoints grown by ``margin``, ``square``, ``extend_up``
(toward the neck) and ``min_size``, clamped to the image. Presets in :data:`REGIONS`: ``collar``,
``upper``, ``sleeves``, ``lower`` and ``garment`` (FashionAI keypoint names). A softmax head may
name its region (``region: collar`` in a spec; ``fashionai8`` sets them for its eight tasks);
:func:`region_box` / :func:`region_boxes` give the boxes (pixel edges, ``None`` / not found when
fewer than two of the region's keypoints are present). :mod:`~fashion_keras.heads.views` says
which view (the garment's or a region's crop) each head of a model trained with region crops
reads.
"""

from fashion_keras.heads.keypoints import (
    AnyHead,
    HeadSpec,
    KeypointCategory,
    KeypointHead,
    visibility_output,
)
from fashion_keras.heads.names import HeadSpecError
from fashion_keras.heads.presets import (
    DEEPFASHION6,
    DEEPFASHION_CATEGORIES,
    DEEPFASHION_CATEGORY,
    DEEPFASHION_CATEGORY_TYPES,
    DEEPFASHION_CLOTHES_TYPES,
    DEEPFASHION_LANDMARKS,
    FASHIONAI8,
    FASHIONAI_KEYPOINT_NAMES,
    FASHIONAI_KEYPOINTS,
    KEYPOINT_PRESETS,
    PRESETS,
)
from fashion_keras.heads.region_boxes import region_box, region_boxes, region_indices
from fashion_keras.heads.regions import REGIONS, Region, get_region
from fashion_keras.heads.softmax import Head
from fashion_keras.heads.spec import (
    get_heads,
    head_from_dict,
    heads_from_dict,
    heads_to_dict,
    keypoint_head_from_dict,
    keypoint_heads,
    load_heads_file,
    require_softmax,
    softmax_heads,
)

__all__ = [
    "DEEPFASHION6",
    "DEEPFASHION_CATEGORIES",
    "DEEPFASHION_CATEGORY",
    "DEEPFASHION_CATEGORY_TYPES",
    "DEEPFASHION_CLOTHES_TYPES",
    "DEEPFASHION_LANDMARKS",
    "FASHIONAI8",
    "FASHIONAI_KEYPOINTS",
    "FASHIONAI_KEYPOINT_NAMES",
    "KEYPOINT_PRESETS",
    "PRESETS",
    "REGIONS",
    "AnyHead",
    "Head",
    "HeadSpec",
    "HeadSpecError",
    "KeypointCategory",
    "KeypointHead",
    "Region",
    "visibility_output",
    "get_heads",
    "get_region",
    "head_from_dict",
    "heads_from_dict",
    "heads_to_dict",
    "keypoint_head_from_dict",
    "keypoint_heads",
    "load_heads_file",
    "region_box",
    "region_boxes",
    "region_indices",
    "require_softmax",
    "softmax_heads",
]
