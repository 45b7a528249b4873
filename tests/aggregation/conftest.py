"""Fixtures for the aggregation tests: run kernels with 1 and 2 Numba threads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fedzero.aggregation.kernels import get_num_threads, set_num_threads


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request: pytest.FixtureRequest) -> Iterator[int]:
    """Set the kernel thread count for one test, then restore it."""
    before = get_num_threads()
    set_num_threads(min(request.param, 2))
    yield request.param
    set_num_threads(before)
