"""Never green without the oracle: a pytest run of the engine suites in which vLLM cannot be imported
(sys.modules["vllm"] = None, as if it were not installed) fails under CI=true and skips, with the reason,
without it. One test of each kind of engine test: the engine batch (engine_results), a smoke test that
starts an engine, and vLLM's config reader."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SELECTED = ["tests/engine/test_engine_cli.py::test_cli_dense",
            "tests/engine/test_smoke.py::test_check_smoke_cpu_run_a_measured_equals_prediction",
            "tests/engine/test_config_reader.py::test_normalized_architecture_matches_vllm[engine/llama_gqa]"]
HIDE_VLLM = "import sys; sys.modules['vllm'] = None; import pytest; sys.exit(pytest.main(sys.argv[1:]))"


def _pytest_without_vllm(ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CI", "KVFIT_"))}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-c", HIDE_VLLM, "-q", "-p", "no:cacheprovider", "-rfEs", *SELECTED],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=300)


def test_without_vllm_the_engine_suites_fail_under_ci():
    p = _pytest_without_vllm("true")
    out = p.stdout + p.stderr
    assert p.returncode == 1, out[-3000:]
    assert "3 errors" in out or "3 failed" in out or ("failed" in out and "error" in out), out[-3000:]
    assert out.count("CI is set and vLLM is not importable") >= 3, out[-3000:]
    assert "passed" not in out.splitlines()[-1] and "skipped" not in out.splitlines()[-1]


@pytest.mark.parametrize("ci", [None, "false"])
def test_without_vllm_and_without_ci_they_skip_and_say_why(ci):
    p = _pytest_without_vllm(ci)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    assert "3 skipped" in out.splitlines()[-1], out[-3000:]
    assert "vLLM is not importable" in out
