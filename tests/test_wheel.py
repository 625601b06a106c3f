"""The built wheel, installed as a user installs it: a fresh virtual environment (no --system-site-packages),
the wheel's declared dependencies from the package index, and `kvfit check` run from outside the repository,
offline, on the model and GPU of the seed report.

scripts/test builds the sdist and wheel once (`python -m build`, then `twine check`) and passes the wheel in
KVFIT_WHEEL; run alone, this test builds its own wheel into a temporary folder. Needs the package index
(as CI has) for the wheel's dependencies; about 20 s.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:                                   # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
DIST = PYPROJECT["name"]


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert p.returncode == 0, f"{cmd}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    given = os.environ.get("KVFIT_WHEEL")
    if given:
        path = Path(given)
        assert path.is_file(), f"KVFIT_WHEEL={given} is not a file"
        return path
    out = tmp_path_factory.mktemp("dist")
    try:
        import build  # noqa: F401
        _run([sys.executable, "-m", "build", "--wheel", "--outdir", out, REPO])
    except ImportError:
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", out, REPO])
    (whl,) = out.glob("*.whl")
    return whl


@pytest.fixture(scope="session")
def venv(wheel, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fresh") / "venv"
    _run([sys.executable, "-m", "venv", root])
    py = root / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    _run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel], env=env)
    return root


def test_the_wheel_is_ours_and_carries_its_data(wheel):
    assert wheel.name.startswith(DIST.replace("-", "_") + "-" + PYPROJECT["version"] + "-")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert re.search(rf"^Name: {re.escape(DIST)}$", meta, re.M)
    assert DIST != "kvfit"                          # PyPI's kvfit is another project
    assert re.search(r"^kvfit = kvfit\.cli\.main:main$", entry, re.M)   # the command stays `kvfit`
    assert "kvfit/sources/data/models/canopylabs__orpheus-3b-0.1-ft.json" in names
    assert any(n.startswith("kvfit/gpu/data/") and n.endswith(".json") for n in names)
    assert not any(n.startswith("tests/") for n in names)
    for extra in ("smoke", "smoke-cpu"):
        assert re.search(rf"^Provides-Extra: {extra}$", meta, re.M)


def test_installed_wheel_checks_orpheus_on_an_rtx_3090_offline(venv, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CUDA_", "VLLM_", "KVFIT_", "GITHUB_", "PYTHON", "HF_", "VIRTUAL_ENV"))}
    env.update({"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf"), "COLUMNS": "120",
                "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"})
    # the installed package, not this checkout
    where = _run([venv / "bin" / "python", "-c", "import kvfit, importlib.metadata as m; "
                  f"print(kvfit.__file__); print(m.version({DIST!r}))"], cwd=tmp_path, env=env).stdout.split()
    assert where[0].startswith(str(venv)) and where[1] == PYPROJECT["version"]
    p = subprocess.run([venv / "bin" / "kvfit", "check", "canopylabs/orpheus-3b-0.1-ft", "--gpu", "RTX 3090"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    out = p.stdout + p.stderr
    assert "Traceback" not in out, out
    # vLLM's default max_model_len for Orpheus is its 131,072-token context. The seed report is vLLM's own error
    # on an RTX 3090 at utilization 0.9: "max seq len (131072) is larger than ... KV cache (126208)". vLLM
    # 0.32's default utilization, 0.92, adds 0.02 x 25.3 GB (the card's 23.58 GiB) = ~0.51 GB,
    # at 114,688 B per token (28 layers x 8 KV heads x 128 x 2 (K, V) x 2 B, config.json): ~4,400 tokens,
    # ~130,600 < 131,072. So it still does not fit: exit 1 and that verdict.
    assert p.returncode == 1, out
    verdict = [ln for ln in out.splitlines() if re.search(r"does not fit", ln, re.I)]
    assert verdict and "orpheus-3b-0.1-ft" in " ".join(out.split()), out
