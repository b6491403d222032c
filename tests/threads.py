"""A fixture for test modules that run torch on tiny tensors: one intra-op thread. A second
only adds contention (on a busy 2-core runner it made training ten times slower). Import it
into a module (``from tests.threads import one_thread``) and it applies to every test there."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
