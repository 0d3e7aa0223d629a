from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.kinesis_servers", "tests.dynamodb_servers"]

SHARED = Path(os.environ.get("ECOMWATCH_SHARED", Path(__file__).resolve().parents[2] / "shared"))
REES46 = SHARED / "data" / "rees46"


@pytest.fixture
def rees46_dir() -> Path:
    if not REES46.is_dir():
        pytest.skip(
            f"real REES46 samples not found at {REES46} (CI has ../shared; set ECOMWATCH_SHARED)"
        )
    return REES46


def rees46_file(name_prefix: str) -> Path:
    if not REES46.is_dir():
        pytest.skip(
            f"real REES46 samples not found at {REES46} (CI has ../shared; set ECOMWATCH_SHARED)"
        )
    matches = sorted(REES46.glob(f"{name_prefix}*"))
    assert matches, f"no file {name_prefix}* in {REES46}"
    return matches[0]
