"""Init runs without collector passes and leaves the collector as it found it."""

from __future__ import annotations

import gc

import pytest
from mysoulmate.runtime.lambda_init import lambda_init


def test_collector_is_paused_during_init_and_restored_after() -> None:
    assert gc.isenabled()
    with lambda_init():
        assert not gc.isenabled()
        survivors = [object() for _ in range(10)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(survivors)
    gc.unfreeze()


def test_a_failing_init_still_restores_the_collector() -> None:
    with pytest.raises(RuntimeError), lambda_init():
        raise RuntimeError("import failed")
    assert gc.isenabled()
    gc.unfreeze()
