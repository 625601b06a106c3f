"""examples/python/ as users run them (README "## Python API"): the deploy script that checks a launch before
`vllm serve`, and the notebook-style utilization sweep. Offline, on a bundled model, no GPU probed.

The deploy script runs in a subprocess and is held to `kvfit check` on the same launch (its verdict, its
reason, its recommended command); the sweep's data function to `kvfit sweep --json` (the longest
max_model_len per utilization, computed there by another path). The plot itself needs matplotlib, which CI
does not install: only its missing-matplotlib message is tested, and the PNG when matplotlib is present.
"""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kvfit_harness import invoke, isolate

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "python"
ORPHEUS = "canopylabs/orpheus-3b-0.1-ft"
V = "0.32.0"


@pytest.fixture(autouse=True)
def hermetic(tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path)


def env_for(tmp_path: Path, **extra: str) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "CUDA_", "VLLM_", "KVFIT_"))}
    e.update({"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf"),
              "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "check" / "fake_nvml"), e.get("PYTHONPATH", "")])
              .rstrip(os.pathsep), "KVFIT_FAKE_NVML": json.dumps({"fail": "NVML Shared Library Not Found"})})
    e.update(extra)
    return e


def deploy(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLES / "deploy.py"), *args], capture_output=True, text=True,
                          env=env_for(tmp_path, **env), cwd=tmp_path, timeout=300)


def cli_check(*args: str) -> dict:
    i = args.index("--")
    r = invoke(["check", *args[:i], "--json", *args[i:]])          # the default vLLM release, as deploy.py
    assert r.rc in (0, 1), r
    return json.loads(r.out)


def test_deploy_prints_the_launch_when_it_fits(tmp_path):
    launch = ["vllm", "serve", ORPHEUS, "--max-model-len", "32768"]
    p = deploy(tmp_path, "--gpu", "RTX 3090", "--", *launch)
    doc = cli_check("--gpu", "RTX 3090", "--", *launch)
    assert doc["verdict"]["fits"] is True
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == " ".join(doc["recommendation"]["command"]["argv"]) == " ".join(launch)
    assert f"{doc['capacity']['kv_cache_tokens']:,} KV-cache tokens" in p.stderr


def test_deploy_refuses_what_does_not_fit_and_prints_kvfits_command(tmp_path):
    launch = ["vllm", "serve", ORPHEUS, "--max-model-len", "131072", "--gpu-memory-utilization", "0.8"]
    p = deploy(tmp_path, "--gpu", "RTX 3090", "--", *launch)
    doc = cli_check("--gpu", "RTX 3090", "--", *launch)
    assert doc["verdict"]["fits"] is False
    assert p.returncode == 1, p.stderr
    assert doc["verdict"]["reasons"][0] in p.stderr
    recommended = doc["recommendation"]["command"]["argv"]
    assert p.stdout.strip() == " ".join(recommended)
    again = cli_check("--gpu", "RTX 3090", "--", *recommended)              # the printed command fits
    assert again["verdict"]["fits"] is True


def test_deploy_with_goals(tmp_path):
    launch = ["vllm", "serve", ORPHEUS]
    p = deploy(tmp_path, "--gpu", "RTX 4090", "--context", "8192", "--concurrency", "8", "--", *launch)
    doc = cli_check("--gpu", "RTX 4090", "--context", "8192", "--concurrency", "8", "--", *launch)
    assert p.returncode == (0 if doc["verdict"]["fits"] else 1), p.stderr
    assert p.stdout.strip() == " ".join(doc["recommendation"]["command"]["argv"])


def test_deploy_exit_2_when_the_launch_cannot_be_checked(tmp_path):
    p = deploy(tmp_path, "--gpu", "RTX 3090", "--", "vllm", "serve", "nonexistent/model-17")
    assert p.returncode == 2 and "cannot check the launch" in p.stderr and "nonexistent/model-17" in p.stderr
    p = deploy(tmp_path, "--", "vllm", "serve", ORPHEUS)                      # no GPU named, none probed
    assert p.returncode == 2 and "pass --gpu" in p.stderr


def test_deploy_exec_starts_the_launch(tmp_path):
    """--exec replaces the script with the launch: a stand-in `vllm` on PATH records the argv it received."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "vllm"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {tmp_path / 'argv.txt'}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    launch = ["vllm", "serve", ORPHEUS, "--max-model-len", "8192"]
    p = deploy(tmp_path, "--gpu", "RTX 3090", "--exec", "--", *launch,
               PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "argv.txt").read_text().split() == launch[1:]


def load_sweep_example():
    spec = importlib.util.spec_from_file_location("sweep_plot_example", EXAMPLES / "sweep_plot.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_sweep_example_agrees_with_kvfit_sweep():
    utils = (0.3, 0.35, 0.5, 0.7, 0.9, 0.95)
    rows = load_sweep_example().sweep(ORPHEUS, "RTX 3090", utils, vllm_version=V)
    r = invoke(["sweep", ORPHEUS, "--gpu", "RTX 3090", "--vllm-version", V, "--utilizations",
                ",".join(map(str, utils)), "--json"])
    assert r.rc == 0, r
    ref = json.loads(r.out)["utilization"]
    assert [x["gpu_memory_utilization"] for x in rows] == [x["gpu_memory_utilization"] for x in ref]
    assert [x["longest_max_model_len"] for x in rows] == [x["max_model_len"] for x in ref]
    assert [x["kv_cache_tokens"] for x in rows] == [x["kv_cache_tokens"] for x in ref]
    lengths = [x["longest_max_model_len"] for x in rows]
    assert lengths == sorted(lengths) and lengths[-1] > lengths[0]


def test_the_sweep_plot_says_matplotlib_is_missing(tmp_path):
    code = (f"import sys; sys.modules['matplotlib'] = None; sys.path.insert(0, {str(EXAMPLES)!r}); "
            "import sweep_plot; sweep_plot.plot([{'gpu_memory_utilization': 0.9, 'longest_max_model_len': 1}], "
            f"'t', {str(tmp_path / 'x.png')!r})")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env_for(tmp_path),
                       timeout=120)
    assert p.returncode != 0 and "needs matplotlib" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "x.png").exists()


def test_the_sweep_plot_saves_a_png(tmp_path):
    import matplotlib  # noqa: F401  (a test extra: the example must work where it is installed)
    p = subprocess.run([sys.executable, str(EXAMPLES / "sweep_plot.py"), ORPHEUS, "--gpu", "RTX 3090", "-o",
                        str(tmp_path / "plot.png")], capture_output=True, text=True, env=env_for(tmp_path),
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
