"""Fixtures shared by the model tests."""

import pytest
from model_helpers import TINY


@pytest.fixture(params=TINY)
def tiny_name(request) -> str:
    return request.param
