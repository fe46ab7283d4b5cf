"""The run configuration: sections, generated flags, presets, and config.json compatibility."""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib

import pytest

from fashion_keras import sections
from fashion_keras.data.config import DataConfig, PreprocessConfig
from fashion_keras.training.config import (
    FIELD_SECTION,
    PRESETS,
    SECTIONS,
    ModelConfig,
    TrainConfig,
    add_arguments,
    config_from_args,
)

#: A config.json written by the flat TrainConfig of the version before the sections.
FLAT_V0 = pathlib.Path(__file__).parent / "data" / "config_flat_v0.json"


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(argv))


def test_flat_config_json_of_the_previous_version_still_loads():
    flat = json.loads(FLAT_V0.read_text())
    cfg = TrainConfig.load(str(FLAT_V0))
    assert set(flat) <= set(FIELD_SECTION)  # every field of that version, flat
    for name, value in flat.items():
        assert getattr(cfg.section_of(name), name) == value, name
    for name in set(FIELD_SECTION) - set(flat):  # fields added since: their defaults
        section = cfg.section_of(name)
        assert getattr(section, name) == getattr(type(section)(), name), name
    assert cfg.preprocess.bbox_margin == 0.2 and cfg.model.fc_layers == 2
    assert cfg.optimization.lr_multipliers == "stem=0.1" and cfg.resolve() == cfg
    # ... and --config reads it, flags overriding its fields
    again = _parse(["--config", str(FLAT_V0), "--epochs", "5"])
    assert again.optimization.epochs == 5 and again.model.fc_layers == 2


def test_saved_config_is_nested_by_section_and_round_trips(tmp_path):
    cfg = TrainConfig(heads="fashionai8", image_size=96, epochs=3, seed=7).resolve()
    path = str(tmp_path / "config.json")
    cfg.save(path)
    saved = json.loads(open(path).read())
    assert set(saved) == {"preset", *SECTIONS}
    assert saved["model"]["image_size"] == 96 and saved["runtime"]["seed"] == 7
    assert TrainConfig.load(path) == cfg


def test_fields_are_given_by_name_or_by_section():
    by_name = TrainConfig(backbone="seresnet_tiny", dropout=0.5, data_dir="/d")
    by_section = TrainConfig(
        model=ModelConfig(backbone="seresnet_tiny", dropout=0.5), data=DataConfig(data_dir="/d")
    )
    assert by_name == by_section
    assert by_name.replace(dropout=0.1).model.dropout == 0.1 and by_name.model.dropout == 0.5
    with pytest.raises(ValueError, match=r"unknown config field\(s\) \['nope'\]"):
        TrainConfig(nope=1)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['nope'\]"):
        TrainConfig.from_dict({"nope": 1})


def test_presets_fill_unset_fields_demo_without_data_full_with_data():
    demo = TrainConfig().resolve()
    assert demo.model.backbone == PRESETS["demo"]["backbone"] and demo.model.image_size == 64
    full = TrainConfig(data_dir="/data/deepfashion").resolve()
    assert full.model.backbone == "seresnet50" and full.optimization.epochs == 30
    forced = TrainConfig(preset="demo", data_dir="/data").resolve()
    assert forced.model.backbone == "seresnet_tiny"
    assert TrainConfig(epochs=3).resolve().optimization.epochs == 3  # given beats the preset
    assert demo.preprocess.bbox_margin == 0.1  # the training default margin is resolved
    with pytest.raises(ValueError, match="'preset' = 'huge'"):
        TrainConfig(preset="huge").resolve()


def test_the_demo_data_is_decided_by_the_data_section_alone():
    assert DataConfig().uses_demo_data
    assert not DataConfig(data_dir="/d").uses_demo_data
    assert not DataConfig(sources="custom_csv=/d").uses_demo_data


def test_every_field_is_one_flag_and_a_given_flag_overrides_only_its_field():
    cfg = _parse(["--image-size", "48", "--no-skip-bad-rows", "--bbox-margin", "0.3"])
    assert cfg.model.image_size == 48 and cfg.preprocess.bbox_margin == 0.3
    assert cfg.data.skip_bad_rows is False
    untouched = TrainConfig().replace(image_size=48, skip_bad_rows=False, bbox_margin=0.3)
    assert cfg == untouched
    with pytest.raises(SystemExit):
        _parse(["--optimizer", "rmsprop"])  # choices come from the Literal


def test_a_new_field_becomes_a_flag_of_every_command_composing_its_section():
    @dataclasses.dataclass
    class Extra(sections.Section):
        colour_jitter: float = sections.option(0.2, "How much colour jitter.")
        mode: str | None = sections.option(None, "A mode.")

    parser = argparse.ArgumentParser()
    sections.add_arguments(parser, Extra, exclude=("mode",))
    args = parser.parse_args(["--colour-jitter", "0.5"])
    assert sections.from_args(Extra, args) == Extra(colour_jitter=0.5)
    assert "How much colour jitter. (default: 0.2)" in " ".join(parser.format_help().split())
    with pytest.raises(ValueError, match=r"exclude names \['nope'\]"):
        sections.add_arguments(argparse.ArgumentParser(), Extra, exclude=("nope",))


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"bbox_margin": -0.1}, "'bbox_margin' must be >= 0"),
        ({"sources": "a=/b", "data_dir": "/c"}, "exclude each other"),
        ({"image_size": 16}, "'image_size' must be >= 32"),
        ({"batch_size": 0}, "'batch_size' must be a positive integer"),
        ({"strategy": "tpu"}, "'strategy' = 'tpu'"),
    ],
)
def test_validation_names_the_field(fields, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**fields).resolve()


def test_preprocess_margin_is_unset_until_training_resolves_it():
    assert PreprocessConfig().bbox_margin is None
    assert PreprocessConfig().resolved_margin() == 0.1
    assert PreprocessConfig(bbox_margin=0.3).resolved_margin() == 0.3
