"""The recipes in recipes/: each parses into the published setting (fast), and each trains end to
end on its dataset's dummy release with a tiny override (slow), the FashionAI ensemble also
through its eighteen-crop evaluation.

Every ``recipes/**/*.json`` but ``evaluate.json`` is a training recipe (a ``--config`` file of
``python -m fashion_keras.train``); an ``evaluate.json`` is the ``--config`` file of
``python -m fashion_keras.evaluate`` over the training recipes beside it. A new recipe is picked up by both tiers; the fast tier asks for its published
settings in :data:`PUBLISHED`.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
from typing import Any

import keras
import pytest

from fashion_keras import evaluate as evaluate_cli
from fashion_keras import sections
from fashion_keras import train as train_cli
from fashion_keras.heads import DEEPFASHION6, FASHIONAI8, PRESETS, get_heads
from fashion_keras.models.presets import BACKBONE_PRESETS
from fashion_keras.training.config import TrainConfig

REPO = pathlib.Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes"
TRAIN_RECIPES = sorted(p for p in RECIPES.rglob("*.json") if p.name != "evaluate.json")
EVALUATE_RECIPES = sorted(RECIPES.rglob("evaluate.json"))


def _known_backbones() -> set[str]:
    """The timm-family presets and the keras.applications backbones."""
    try:
        from fashion_keras.models import applications
    except ImportError:  # a checkout without the keras.applications backbones yet
        return set(BACKBONE_PRESETS) | {
            "keras_resnet152_v2",
            "keras_inception_v3",
            "keras_densenet201",
        }
    return set(BACKBONE_PRESETS) | set(applications.APPLICATIONS)


def _id(path: pathlib.Path) -> str:
    return str(path.relative_to(RECIPES))


def _load(path: pathlib.Path) -> TrainConfig:
    return TrainConfig.load(str(path)).resolve()


def _dummy_dir(dataset: str) -> pathlib.Path:
    """The builder's dummy release of ``dataset`` (``NAME`` or ``NAME/CONFIG``)."""
    return REPO / "datasets" / dataset.split("/")[0] / "dummy_data"


# ---------------------------------------------------------------- published settings (fast)

_DF6 = {
    "dataset": "deepfashion_attributes",
    "image_size": 224,
    "weights": "imagenet",
    "bbox_margin": 0.0,  # cropped by the bounding box (004, 2.1)
    "dropout": 0.0,
}
_DF6_WEIGHTS = (0.95, 0.85, 0.85, 0.9, 1.0, 0.9)  # 004, 3.5
_FAI_MEMBER = {
    "dataset": "fashionai_attributes/m_ignore",  # 000: the m labels were given up for training
    "heads": "fashionai8",
    "weights": "imagenet",
    "freeze_backbone": True,  # 000: fixed convolution layers beat fine-tuning
    "fc_layers": 0,
    "optimizer": "sgd",
    "weight_decay": 5e-4,  # 000: resnet152_v2 fixed, the best weight decay
}
_FAI_TASK = {
    "dataset": "fashionai_attributes/m_ignore",
    "backbone": "seresnet50",  # 002's se-resnet50 column
    "weights": "imagenet",
    "epochs": 50,  # 002: 50-60 epochs
}

#: recipe (relative to recipes/) -> {field: published value}, plus the heads' loss weights.
PUBLISHED: dict[str, dict[str, Any]] = {
    "deepfashion6/seresnet50_weighted_focal.json": {
        **_DF6,
        "heads": "deepfashion6",
        "backbone": "seresnet50",
        "fc_layers": 0,
        "loss_weights": _DF6_WEIGHTS,
    },
    **{
        f"deepfashion6/table2_{short}_fc{fc}.json": {
            **_DF6,
            "heads": "recipes/heads/deepfashion6_unweighted.yaml",
            "backbone": backbone,
            "fc_layers": fc,
            "loss_weights": (1.0,) * 6,
        }
        for short, backbone in [
            ("resnet50", "resnet50"),
            ("seresnet50", "seresnet50"),
            ("seresnext50", "seresnext50_32x4d"),
        ]
        for fc in (0, 2, 4)
    },
    "fashionai_ensemble/resnet152_v2.json": {
        **_FAI_MEMBER,
        "backbone": "keras_resnet152_v2",
        "image_size": 224,
    },
    "fashionai_ensemble/inception_v3.json": {
        **_FAI_MEMBER,
        "backbone": "keras_inception_v3",
        "image_size": 299,
    },
    "fashionai_ensemble/densenet201.json": {
        **_FAI_MEMBER,
        "backbone": "keras_densenet201",
        "image_size": 224,
    },
    "deepfashion_category/fine_tune_resnet50.json": {
        "dataset": "deepfashion_category",
        "heads": "deepfashion_category",
        "backbone": "resnet50",  # the closest to 003's ResNet-34 we have
        "weights": "imagenet",
        "freeze_epochs": 1,  # fastai fine_tune: one frozen epoch
        "learning_rate": 5e-3,  # 003: the lr finder's steepest point
        "fine_tune_lr": 2.5e-3,  # fine_tune halves the base rate after unfreezing
        "lr_schedule": "one_cycle",
        # fastai slice(base_lr / 100, base_lr) over its three ResNet groups
        "lr_multipliers": "stem=0.01,layer1=0.01,layer2=0.01,layer3=0.1,layer4=0.1,heads=1",
        "optimizer": "adamw",
        "weight_decay": 0.01,  # fastai's default true weight decay
        "focal_gamma": 0.0,  # fastai's cross-entropy
        "focal_alpha": 1.0,
        "final_weights": "last",
    },
    "fashionai_per_task/joint_eight_heads.json": {**_FAI_TASK, "heads": "fashionai8"},
    **{
        f"fashionai_per_task/task_{h.name.removesuffix('_labels')}.json": {
            **_FAI_TASK,
            "heads": f"recipes/heads/fashionai_{h.name.removesuffix('_labels')}.yaml",
        }
        for h in FASHIONAI8
    },
}


def test_every_recipe_has_published_settings() -> None:
    found = {_id(p) for p in TRAIN_RECIPES}
    assert found, f"no recipes found under {RECIPES}"
    missing = sorted(found - set(PUBLISHED))
    assert not missing, f"recipes without their published settings in PUBLISHED: {missing}"
    stale = sorted(set(PUBLISHED) - found)
    assert not stale, f"PUBLISHED names recipes that do not exist: {stale}"


@pytest.mark.parametrize("recipe", TRAIN_RECIPES, ids=_id)
def test_recipe_is_the_published_setting(recipe: pathlib.Path, monkeypatch) -> None:
    monkeypatch.chdir(REPO)  # head spec paths are relative to the repository root
    cfg = _load(recipe)
    want = dict(PUBLISHED[_id(recipe)])
    loss_weights = want.pop("loss_weights", None)
    got = {name: getattr(cfg.section_of(name), name) for name in want}
    assert got == want
    heads = get_heads(cfg.data.heads)
    if loss_weights is not None:
        assert tuple(h.loss_weight for h in heads) == loss_weights
    # every head is one of its dataset's preset heads, same name and classes
    preset = {h.name: h.classes for spec in PRESETS.values() for h in spec}
    for h in heads:
        assert preset.get(h.name) == h.classes, h.name
    # a real run: real data, pretrained weights, its own output folder, a known backbone
    assert not cfg.data.uses_demo_data and cfg.model.weights == "imagenet"
    assert cfg.runtime.output_dir == f"runs/recipes/{_id(recipe).removesuffix('.json')}"
    assert cfg.model.backbone in _known_backbones(), cfg.model.backbone
    assert _dummy_dir(cfg.data.dataset).is_dir(), cfg.data.dataset


def test_deepfashion6_heads_file_matches_the_preset() -> None:
    unweighted = get_heads(RECIPES / "heads" / "deepfashion6_unweighted.yaml")
    assert [(h.name, h.classes) for h in unweighted] == [(h.name, h.classes) for h in DEEPFASHION6]
    assert [h.loss_weight for h in DEEPFASHION6] == list(_DF6_WEIGHTS)


def test_per_task_recipes_cover_the_eight_tasks_once(monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    tasks = [
        h.name
        for p in TRAIN_RECIPES
        if p.parent.name == "fashionai_per_task" and p.name.startswith("task_")
        for h in get_heads(_load(p).data.heads)
    ]
    assert sorted(tasks) == sorted(h.name for h in FASHIONAI8)
    # the per-task models and the joint one differ in their heads only
    base = _load(RECIPES / "fashionai_per_task" / "joint_eight_heads.json").to_dict()
    for p in (RECIPES / "fashionai_per_task").glob("task_*.json"):
        other = _load(p).to_dict()
        for d in (base, other):
            d["data"] = {**d["data"], "heads": None}
            d["runtime"] = {**d["runtime"], "output_dir": None}
        assert other == base, p.name


@pytest.mark.parametrize("spec", EVALUATE_RECIPES, ids=_id)
def test_evaluate_recipe_scores_its_members(spec: pathlib.Path) -> None:
    command = json.loads(spec.read_text())
    members = [_load(p) for p in sorted(spec.parent.glob("*.json")) if p != spec]
    assert sorted(command["models"]) == sorted(m.runtime.output_dir for m in members)
    assert {m.data.dataset for m in members} == {command["data"]["dataset"]}
    assert command["inference"]["tta"] == "eighteen_crop"  # 000: mirror + 3 x 3 crops
    # evaluate reads it: every key is an option of the command
    args = evaluate_cli.build_parser().parse_args(["--config", str(spec)])
    extra = sections.fill_from_file(args, str(spec), evaluate_cli.CONFIG_SECTIONS, ("models",))
    assert extra["models"] == command["models"] and args.tta == "eighteen_crop"


# ---------------------------------------------------------------- end to end (slow)

#: recipe -> its tiny run folder, shared by the evaluate test
_RUNS: dict[pathlib.Path, pathlib.Path] = {}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory) -> pathlib.Path:
    """One prepared-dataset folder for the module: each dummy release is built once."""
    return tmp_path_factory.mktemp("tfds")


def _tiny_train(recipe: pathlib.Path, out: pathlib.Path, tfds: pathlib.Path) -> pathlib.Path:
    """``python -m fashion_keras.train --config RECIPE`` with the tiny override; the run folder."""
    cfg = _load(recipe)
    epochs = cfg.optimization.freeze_epochs + 1  # every phase runs (one epoch after freezing)
    argv = [
        "--config", str(recipe),
        "--backbone", "seresnet_tiny", "--weights", "",
        # the 299 px member keeps a size of its own, so the ensemble mixes input sizes
        "--image-size", "48" if cfg.model.image_size > 256 else "32",
        "--batch-size", "2", "--epochs", str(epochs), "--steps-per-epoch", "2",
        "--data-dir", str(_dummy_dir(cfg.data.dataset)), "--tfds-data-dir", str(tfds),
        "--output-dir", str(out), "--verbose", "0",
    ]  # fmt: skip
    assert train_cli.main(argv) == 0
    keras.backend.clear_session()
    _RUNS[recipe] = out
    return out


@pytest.mark.slow
@pytest.mark.parametrize("recipe", TRAIN_RECIPES, ids=_id)
def test_recipe_trains_on_the_dummy_data(
    recipe: pathlib.Path, tmp_path: pathlib.Path, tfds_dir: pathlib.Path, monkeypatch
) -> None:
    monkeypatch.chdir(REPO)
    run = _tiny_train(recipe, tmp_path / "run", tfds_dir)
    for name in ("config.json", "heads.json", "history.csv", "model.keras", "metrics.json"):
        assert (run / name).is_file(), name
    assert sorted(os.listdir(run / "export")) == ["1"]
    # the run kept the recipe's setting: only the tiny override differs
    recipe_cfg, ran = _load(recipe), TrainConfig.load(str(run / "config.json"))
    overridden = {
        "backbone", "weights", "image_size", "batch_size", "epochs", "steps_per_epoch",
        "data_dir", "tfds_data_dir", "output_dir", "verbose",
    }  # fmt: skip
    for section in ("data", "preprocess", "model", "optimization", "runtime"):
        want = {
            k: v for k, v in getattr(recipe_cfg, section).to_dict().items() if k not in overridden
        }
        got = {k: v for k, v in getattr(ran, section).to_dict().items() if k not in overridden}
        assert got == want, section
    heads = json.loads((run / "heads.json").read_text())["heads"]
    assert heads == [h.to_dict() for h in get_heads(recipe_cfg.data.heads)]
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(ran.optimization.epochs))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val"]["mean_accuracy"] >= 0.0


@pytest.mark.slow
@pytest.mark.parametrize("spec", EVALUATE_RECIPES, ids=_id)
def test_evaluate_recipe_runs_on_the_dummy_release(
    spec: pathlib.Path, tmp_path: pathlib.Path, tfds_dir: pathlib.Path, monkeypatch
) -> None:
    monkeypatch.chdir(REPO)
    command = json.loads(spec.read_text())
    members = {_load(p).runtime.output_dir: p for p in spec.parent.glob("*.json") if p != spec}
    models = []
    for name in command["models"]:
        recipe = members[name]
        run = _RUNS.get(recipe) or _tiny_train(recipe, tmp_path / recipe.stem, tfds_dir)
        models.append(str(run))
    out = tmp_path / "eval"
    # the recipe's own file, with the tiny runs and the dummy release given as flags (they win)
    argv = [
        *models, "--config", str(spec),
        "--data-dir", str(_dummy_dir(command["data"]["dataset"])),
        "--tfds-data-dir", str(tfds_dir), "--output-dir", str(out), "--batch-size", "4",
    ]  # fmt: skip
    assert evaluate_cli.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tta"] == "eighteen_crop" and metrics["views"] == 18
    assert len(metrics["models"]) == len(command["models"])
    assert metrics["weights"] == pytest.approx([1 / len(models)] * len(models))
    assert metrics["split"] == command["evaluation"]["split"]
    assert {h.name for h in FASHIONAI8} <= set(metrics["heads"])
    assert "map" in metrics["official"]
    assert (out / "report.md").is_file()


def test_an_evaluate_config_with_a_wrong_key_names_the_file_and_field(tmp_path, capsys) -> None:
    bad = tmp_path / "evaluate.json"
    bad.write_text(json.dumps({"models": ["runs/a"], "evaluation": {"splt": "val"}}))
    with pytest.raises(SystemExit):
        evaluate_cli.main(["--config", str(bad)])
    err = capsys.readouterr().err
    assert f"--config {bad}: evaluation.splt is not an option of this command" in err
    bad.write_text(json.dumps({"model": ["runs/a"]}))
    with pytest.raises(SystemExit):
        evaluate_cli.main(["--config", str(bad)])
    assert "unknown key(s) ['model']" in capsys.readouterr().err
