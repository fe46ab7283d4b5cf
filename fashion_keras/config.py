"""One dataclass configuration for a training run.

Every field is also a command-line flag of ``python -m fashion_keras.train`` (``image_size`` is
``--image-size``) and a keyword of :func:`fashion_keras.train.train`. Fields left as ``None`` are
resolved by :meth:`TrainConfig.resolve`: the real-data defaults (SE-ResNet-50 at 224 px) or, when
no data is given, the lighter demo defaults. The resolved config is saved as ``config.json`` in
the run's output folder so a run can be repeated with ``--config``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any, Literal, get_args

#: Defaults for real data (the DeepFashion-6 challenge set-up).
REAL_DATA_DEFAULTS = {
    "backbone": "seresnet50",
    "image_size": 224,
    "batch_size": 32,
    "epochs": 30,
    "learning_rate": 1e-3,
}
#: Lighter defaults for the embedded synthetic demo data (2 CPU cores, about 10 minutes).
DEMO_DEFAULTS = {
    "backbone": "seresnet_tiny",
    "image_size": 64,
    "batch_size": 32,
    "epochs": 20,
    "learning_rate": 3e-3,
}


def _f(default: Any, help: str, **kwargs: Any) -> Any:
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; see ``python -m fashion_keras.train --help``."""

    # --- data ---
    heads: str = _f(
        "deepfashion6",
        "Heads to train: a preset (deepfashion6, fashionai8, deepfashion_category), several "
        "joined by commas, or a YAML/JSON head spec file.",
    )
    dataset: str = _f(
        "deepfashion_attributes",
        "TFDS builder that reads the data (from datasets/): deepfashion_attributes, "
        "deepfashion_category, fashionai_attributes, custom_csv; NAME/CONFIG picks a config "
        "(e.g. fashionai_attributes/m_half).",
    )
    data_dir: str | None = _f(
        None,
        "Manual download folder of the dataset release (e.g. the folder holding Anno_fine/ and "
        "img/; for custom_csv the folder of labels.csv, or the CSV itself). Unset: use the "
        "embedded synthetic demo data (generated once and cached).",
    )
    sources: str | None = _f(
        None,
        "Joint training on several datasets instead of --dataset/--data-dir: NAME=DIR pairs "
        "joined by commas, e.g. fashionai_attributes=/data/fashionai,deepfashion_attributes="
        "/data/deepfashion. Each head is masked on the examples of sources that do not label it.",
    )
    source_weights: str | None = _f(
        None,
        "Sampling weights of --sources, in order (0.7,0.3) or by name (NAME=W,...); default: "
        "proportional to each source's training split.",
    )
    skip_bad_rows: bool = _f(
        False,
        "Skip and report malformed annotation rows instead of stopping the build (the "
        "<config>_skip_bad_rows builder config).",
    )
    tfds_data_dir: str | None = _f(
        None, "Where TFDS writes the prepared dataset (default: TFDS's ~/tensorflow_datasets)."
    )
    train_split: str = _f("train", "TFDS split to train on.")
    val_split: str = _f("val", "TFDS split to validate on.")
    bbox_margin: float = _f(0.1, "Margin around the garment box, as a fraction of its size.")
    # --- model ---
    backbone: str | None = _f(
        None,
        "Backbone name: timm layout resnet50, seresnet50/101/152, seresnext50_32x4d, "
        "seresnext101_32x4d; senet.py (Caffe) layout legacy_seresnet50/101/152, "
        "legacy_seresnext50_32x4d, legacy_seresnext101_32x4d; seresnet_tiny for demos.",
    )
    weights: str | None = _f(
        None,
        "Backbone weights: a timm/PyTorch checkpoint (.safetensors; .pth/.pt with PyTorch "
        "installed), a Keras .weights.h5, or 'imagenet' (looked up in the Keras cache folder "
        "~/.keras/models; nothing is downloaded). Mean/std and the default --image-size follow "
        "the checkpoint.",
    )
    image_size: int | None = _f(None, "Square input size in pixels.")
    fc_layers: int = _f(0, "Fully connected layers before the heads (0, 2 or 4).")
    fc_units: int = _f(1024, "Units of each fully connected layer.")
    dropout: float = _f(0.0, "Dropout before the heads.")
    # --- fine-tuning ---
    freeze_backbone: bool = _f(
        False,
        "Train only the heads: the backbone's weights and BatchNorm statistics stay fixed "
        "(feature extraction).",
    )
    freeze_epochs: int = _f(
        0,
        "Two-phase fine-tuning: train only the heads for this many epochs, then unfreeze the "
        "backbone for the remaining epochs at --fine-tune-lr.",
    )
    fine_tune_lr: float | None = _f(
        None, "Peak learning rate after unfreezing (default: --learning-rate / 10)."
    )
    lr_multipliers: str | None = _f(
        None,
        "Discriminative learning rates: GROUP=FACTOR pairs joined by commas, GROUP one of stem, "
        "layer1..layer4 (stages = all four) and heads, e.g. 'stem=0.01,stages=0.1'; unlisted "
        "groups use 1.",
    )
    # --- optimisation ---
    batch_size: int | None = _f(None, "Global batch size (split across replicas).")
    epochs: int | None = _f(None, "Number of epochs.")
    steps_per_epoch: int | None = _f(None, "Limit the steps per epoch (default: whole split).")
    learning_rate: float | None = _f(None, "Peak learning rate.")
    lr_schedule: Literal["cosine", "constant"] = _f(
        "cosine", "Learning-rate schedule: cosine decay after warm-up, or constant."
    )
    warmup_epochs: float = _f(1.0, "Linear warm-up length in epochs (cosine schedule).")
    optimizer: Literal["adamw", "adam", "sgd"] = _f("adamw", "Optimizer.")
    weight_decay: float = _f(1e-4, "Decoupled weight decay (adamw, sgd).")
    momentum: float = _f(0.9, "Momentum (sgd, Nesterov).")
    focal_gamma: float = _f(2.0, "Focal loss gamma (0 = cross-entropy).")
    focal_alpha: float = _f(0.25, "Focal loss alpha (a scalar weight on every class).")
    label_smoothing: float = _f(0.0, "Label smoothing.")
    # --- runtime ---
    mixed_precision: bool = _f(
        False, "Mixed precision: mixed_float16 on GPU, mixed_bfloat16 on CPU."
    )
    strategy: Literal["auto", "default", "mirrored", "multi_worker"] = _f(
        "auto",
        "Distribution: auto (mirrored if more than one GPU), default, mirrored (all local "
        "GPUs, or all logical CPU devices when there is no GPU), or multi_worker "
        "(MultiWorkerMirroredStrategy over the TF_CONFIG cluster; every worker runs the same "
        "command, only the chief writes to --output-dir, which all workers must be able to read).",
    )
    jit_compile: bool = _f(False, "Compile the train and eval steps with XLA.")
    seed: int = _f(0, "Random seed for weights, shuffling and augmentation.")
    deterministic: bool = _f(
        False,
        "Also enable TensorFlow op determinism: the same command gives the same weights "
        "(slower; some GPU ops have no deterministic kernel).",
    )
    output_dir: str = _f("runs/latest", "Folder for checkpoints, logs, the model and the export.")
    export_dir: str | None = _f(
        None, "TF Serving model base path (default: <output_dir>/export); versions 1, 2, ..."
    )
    backup_every_steps: int | None = _f(
        None,
        "Back up the training state every N steps instead of every epoch. After an "
        "interruption, re-running the same command restores weights, optimizer state and the "
        "epoch counter from the last backup (the interrupted epoch restarts its data).",
    )
    verbose: int = _f(1, "Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch.")

    @property
    def uses_demo_data(self) -> bool:
        return self.data_dir is None and not self.sources

    def resolve(self) -> TrainConfig:
        """Fills ``None`` fields from the demo or real-data defaults and validates."""
        defaults = DEMO_DEFAULTS if self.uses_demo_data else REAL_DATA_DEFAULTS
        filled = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        cfg = dataclasses.replace(self, **filled)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raises ``ValueError`` naming the field and value for out-of-range settings."""
        if self.sources and self.data_dir is not None:
            raise ValueError(
                "config fields 'sources' and 'data_dir' exclude each other: give each dataset's "
                "folder in sources (NAME=DIR,...) or one dataset with dataset + data_dir"
            )
        if self.source_weights and not self.sources:
            raise ValueError("config field 'source_weights' needs 'sources'")
        positive = ("image_size", "batch_size", "epochs", "fc_units", "steps_per_epoch")
        for name in positive + ("backup_every_steps",):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"config field {name!r} must be a positive integer, got {value!r}")
        if self.image_size is not None and self.image_size < 32:
            raise ValueError(f"config field 'image_size' must be >= 32, got {self.image_size!r}")
        if self.fc_layers < 0:
            raise ValueError(f"config field 'fc_layers' must be >= 0, got {self.fc_layers!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"config field 'dropout' must be in [0, 1), got {self.dropout!r}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(
                f"config field 'learning_rate' must be > 0, got {self.learning_rate!r}"
            )
        self._validate_fine_tuning()
        for f in dataclasses.fields(self):
            if _is_literal(f):
                choices = _literal_choices(f)
                if getattr(self, f.name) not in choices:
                    raise ValueError(
                        f"config field {f.name!r} = {getattr(self, f.name)!r}; "
                        f"expected one of {list(choices)}"
                    )

    def _validate_fine_tuning(self) -> None:
        if not isinstance(self.freeze_epochs, int) or self.freeze_epochs < 0:
            raise ValueError(
                f"config field 'freeze_epochs' must be an integer >= 0, got {self.freeze_epochs!r}"
            )
        if self.freeze_epochs and self.epochs is not None and self.freeze_epochs >= self.epochs:
            raise ValueError(
                f"config field 'freeze_epochs' = {self.freeze_epochs} must be smaller than "
                f"'epochs' = {self.epochs} (the rest of the epochs fine-tune the backbone)"
            )
        if self.freeze_epochs and self.strategy == "multi_worker":
            raise ValueError(
                "config field 'freeze_epochs' (two-phase fine-tuning) is not supported with "
                "strategy 'multi_worker' yet: the per-phase backups are not multi-worker aware"
            )
        if self.freeze_epochs and self.freeze_backbone:
            raise ValueError(
                "config fields 'freeze_backbone' (heads only, every epoch) and 'freeze_epochs' = "
                f"{self.freeze_epochs} (unfreeze after that) exclude each other; give one"
            )
        if self.fine_tune_lr is not None and not self.fine_tune_lr > 0:
            raise ValueError(f"config field 'fine_tune_lr' must be > 0, got {self.fine_tune_lr!r}")
        if self.lr_multipliers is not None:
            from fashion_keras.finetune import parse_lr_multipliers  # keras: import when needed

            parse_lr_multipliers(self.lr_multipliers)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {unknown!r}")
        return cls(**d)

    @classmethod
    def load(cls, path: str) -> TrainConfig:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f), where=path)


def _literal_choices(f: dataclasses.Field) -> tuple[Any, ...]:
    ann = f.type
    if isinstance(ann, str):
        # "Literal['a', 'b']" under `from __future__ import annotations`
        return tuple(eval(ann, {"Literal": Literal}).__args__)  # noqa: S307 - our own annotation
    return get_args(ann)


def _is_literal(f: dataclasses.Field) -> bool:
    return str(f.type).startswith("Literal")


def _flag_type(f: dataclasses.Field):
    text = str(f.type)
    if text.startswith("bool"):
        return bool
    if "int" in text:
        return int
    if "float" in text:
        return float
    return str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds one flag per :class:`TrainConfig` field (defaults left as None = not given)."""
    parser.add_argument(
        "--config",
        default=None,
        help="A config.json (e.g. from an earlier run); flags given here override its fields.",
    )
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = _flag_type(f)
        default_text = f"(default: {f.default})" if f.default is not None else ""
        help_text = f"{f.metadata['help']} {default_text}".strip()
        if kind is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        elif _is_literal(f):
            parser.add_argument(flag, choices=_literal_choices(f), default=None, help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=None, help=help_text)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A config from ``--config`` (if any) overridden by the flags actually given."""
    base = TrainConfig.load(args.config) if args.config else TrainConfig()
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }
    cfg = dataclasses.replace(base, **given)
    if cfg.data_dir is not None:
        cfg.data_dir = os.path.expanduser(cfg.data_dir)
    return cfg
