"""The configuration of a training run: sections composed into :class:`TrainConfig`.

Sections (each option declared once, as a field; flags generated from the fields, see
:mod:`fashion_keras.sections`): ``data`` and ``preprocess`` (:mod:`fashion_keras.data.config`),
``model`` (:class:`ModelConfig`), ``optimization`` (:class:`OptimizationConfig`) and ``runtime``
(:class:`RuntimeConfig`). Every field is a flag of ``python -m fashion_keras.train``
(``image_size`` is ``--image-size``) and a keyword of ``TrainConfig(...)``, flat
(``TrainConfig(image_size=64)``) or by section (``TrainConfig(model=ModelConfig(...))``).

Fields left as ``None`` are filled by :meth:`TrainConfig.resolve` from a named preset
(:data:`PRESETS`): ``demo`` (tiny SE-ResNet at 64 px, for the synthetic demo data and CPUs) or
``full`` (SE-ResNet-50 at 224 px, the DeepFashion-6 set-up); ``--preset auto`` picks ``demo``
when no data is given. The resolved config is saved as ``config.json`` in the run folder
(``--config`` repeats a run; flat ``config.json`` files of earlier versions still load).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Literal

from fashion_keras import sections
from fashion_keras.data.config import DataConfig, PreprocessConfig
from fashion_keras.sections import Section, option

#: Named defaults for the fields left unset (``None``).
PRESETS: dict[str, dict[str, Any]] = {
    # the embedded synthetic demo data on 2 CPU cores: about 10 minutes
    "demo": {
        "backbone": "seresnet_tiny",
        "image_size": 64,
        "batch_size": 32,
        "epochs": 20,
        "learning_rate": 3e-3,
    },
    # real data: the DeepFashion-6 challenge set-up
    "full": {
        "backbone": "seresnet50",
        "image_size": 224,
        "batch_size": 32,
        "epochs": 30,
        "learning_rate": 1e-3,
    },
}
PRESET_CHOICES = ("auto", *PRESETS)

#: Layer groups of ``--lr-multipliers`` (``stages`` sets ``layer1`` ... ``layerN`` at once).
GROUP_HELP = (
    "stem, layer1 ... layer4 (or stages for all of them) and heads (keras_* backbones: "
    "their stem and four stages, listed in fashion_keras/models/README.md)"
)


@dataclasses.dataclass
class ModelConfig(Section):
    """The network: backbone, its weights, input size and what sits between it and the heads."""

    backbone: str | None = option(
        None,
        "Backbone name: timm layout resnet50, seresnet50/101/152, seresnext50_32x4d, "
        "seresnext101_32x4d; senet.py (Caffe) layout legacy_seresnet50/101/152, "
        "legacy_seresnext50_32x4d, legacy_seresnext101_32x4d; seresnet_tiny for demos; "
        "keras.applications networks keras_resnet50/101/152, keras_resnet50_v2/101_v2/152_v2, "
        "keras_inception_v3 (299 px, at least 75), keras_densenet121/169/201, "
        "keras_vgg16/19, keras_efficientnet_v2_b0, keras_efficientnet_v2_s (384 px), "
        "keras_convnext_tiny/small, with their own preprocessing and default size and "
        "--weights imagenet downloaded by Keras.",
    )
    weights: str | None = option(
        None,
        "Backbone weights: a checkpoint file (.safetensors; .pth/.pt with PyTorch installed; "
        "a Keras .weights.h5), 'imagenet' (timm's default checkpoint for the backbone), a timm "
        "Hugging Face id (timm/seresnet50.a1_in1k, hf://timm/...) or an https:// URL. Names "
        "are downloaded once into the Keras cache folder ($KERAS_HOME/models, default "
        "~/.keras/models), checked (size, SHA-256) and reused offline. Mean/std and the "
        "default --image-size follow the checkpoint.",
    )
    image_size: int | None = option(None, "Square input size in pixels.")
    fc_layers: int = option(0, "Fully connected layers before the heads (0, 2 or 4).")
    fc_units: int = option(1024, "Units of each fully connected layer.")
    dropout: float = option(0.0, "Dropout before the heads.")
    keypoint_filters: int = option(
        256, "Channels of the keypoint heads' deconvolutions (SimpleBaselines: 256)."
    )
    keypoint_stride: Literal[4, 8] = option(
        4, "Input pixels per keypoint heatmap cell (3 deconvolutions on stride 32 give 4)."
    )
    region_crops: bool = option(
        False,
        "Each head that names a region (its 'region' in the head spec: deepfashion6's "
        "neckline, fashionai8's design and length heads) learns from the crop of that region's "
        "box instead of the garment box; one backbone runs over every crop. The boxes come "
        "from --region-file, else from the dataset's own keypoints; an image without one "
        "falls back to the garment box (counted in the log and metrics.json).",
    )

    def validate(self) -> None:
        super().validate()
        sections.check_positive_ints(self, ("image_size", "fc_units", "keypoint_filters"))
        if self.image_size is not None and self.image_size < 32:
            raise ValueError(f"config field 'image_size' must be >= 32, got {self.image_size!r}")
        if self.fc_layers < 0:
            raise ValueError(f"config field 'fc_layers' must be >= 0, got {self.fc_layers!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"config field 'dropout' must be in [0, 1), got {self.dropout!r}")


@dataclasses.dataclass
class OptimizationConfig(Section):
    """Batches, epochs, the optimizer and its schedule, the loss, and fine-tuning phases."""

    batch_size: int | None = option(None, "Global batch size (split across replicas).")
    epochs: int | None = option(None, "Number of epochs.")
    steps_per_epoch: int | None = option(None, "Limit the steps per epoch (default: whole split).")
    learning_rate: float | None = option(None, "Peak learning rate.")
    lr_schedule: Literal["cosine", "constant", "one_cycle"] = option(
        "cosine",
        "Learning-rate schedule: cosine decay after warm-up, constant, or one_cycle (fastai's "
        "fit_one_cycle: cosine warm-up from --learning-rate / 25 over the first quarter of the "
        "steps, then cosine annealing to --learning-rate / 1e5; with --freeze-epochs each phase "
        "gets its own cycle as in fastai's fine_tune: warm-up over 0.99 of the frozen phase, "
        "then over 0.3 of the fine-tune phase from its peak / 5; --warmup-epochs is unused).",
    )
    warmup_epochs: float = option(1.0, "Linear warm-up length in epochs (cosine schedule).")
    optimizer: Literal["adamw", "adam", "sgd"] = option("adamw", "Optimizer.")
    weight_decay: float = option(1e-4, "Decoupled weight decay (adamw, sgd).")
    momentum: float = option(0.9, "Momentum (sgd, Nesterov).")
    focal_gamma: float = option(2.0, "Focal loss gamma (0 = cross-entropy).")
    focal_alpha: float = option(0.25, "Focal loss alpha (a scalar weight on every class).")
    label_smoothing: float = option(0.0, "Label smoothing.")
    class_weights: Literal["none", "balanced", "sqrt"] = option(
        "none",
        "Per-class loss weights for imbalanced heads, from the training split's label counts: "
        "balanced (N / (K n_c)), sqrt (its square root, milder) or none; weights given in the "
        "head spec (class_weights) win. Scaled to average 1 over the training labels.",
    )
    freeze_backbone: bool = option(
        False,
        "Train only the heads: the backbone's weights and BatchNorm statistics stay fixed "
        "(feature extraction).",
    )
    freeze_epochs: int = option(
        0,
        "Two-phase fine-tuning: train only the heads for this many epochs, then unfreeze the "
        "backbone for the remaining epochs at --fine-tune-lr.",
    )
    fine_tune_lr: float | None = option(
        None, "Peak learning rate after unfreezing (default: --learning-rate / 10)."
    )
    lr_multipliers: str | None = option(
        None,
        "Discriminative learning rates: GROUP=FACTOR pairs joined by commas, GROUP one of stem, "
        "layer1..layer4 (stages = all four) and heads, e.g. 'stem=0.01,stages=0.1'; unlisted "
        "groups use 1.",
    )
    augment_scale: float = option(
        0.0,
        "Training view: zoom by a factor drawn from [1 - s, 1 + s] about the centre (keypoints "
        "follow; 0 = off).",
    )
    augment_rotation: float = option(
        0.0, "Training view: rotate by an angle drawn from [-r, r] degrees (0 = off)."
    )
    augment_on: Literal["auto", "cpu", "accelerator"] = option(
        "auto",
        "Where the training view's pixels are made: 'cpu' (the input pipeline), 'accelerator' "
        "(the pipeline only decodes the garment window; the training step crops, resizes and "
        "jitters the batch; softmax heads without zoom, rotation or regions) or 'auto' (the "
        "accelerator where the backend has a GPU or TPU and the run allows it).",
    )
    keypoint_sigma: float = option(
        2.0, "Keypoint heads: the target Gaussian's sigma in heatmap cells (0: bilinear one-hot)."
    )
    keypoint_occluded: Literal["count", "ignore"] = option(
        "count",
        "Keypoint heads: whether occluded points (v = 0, position annotated) count in the "
        "heatmap loss; absent points (v = -1) never do. The FashionAI NE scores visible ones "
        "only.",
    )

    def validate(self) -> None:
        super().validate()
        sections.check_positive_ints(self, ("batch_size", "epochs", "steps_per_epoch"))
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(
                f"config field 'learning_rate' must be > 0, got {self.learning_rate!r}"
            )
        if not isinstance(self.freeze_epochs, int) or self.freeze_epochs < 0:
            raise ValueError(
                f"config field 'freeze_epochs' must be an integer >= 0, got {self.freeze_epochs!r}"
            )
        if self.freeze_epochs and self.epochs is not None and self.freeze_epochs >= self.epochs:
            raise ValueError(
                f"config field 'freeze_epochs' = {self.freeze_epochs} must be smaller than "
                f"'epochs' = {self.epochs} (the rest of the epochs fine-tune the backbone)"
            )
        if self.freeze_epochs and self.freeze_backbone:
            raise ValueError(
                "config fields 'freeze_backbone' (heads only, every epoch) and 'freeze_epochs' = "
                f"{self.freeze_epochs} (unfreeze after that) exclude each other; give one"
            )
        if self.fine_tune_lr is not None and not self.fine_tune_lr > 0:
            raise ValueError(f"config field 'fine_tune_lr' must be > 0, got {self.fine_tune_lr!r}")
        parse_lr_multipliers(self.lr_multipliers)
        if not 0.0 <= self.augment_scale < 1.0:
            raise ValueError(
                f"config field 'augment_scale' must be in [0, 1), got {self.augment_scale!r}"
            )
        if not 0.0 <= self.augment_rotation <= 45.0:
            raise ValueError(
                "config field 'augment_rotation' must be in [0, 45] degrees, got "
                f"{self.augment_rotation!r}"
            )
        if not self.keypoint_sigma >= 0:
            raise ValueError(
                f"config field 'keypoint_sigma' must be >= 0, got {self.keypoint_sigma!r}"
            )


@dataclasses.dataclass
class RuntimeConfig(Section):
    """Where and how the run executes: devices, precision, seeds, output folders, logging."""

    mixed_precision: bool = option(
        False, "Mixed precision: mixed_float16 on GPU, mixed_bfloat16 on CPU."
    )
    strategy: Literal["auto", "default", "mirrored", "multi_worker"] = option(
        "auto",
        "Distribution: auto (mirrored if more than one GPU), default, mirrored (all local "
        "GPUs, or all logical CPU devices when there is no GPU), or multi_worker "
        "(MultiWorkerMirroredStrategy over the TF_CONFIG cluster; every worker runs the same "
        "command, only the chief writes to --output-dir, which all workers must be able to read).",
    )
    jit_compile: bool = option(False, "Compile the train and eval steps with XLA.")
    seed: int = option(0, "Random seed for weights, shuffling and augmentation.")
    deterministic: bool = option(
        False,
        "Also enable TensorFlow op determinism: the same command gives the same weights "
        "(slower; some GPU ops have no deterministic kernel).",
    )
    output_dir: str = option(
        "runs/latest", "Folder for checkpoints, logs, the model and the export."
    )
    export_dir: str | None = option(
        None, "TF Serving model base path (default: <output_dir>/export); versions 1, 2, ..."
    )
    backup_every_steps: int | None = option(
        None,
        "Back up the training state every N steps instead of every epoch. After an "
        "interruption, re-running the same command restores weights, optimizer state and the "
        "epoch counter from the last backup (the interrupted epoch restarts its data).",
    )
    verbose: int | None = option(
        None,
        "Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch (default: 1 on a "
        "terminal, 2 when the output goes to a file or a pipe).",
    )
    final_weights: Literal["best", "last"] = option(
        "best",
        "The weights of the final validation, model.keras and the export: best (the epoch "
        "checkpoints/best.keras holds, by the monitored validation metric) or last (the last "
        "epoch's).",
    )
    overwrite: bool = option(
        False,
        "Train again into an --output-dir that holds a finished run (its files and default "
        "export are removed first); without it such a run is refused. An interrupted run "
        "resumes either way.",
    )

    def validate(self) -> None:
        super().validate()
        sections.check_positive_ints(self, ("backup_every_steps",))


#: Section name -> section class, in the order of ``config.json``.
SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "preprocess": PreprocessConfig,
    "model": ModelConfig,
    "optimization": OptimizationConfig,
    "runtime": RuntimeConfig,
}
#: Field name -> the section that declares it (field names are unique over all sections).
FIELD_SECTION: dict[str, str] = {
    name: section for section, cls in SECTIONS.items() for name in cls.field_names()
}
assert len(FIELD_SECTION) == sum(len(c.field_names()) for c in SECTIONS.values())


@dataclasses.dataclass(init=False)
class TrainConfig:
    """Everything a training run needs; see ``python -m fashion_keras.train --help``.

    ``TrainConfig(heads="fashionai8", epochs=5)`` sets fields by name (each goes to its
    section); ``TrainConfig(model=ModelConfig(...))`` sets whole sections; both may be mixed.
    """

    data: DataConfig
    preprocess: PreprocessConfig
    model: ModelConfig
    optimization: OptimizationConfig
    runtime: RuntimeConfig
    preset: str = "auto"

    def __init__(
        self,
        data: DataConfig | None = None,
        preprocess: PreprocessConfig | None = None,
        model: ModelConfig | None = None,
        optimization: OptimizationConfig | None = None,
        runtime: RuntimeConfig | None = None,
        preset: str = "auto",
        **fields: Any,
    ) -> None:
        given = {
            "data": data,
            "preprocess": preprocess,
            "model": model,
            "optimization": optimization,
            "runtime": runtime,
        }
        for name, cls in SECTIONS.items():
            setattr(self, name, given[name] if given[name] is not None else cls())
        self.preset = preset
        self._set_fields(fields)

    def _set_fields(self, fields: Mapping[str, Any]) -> None:
        unknown = sorted(set(fields) - set(FIELD_SECTION))
        if unknown:
            raise ValueError(
                f"unknown config field(s) {unknown!r}; fields: {sorted(FIELD_SECTION)}"
            )
        by_section: dict[str, dict[str, Any]] = {}
        for name, value in fields.items():
            by_section.setdefault(FIELD_SECTION[name], {})[name] = value
        for section, values in by_section.items():
            setattr(self, section, dataclasses.replace(getattr(self, section), **values))

    def replace(self, **fields: Any) -> TrainConfig:
        """A copy with fields (by name) or whole sections replaced."""
        out = dataclasses.replace(self)
        for name in SECTIONS:
            if name in fields:
                setattr(out, name, fields.pop(name))
        if "preset" in fields:
            out.preset = fields.pop("preset")
        out._set_fields(fields)
        return out

    def chosen_preset(self) -> str:
        """The preset :meth:`resolve` applies: ``preset``, or for ``auto`` ``demo`` on the demo
        data and ``full`` otherwise."""
        if self.preset == "auto":
            return "demo" if self.data.uses_demo_data else "full"
        return self.preset

    def resolve(self) -> TrainConfig:
        """Fills ``None`` fields from the preset and the default margin, then validates."""
        if self.preset not in PRESET_CHOICES:
            raise ValueError(
                f"config field 'preset' = {self.preset!r}; expected one of {list(PRESET_CHOICES)}"
            )
        defaults = PRESETS[self.chosen_preset()]
        filled = {k: v for k, v in defaults.items() if getattr(self.section_of(k), k) is None}
        cfg = self.replace(**filled)
        cfg.preprocess = dataclasses.replace(
            cfg.preprocess, bbox_margin=cfg.preprocess.resolved_margin()
        )
        cfg.validate()
        return cfg

    def section_of(self, field_name: str) -> Section:
        """The section object that holds ``field_name``."""
        return getattr(self, FIELD_SECTION[field_name])

    def validate(self) -> None:
        """Raises ``ValueError`` naming the field and value for out-of-range settings."""
        for name in SECTIONS:
            getattr(self, name).validate()
        if self.optimization.freeze_epochs and self.runtime.strategy == "multi_worker":
            raise ValueError(
                "config field 'freeze_epochs' (two-phase fine-tuning) is not supported with "
                "strategy 'multi_worker' yet: the per-phase backups are not multi-worker aware"
            )
        if self.data.region_file and not self.model.region_crops:
            raise ValueError(
                f"config field 'region_file' = {self.data.region_file!r} needs 'region_crops' "
                "(--region-crops): the boxes are only read for region crops"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, **{n: getattr(self, n).to_dict() for n in SECTIONS}}

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "config") -> TrainConfig:
        """From :meth:`to_dict`'s form, or the flat form (every field at the top level) that
        ``config.json`` had before the sections."""
        d = dict(d)
        preset = d.pop("preset", "auto")
        nested = {name: d.pop(name) for name in SECTIONS if isinstance(d.get(name), Mapping)}
        unknown = sorted(set(d) - set(FIELD_SECTION))
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {unknown!r}")
        built = {
            name: SECTIONS[name].from_dict(values, where=f"{where}: {name}")
            for name, values in nested.items()
        }
        return cls(**built, preset=preset, **d)

    @classmethod
    def load(cls, path: str) -> TrainConfig:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f), where=path)


def parse_lr_multipliers(spec: str | None, num_stages: int = 4) -> dict[str, float]:
    """``'stem=0.01,stages=0.1,layer4=0.3,heads=1'`` -> ``{group: factor}`` per concrete group.

    ``stages`` expands to ``layer1`` ... ``layer{num_stages}``; an explicit ``layerK`` overrides
    it whatever the order. Raises ``ValueError`` naming the bad entry.
    """
    if spec is None or not spec.strip():
        return {}
    groups = {"stem", "heads", "stages"} | {f"layer{i + 1}" for i in range(num_stages)}
    given: dict[str, float] = {}
    for item in spec.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in groups:
            raise ValueError(
                f"config field 'lr_multipliers' = {spec!r}: entry {item.strip()!r} must be "
                f"GROUP=FACTOR with GROUP one of {GROUP_HELP}"
            )
        try:
            factor = float(value)
        except ValueError:
            factor = float("nan")
        if not factor >= 0:
            raise ValueError(
                f"config field 'lr_multipliers' = {spec!r}: factor {value.strip()!r} of "
                f"{name!r} must be a number >= 0"
            )
        given[name] = factor
    out = {}
    if "stem" in given:
        out["stem"] = given["stem"]
    for i in range(num_stages):
        stage = f"layer{i + 1}"
        if stage in given or "stages" in given:
            out[stage] = given.get(stage, given.get("stages"))
    if "heads" in given:
        out["heads"] = given["heads"]
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--preset`` and one flag per field of every section, grouped by section."""
    parser.add_argument(
        "--config",
        default=None,
        help="A config.json (e.g. from an earlier run); flags given here override its fields.",
    )
    parser.add_argument(
        "--preset",
        choices=PRESET_CHOICES,
        default=None,
        help="Defaults for the unset backbone, image size, batch size, epochs and learning "
        "rate: demo (seresnet_tiny, 64 px, 20 epochs: minutes on a CPU) or full (seresnet50, "
        "224 px, 30 epochs); auto picks demo without --data-dir/--sources. (default: auto)",
    )
    from_preset = {
        field: " / ".join(f"{values[field]} ({name})" for name, values in PRESETS.items())
        + " by --preset"
        for field in PRESETS["demo"]
    }
    for name, cls in SECTIONS.items():
        group = parser.add_argument_group(f"{name} ({cls.__doc__.splitlines()[0].rstrip('.')})")
        sections.add_arguments(group, cls, defaults=from_preset)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A config from ``--config`` (if any) overridden by the flags actually given."""
    base = TrainConfig.load(args.config) if args.config else TrainConfig()
    given = {
        name: sections.from_args(cls, args, getattr(base, name)) for name, cls in SECTIONS.items()
    }
    preset = args.preset if args.preset is not None else base.preset
    return TrainConfig(**given, preset=preset)
