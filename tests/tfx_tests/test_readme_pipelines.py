"""TFX tier: the README commands that run the pipeline (``python -m pipelines...``), which
``tests/test_readme_commands.py`` skips where TFX does not import, checked here through
``--help`` like every other documented command."""

from __future__ import annotations

import pytest
from test_readme_commands import COMMANDS, check_command
from tfx_helpers import TFX_SKIP_REASON

pytest.importorskip("tfx", reason=TFX_SKIP_REASON)

PIPELINE_COMMANDS = [(w, c) for w, c in COMMANDS if "pipelines." in c]


def test_the_docs_run_the_pipeline():
    assert len(PIPELINE_COMMANDS) >= 3


@pytest.mark.parametrize(
    ("where", "line"), PIPELINE_COMMANDS, ids=[c[:70] for _, c in PIPELINE_COMMANDS]
)
def test_pipeline_command(where: str, line: str) -> None:
    check_command(line)
