"""Shared by every test directory: tests/ is on sys.path, so tests import kvfit_harness (the in-process
command line)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from kvfit_harness import invoke  # noqa: E402


@pytest.fixture
def kvfit_invoke():
    return invoke
