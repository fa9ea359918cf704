from __future__ import annotations

from pathlib import Path

import pytest
from formats_data import Sample, build_sample


@pytest.fixture
def sample(tmp_path: Path) -> Sample:
    return build_sample(tmp_path / "images")
