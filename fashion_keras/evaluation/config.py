"""The evaluation sections of a command's configuration (see :mod:`fashion_keras.sections`).

- :class:`InferenceConfig`: how models are run over images (test-time augmentation, batch
  size, ensemble weights); ``evaluate``, ``predict`` and ``train_stack`` compose it.
- :class:`EvalConfig`: what ``evaluate`` scores and reports.
- :class:`StackConfig`: the feature-stacking MLP that ``train_stack`` trains.

The data and preprocessing options come from :mod:`fashion_keras.data.config`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from fashion_keras import sections
from fashion_keras.sections import Section, option


@dataclasses.dataclass
class InferenceConfig(Section):
    """How the models run over images: views per image, batch size, ensemble weights."""

    tta: Literal["none", "flip", "ten_crop", "eighteen_crop"] = option(
        "none",
        "Test-time augmentation: none (the evaluation view), flip (and its mirror image), "
        "ten_crop (4 corners + centre, each mirrored) or eighteen_crop (3 x 3 grid, each "
        "mirrored); the views' probabilities are averaged.",
    )
    tta_resize: float | None = option(
        None,
        "Resize ratio of the square the TTA crops come from (default: 234/224 for none/flip, "
        "256/224 for ten_crop/eighteen_crop).",
    )
    batch_size: int = option(32, "Images per batch.")
    weights: str | None = option(
        None,
        "Ensemble weights: comma-separated numbers, one per model, or a JSON file with a "
        "'weights' list (e.g. evaluate's ensemble_weights.json); default: equal.",
    )

    def validate(self) -> None:
        super().validate()
        sections.check_positive_ints(self, ("batch_size",))
        if self.tta_resize is not None and not self.tta_resize >= 1:
            raise ValueError(f"config field 'tta_resize' must be >= 1, got {self.tta_resize!r}")


@dataclasses.dataclass
class EvalConfig(Section):
    """The split to score, the ensemble-weight search and the report."""

    split: str = option("val", "Split to evaluate.")
    search_weights: Literal["mean_accuracy", "map"] | None = option(
        None, "Search the ensemble weights on --search-split to maximise this."
    )
    search_split: str = option("val", "Split the ensemble weights are searched on.")
    max_examples: int | None = option(None, "Evaluate a prefix of each split only.")
    top_losses: int = option(
        16, "Examples in the largest-loss grid and in each keypoint head's worst-case grid."
    )
    output_dir: str = option("runs/eval", "Folder for metrics.json, report.md and the figures.")
    submission: str | None = option(
        None,
        "Write the keypoint head's FashionAI submission CSV (image_id, image_category, one "
        "x_y_v cell per keypoint) for the evaluated split's rows, in their order, to this path "
        "(default on a split without keypoint labels, such as fashionai_keypoints' test: "
        "<output-dir>/submission.csv).",
    )

    def validate(self) -> None:
        super().validate()
        sections.check_positive_ints(self, ("max_examples",))
        if self.top_losses < 0:
            raise ValueError(f"config field 'top_losses' must be >= 0, got {self.top_losses!r}")


@dataclasses.dataclass
class StackConfig(Section):
    """The MLP trained on the members' concatenated pooled features."""

    epochs: int = option(30, "Epochs (early stopping on the mean validation accuracy).")
    batch_size: int = option(64, "Feature vectors per batch.")
    hidden_units: int = option(512, "Units of the hidden layer (0: heads on the features).")
    dropout: float = option(0.3, "Dropout before the hidden layer and before the heads.")
    learning_rate: float = option(1e-3, "AdamW learning rate.")
    patience: int = option(5, "Early stopping patience in epochs.")
    max_examples: int | None = option(None, "Use a prefix of each split only.")
    seed: int = option(0, "Random seed of the MLP's weights and shuffling.")
    output_dir: str = option("runs/stack", "Folder the stack is written to.")

    def validate(self) -> None:
        super().validate()
        sections.check_positive_ints(self, ("epochs", "batch_size", "patience", "max_examples"))
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"config field 'dropout' must be in [0, 1), got {self.dropout!r}")
