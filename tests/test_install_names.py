"""No document or message tells anyone to install PyPI's `kvfit` (an unrelated project): every install
instruction names this project's distribution, kvfit-vllm, a checkout, or a built wheel."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# `pip install kvfit`, `pipx install "kvfit[smoke]"`, `uv tool install kvfit`, `pip install "kvfit\\[smoke]"`;
# not kvfit-vllm, not .venv/bin/kvfit
INSTALLS_PYPI_KVFIT = re.compile(
    r"""\b(?:pip3?|pipx|uv)\b[^\n]*?\binstall\b(?:\s+[^\s;#`()&|]+)*?\s+["']?kvfit(?:\\{0,2}\[[\w,-]*\])?["']?"""
    r"""(?=$|[\s;`)&|=<>~!])""")
# Found in files another change owns (the CLI and app layer); listed so they are fixed there, and this test
# fails when one is fixed and not removed from the list.
PENDING: set[tuple[str, str]] = set()


def _files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split("\n")
        return [REPO / f for f in out if f]
    except (OSError, subprocess.CalledProcessError):
        return [p for p in REPO.rglob("*") if p.is_file() and not {".git", ".venv", "dist", "build"} & set(p.parts)]


def test_the_pattern_catches_what_it_must():
    for bad in ("pip install kvfit", 'pip install "kvfit[smoke]"', "pipx install kvfit", "uv tool install kvfit",
                'pip install "kvfit\\\\[smoke]"', "python -m pip install -U kvfit==0.3.0",
                "(kvfit installed in the environment: pip install kvfit)"):
        assert INSTALLS_PYPI_KVFIT.search(bad), bad
    for good in ('pip install "kvfit-vllm[smoke]"', "pipx install .", "pipx install dist/kvfit_vllm-0.1.0.whl",
                 ".venv/bin/pip install -e . && .venv/bin/kvfit check x", "pipx inject kvfit-vllm vllm",
                 'pip install "kvfit-vllm[smoke]"   # vLLM next to kvfit', "pipx install . # then kvfit check"):
        assert not INSTALLS_PYPI_KVFIT.search(good), good


def test_no_file_installs_pypi_kvfit():
    found = set()
    for path in _files():
        if path == Path(__file__).resolve() or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        rel = path.relative_to(REPO).as_posix()
        for line in text.splitlines():
            if INSTALLS_PYPI_KVFIT.search(line):
                pending = next((p for p in PENDING if p[0] == rel and p[1] in line), None)
                found.add(pending or (rel, line.strip()))
    assert found - PENDING == set(), sorted(found - PENDING)
    assert PENDING - found == set(), f"fixed: remove from PENDING {sorted(PENDING - found)}"
