"""Where the tests find the project's shared data sets: ../shared/data beside the checkout, wherever it lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLINC150 = (REPO.parent / "shared" / "data" / "clinc150" / "data_full.json").resolve()


def missing_server(reason: str) -> None:
    """Skip a test whose real server is not installed; fail instead under TIERFLOW_REQUIRE_SERVERS=1 (CI)."""
    if os.environ.get("TIERFLOW_REQUIRE_SERVERS") == "1":
        pytest.fail(f"required server missing: {reason}", pytrace=False)
    pytest.skip(reason)
