"""The data sections of a command's configuration (see :mod:`fashion_keras.sections`).

- :class:`DataConfig`: the heads and where their examples come from (a dataset builder reading
  a release folder, several sources for joint training, or the synthetic demo data).
- :class:`PreprocessConfig`: the crop geometry applied before the model (the garment-box
  margin). It travels with the model: training saves it in the model and the export, and
  evaluation, prediction and feature stacking read it back; their flag only overrides it.

"No ``--data-dir`` means the demo data" is decided here, by :attr:`DataConfig.uses_demo_data`.
"""

from __future__ import annotations

import dataclasses
import os

from fashion_keras.sections import Section, option

#: Margin around the garment box, as a fraction of the box's height/width on each side.
DEFAULT_BBOX_MARGIN = 0.1
#: Resize-then-crop ratio (resize 234 -> crop 224, scaled to the image size): the square a view
#: is cut from (the training view's random crop, the evaluation view's central one).
RESIZE_RATIO = 234 / 224


def resize_size(image_size: int) -> int:
    """The side the padded square is resized to before the ``image_size`` crop."""
    return int(round(image_size * RESIZE_RATIO))


@dataclasses.dataclass
class DataConfig(Section):
    """The heads and the examples that label them."""

    heads: str = option(
        "deepfashion6",
        "Heads to train: a preset (deepfashion6, fashionai8, deepfashion_category), several "
        "joined by commas, or a YAML/JSON head spec file.",
    )
    dataset: str = option(
        "deepfashion_attributes",
        "TFDS builder that reads the data (from datasets/): deepfashion_attributes, "
        "deepfashion_category, fashionai_attributes, custom_csv; NAME/CONFIG picks a config "
        "(e.g. fashionai_attributes/m_half).",
    )
    data_dir: str | None = option(
        None,
        "Manual download folder of the dataset release (e.g. the folder holding Anno_fine/ and "
        "img/; for custom_csv the folder of labels.csv, or the CSV itself). Unset: use the "
        "embedded synthetic demo data (generated once and cached).",
    )
    sources: str | None = option(
        None,
        "Joint training on several datasets instead of --dataset/--data-dir: NAME=DIR pairs "
        "joined by commas, e.g. fashionai_attributes=/data/fashionai,deepfashion_attributes="
        "/data/deepfashion. Each head is masked on the examples of sources that do not label it.",
    )
    source_weights: str | None = option(
        None,
        "Sampling weights of --sources, in order (0.7,0.3) or by name (NAME=W,...); default: "
        "proportional to each source's training split.",
    )
    skip_bad_rows: bool = option(
        False,
        "Skip and report malformed annotation rows instead of stopping the build (the "
        "<config>_skip_bad_rows builder config).",
    )
    region_file: str | None = option(
        None,
        "Region boxes for --region-crops: a CSV image,region,x1,y1,x2,y2[,score] in pixels, "
        "joined with the dataset by image path (python -m fashion_keras.regions writes one "
        "from a keypoint model; any detector's boxes in that format work too).",
    )
    tfds_data_dir: str | None = option(
        None, "Where TFDS writes the prepared dataset (default: TFDS's ~/tensorflow_datasets)."
    )
    train_split: str = option("train", "TFDS split to train on.")
    balance_classes: str | None = option(
        None,
        "Class-balanced sampling of the training stream: draw examples so that this head's "
        "classes are equally frequent (rows it does not label keep their share).",
    )
    val_split: str = option("val", "TFDS split to validate on.")

    def __post_init__(self) -> None:
        if self.data_dir is not None:
            self.data_dir = os.path.expanduser(self.data_dir)
        if self.region_file is not None:
            self.region_file = os.path.expanduser(self.region_file)

    @property
    def uses_demo_data(self) -> bool:
        """True when neither ``data_dir`` nor ``sources`` is given: the synthetic demo data."""
        return self.data_dir is None and not self.sources

    def validate(self) -> None:
        super().validate()
        if self.sources and self.data_dir is not None:
            raise ValueError(
                "config fields 'sources' and 'data_dir' exclude each other: give each dataset's "
                "folder in sources (NAME=DIR,...) or one dataset with dataset + data_dir"
            )
        if self.source_weights and not self.sources:
            raise ValueError("config field 'source_weights' needs 'sources'")


@dataclasses.dataclass
class PreprocessConfig(Section):
    """The crop geometry before the model (saved with the model)."""

    bbox_margin: float | None = option(
        None,
        "Margin around the garment box, as a fraction of its size on each side. Training: "
        f"default {DEFAULT_BBOX_MARGIN}, saved with the model. Evaluation, prediction and "
        "feature stacking use the model's own margin unless this overrides it.",
    )

    keypoint_model: str | None = option(
        None,
        "For a model with region crops: the keypoint model (.keras file or training run "
        "folder, e.g. trained with --heads fashionai_keypoints) whose points give the regions' "
        "boxes. Training: the export then runs both stages (photo -> keypoints -> region boxes "
        "-> crops -> heads). Evaluation and prediction: the boxes (default: the model's own "
        "keypoint head or the export's first stage). Not needed when the model has such a "
        "keypoint head itself.",
    )

    def validate(self) -> None:
        super().validate()
        if self.bbox_margin is not None and not self.bbox_margin >= 0:
            raise ValueError(f"config field 'bbox_margin' must be >= 0, got {self.bbox_margin!r}")

    def resolved_margin(self) -> float:
        """The margin training uses: the given one, else the default."""
        return DEFAULT_BBOX_MARGIN if self.bbox_margin is None else float(self.bbox_margin)
