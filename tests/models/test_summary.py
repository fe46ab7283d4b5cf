"""Tests for fashion_keras.models.summary (parameters and MACs vs the SENet paper)."""

from __future__ import annotations

import pytest

from fashion_keras.models import SqueezeExcite, get_backbone
from fashion_keras.models import summary as S


@pytest.mark.parametrize(
    ("name", "params", "gmacs"),
    [
        ("resnet50", 25_557_032, 4.089),  # timm: stride on the 3x3 conv ("v1.5")
        ("seresnet50", 28_088_024, 4.103),
        ("legacy_seresnet50", 28_088_024, 3.872),  # Caffe: stride on the first 1x1 conv
        ("seresnext50_32x4d", 27_559_896, 4.244),
    ],
)
def test_totals_at_224(name: str, params: int, gmacs: float) -> None:
    s = S.summarize_preset(name, 224)
    assert s.params == params
    assert s.macs / 1e9 == pytest.approx(gmacs, abs=5e-4)
    assert [g.name for g in s.groups] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    stem = s.groups[0]
    assert stem.macs == 112 * 112 * 64 * 7 * 7 * 3  # the 7x7/2 stem conv
    assert s.groups[-1].macs == 2048 * 1000


@pytest.mark.parametrize(
    "name", ["resnet50", "seresnet50", "legacy_seresnet50", "seresnext50_32x4d"]
)
def test_paper_figures_agree(name: str) -> None:
    checks = S.paper_checks(name)
    assert checks and all(c.ok for c in checks), checks


def test_timm_layout_is_explained_not_hidden() -> None:
    (params, macs) = S.paper_checks("seresnet50")
    assert params.ours == pytest.approx(28.088, abs=1e-3)
    assert macs.ours == pytest.approx(3.872, abs=1e-3)  # the paper's stride placement
    assert "seresnet50 itself: 4.103 GMACs (+6.0%)" in macs.note
    (macs_legacy,) = S.paper_checks("legacy_seresnext50_32x4d")
    assert macs_legacy.note == "" and macs_legacy.paper == 4.25


def test_macs_scale_with_input_size() -> None:
    small, big = S.summarize_preset("seresnet_tiny", 64), S.summarize_preset("seresnet_tiny", 128)
    se = [
        layer for layer in get_backbone("seresnet_tiny").layers if isinstance(layer, SqueezeExcite)
    ]
    se_fc = sum(2 * layer.channels * layer.reduced_channels for layer in se)  # size-independent
    convs = [sum(g.macs for g in s.groups[:-1]) - se_fc for s in (small, big)]
    assert convs[1] == 4 * convs[0]  # every feature map doubles in both directions
    gates = [sum(g.gate_macs for g in s.groups) for s in (small, big)]
    assert gates[1] == 4 * gates[0]
    assert big.params == small.params


def test_cli_prints_table_and_check(capsys) -> None:
    assert S.main(["seresnet50", "--image-size", "224", "--check"]) == 0
    out = capsys.readouterr().out
    assert "28,088,024" in out and "SE-ResNet-50 GMACs: ours 3.872, paper 3.87  OK" in out
    assert S.main(["seresnet_tiny", "--image-size", "64", "--num-classes", "10"]) == 0
    assert "no SENet paper figures for seresnet_tiny" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        S.main(["seresnet50", "--image-size", "8"])
    assert "--image-size = 8" in capsys.readouterr().err


def test_check_fails_on_a_mismatch(monkeypatch, capsys) -> None:
    monkeypatch.setitem(S.PAPER, "seresnet_tiny", S.PaperFigures("tiny", 1.0, 1.0))
    assert S.main(["seresnet_tiny", "--check"]) == 1
    assert "MISMATCH" in capsys.readouterr().out
