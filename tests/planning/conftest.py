"""Fixtures for the planning tests (issue #5): goals, launches, output forms, sweep, the CI gate.

Every run is hermetic: no network (HF_HUB_OFFLINE=1), an empty Hugging Face cache, no GPU probed (NVML is
stubbed to report none) unless a test installs a fake probe, and no GitHub Actions environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from kvfit_harness import isolate

REPO = Path(__file__).resolve().parents[2]
LAUNCHES = REPO / "tests" / "data" / "launches"
EXAMPLES = REPO / "examples"
GiB = 1 << 30
MiB = 1 << 20
ORPHEUS = "canopylabs/orpheus-3b-0.1-ft"


def command_blocks(path: Path) -> list[tuple[str, str]]:
    """(source, command) for each blank-line-separated block of a launches file."""
    out = []
    for block in path.read_text().split("\n\n"):
        lines = [ln for ln in block.strip().splitlines()]
        source = next((ln[len("# source:"):].strip() for ln in lines if ln.startswith("# source:")), "")
        cmd = "\n".join(ln for ln in lines if not ln.startswith("#")).strip()
        if cmd:
            out.append((source, cmd))
    return out


@dataclass
class Res:
    rc: int
    out: str
    err: str
    exception: BaseException | None

    @property
    def json(self) -> dict:
        return json.loads(self.out)

    def __repr__(self) -> str:
        return f"<rc={self.rc} exc={self.exception!r}\nstdout:\n{self.out[-4000:]}\nstderr:\n{self.err[-2000:]}>"


@pytest.fixture(autouse=True)
def hermetic(tmp_path, monkeypatch):
    return isolate(monkeypatch, tmp_path)


@pytest.fixture
def cli():
    """`kvfit ARGS` in this process; any exception other than kvfit's own errors is a crash."""
    from kvfit_harness import invoke

    def run(*args: str, input: str | None = None) -> Res:
        r = invoke(args, input=input)
        res = Res(r.rc, r.out, r.err, None)
        assert "Traceback" not in res.out + res.err, res
        return res

    return run


@pytest.fixture
def kvfit_proc():
    """The installed CLI in a subprocess (`python -m kvfit`), as CI and users run it."""

    def run(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120) -> Res:
        e = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "VLLM_", "KVFIT_", "GITHUB_"))}
        e.update({"HF_HUB_OFFLINE": "1", "COLUMNS": "200",
                  "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "check" / "fake_nvml"),
                                                 e.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                  "KVFIT_FAKE_NVML": json.dumps({"fail": "NVML Shared Library Not Found"})})
        e.update(env or {})
        p = subprocess.run([sys.executable, "-m", "kvfit", *args], capture_output=True, text=True, env=e,
                           cwd=cwd, timeout=timeout)
        from kvfit_schema import check_output

        check_output(args, p.stdout)                  # any JSON it printed validates against the shipped schema
        return Res(p.returncode, p.stdout, p.stderr, None)

    return run
