"""Shared test setup: a per-session cache directory (vocabularies, token caches) so tests never touch the
user's ~/.cache and every CI run starts clean; one torch thread for determinism and fair sharing; every CPU
fast path on whatever the CPU (``T5LIT_CPU_FAST_PATHS=all``), so that each is exercised on every machine the
suite runs on; the choice by CPU is tested on its own (tests/model/test_fastpaths.py)."""

import os
from pathlib import Path

import pytest

# The real data samples: ../shared/data beside the checkout, or wherever T5LIT_SHARED_DATA points.
SHARED_DATA = Path(os.environ.get("T5LIT_SHARED_DATA")
                   or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def pytest_configure(config):
    import tempfile

    os.environ.setdefault("T5LIT_CACHE", tempfile.mkdtemp(prefix="t5lit-test-cache-"))
    os.environ.setdefault("T5LIT_CPU_FAST_PATHS", "all")
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data samples not found at {SHARED_DATA}")
    return SHARED_DATA
